"""What the store keeps: deploy windows, rounds, rollback intents and deliveries.

Pure data: no I/O. Times are UNIX seconds (floats); the API formats them.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from common.times import rfc3339

WindowState = Literal[
    "watching", "passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded"
]
ACTIVE_STATES: tuple[WindowState, ...] = ("watching",)
FINAL_STATES: tuple[WindowState, ...] = (
    "passed",
    "failed",
    "rolled_back",
    "inconclusive",
    "cancelled",
    "superseded",
)
JUDGED_STATES: tuple[WindowState, ...] = ("passed", "failed", "rolled_back", "inconclusive")
"""The ends a verdict took effect in. A decision stored on a watching window is not acted
on yet (a round is stored with its verdict before the window's end is), and a cancelled or
superseded window ended before one was: nothing fired, so no verdict (contract section 2)."""
RollbackState = Literal["pending", "delivered", "failed", "skipped"]
FollowUpState = Literal["pending", "delivered", "failed"]
"""A `rollback.then` follow-up as the API shows it (`agent.integrations.followups`)."""

DeployState = Literal[WindowState, "scheduled"]
"""What the API shows. `scheduled`: stored as an active window whose `deployed_at` has
not come yet, so it has no rounds and no baseline (derived, not stored)."""
DEPLOY_STATES: tuple[str, ...] = ("scheduled", *get_args(WindowState))
"""The states the API shows and filters on (here, not in `agent.api.models`, so that the
command line's `status --state` choices need no pydantic)."""


def decided_verdict(
    outcome: Literal["fail", "inconclusive"],
    reason: str,
    at: float,
    rules: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A `DeployWindow.verdict` decided outside the judge (a person's rollback, a window
    registered after its end, an environment no longer configured), as the API shows it:
    `decided_at` with milliseconds, like the deploy object's other times."""
    return {
        "outcome": outcome,
        "decided_at": rfc3339(at),
        "reason": reason,
        "rules": list(rules),
    }


DEPLOY_ID_PATTERN = r"^dep_[0-9A-HJKMNP-TV-Z]{26}$"
"""A deploy window's id: `dep_` + a ULID (Crockford base32: no I, L, O, U)."""

DEPLOY_ID_ASKED_PATTERN = r"^dep_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"
"""A deploy id as a request's path may name it: its ULID in either case."""

_DEPLOY_ID = re.compile(DEPLOY_ID_PATTERN)


def deploy_id_as_stored(text: str) -> str | None:
    """The deploy id `text` names, as it is stored (the ULID in upper case), or None when
    it names none. A ULID is case-insensitive (its spec, and Crockford's base32), so
    `dep_01jd8x…`, copied from a lower-cased log or URL, names the deploy `dep_01JD8X…`;
    the store compares ids exactly, so the id is read in its stored case first."""
    if not text.isascii():
        return None  # an upper case of some other letters is ASCII: 'ſ' is 'S'
    stored = text[:4] + text[4:].upper()
    return stored if _DEPLOY_ID.fullmatch(stored) else None


@dataclass(slots=True)
class DeployWindow:
    """One deploy under watch, from registration to its final state."""

    id: str
    environment: str
    version: str
    previous_version: str | None
    commit: str | None
    labels: dict[str, str]
    state: WindowState
    deployed_at: float
    ends_at: float
    created_at: float
    rounds: int = 0
    verdict: dict[str, Any] | None = None
    """The latest judgement as the API shows it (outcome, decided_at, reason, rules)."""
    baseline: dict[str, Any] | None = None
    """Baselines fetched once at the window's start, per rule name."""
    ended_at: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    lease_epoch: int = 0
    """Raised by every claim that changes hands: the fence of the holder's writes."""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def judged(self) -> bool:
        """Whether a decision stored in `verdict` took effect (`JUDGED_STATES`)."""
        return self.state in JUDGED_STATES

    @property
    def fence(self) -> Fence:
        return Fence(self.lease_owner or "", self.lease_epoch)


@dataclass(frozen=True, slots=True)
class Fence:
    """Who holds a lease, and since which claim: a write carrying a fence applies only
    while its holder still holds that very claim (a stale holder's write is refused)."""

    owner: str
    epoch: int


@dataclass(slots=True)
class RoundRecord:
    window_id: str
    number: int
    started_at: float
    summary: dict[str, Any]
    """Per rule the observation, per check the results, and the round's decision."""


@dataclass(frozen=True, slots=True)
class SentBefore:
    """What of a rollback went out before it was given up (`sent_before`)."""

    sent: int = 0
    """Attempts that reached, or may have reached, the receiver."""
    unanswered: int = 0
    """Of those, the ones whose answer never came (a timeout, a connection cut after
    sending, a sender killed with it out): the receiver may have acted on them."""


NOT_REACHED = ("cannot connect to ", "cannot resolve ", "ClientConnector")
"""How an attempt's error begins when the request never reached the receiver
(`agent.rollback.delivery._unanswered`'s words: a refused connection, a host that does
not resolve, aiohttp's words for a TLS handshake that failed)."""


def sent_before(attempts: Sequence[DeliveryAttempt]) -> SentBefore:
    """What of a rollback's stored `attempts` went out, and got no answer: "NOT SENT" is
    untrue once one did, and one unanswered may have been acted on."""
    sent = [
        a for a in attempts if a.status is not None or not (a.error or "").startswith(NOT_REACHED)
    ]
    return SentBefore(len(sent), sum(1 for a in sent if a.status is None))


@dataclass(slots=True)
class RollbackIntent:
    """A rollback the agent has decided to request: stored before any attempt."""

    window_id: str
    state: RollbackState
    body: str
    """The exact JSON body; every attempt sends these bytes."""
    requested_at: float
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    """The one sender of this rollback (a replica), until `lease_until`."""
    lease_epoch: int = 0
    lease_until: float | None = None
    look_ups: int = 0
    """How many times Vercel was asked which deployment to roll back to, counted before
    each ask goes out (`Store.count_look_up`): a restart continues the count, and the
    rollback's `max_attempts` bound the asks in total, not per process."""
    replaced_by: DeployWindow | None = field(default=None, compare=False)
    """Not stored: the newer deploy its sender gave it up for, unsent
    (`agent.rollback.delivery`), so that the alert claimed with that outcome names it
    and does not send on-call to roll back by hand (that would undo the newer deploy)."""
    sent_before: SentBefore = field(default_factory=lambda: SentBefore(), compare=False)
    """Not stored: with `replaced_by`, what of it went out before it was given up
    (`sent_before`), which the alert claimed with that outcome says."""

    @property
    def fence(self) -> Fence:
        return Fence(self.lease_owner or "", self.lease_epoch)

    @property
    def reason(self) -> str | None:
        """The reason its body gives (a manual one's, as the person gave it)."""
        try:
            body = json.loads(self.body)
        except ValueError:
            return None
        reason = body.get("reason") if isinstance(body, dict) else None
        return reason if isinstance(reason, str) and reason else None

    def given_up_for(self, newer: DeployWindow | None) -> bool:
        """Whether this rollback failed because `newer` took effect (its `last_error` begins
        `replaced_words(newer)`), not on its own (refused, its attempts spent) with `newer`
        registered later: the deploy page says which, as the alert did."""
        return (
            self.state == "failed"
            and newer is not None
            and (self.last_error or "").startswith(replaced_words(newer))
        )


def replaced_words(newer: DeployWindow) -> str:
    """How the `last_error` of a rollback given up for `newer` begins
    (`agent.rollback.delivery`), which `RollbackIntent.given_up_for` reads back."""
    return f"{newer.version} ({newer.id}) was deployed to {newer.environment}"


@dataclass(slots=True)
class DeliveryAttempt:
    window_id: str
    attempt: int
    at: float
    status: int | None
    error: str | None
    duration_s: float


@dataclass(slots=True)
class IdempotentResponse:
    key: str
    request_hash: str
    status: int
    body: dict[str, Any]


@dataclass(slots=True)
class Page:
    items: list[DeployWindow]
    next_cursor: str | None = None


@dataclass(slots=True)
class WindowCreated:
    window: DeployWindow
    """The window opened; when `joined`, the watching one the event joined instead."""
    superseded: list[DeployWindow] = field(default_factory=list)
    joined: bool = False
    """Nothing was opened: a window of the same provider deployment is still watched
    (`agent.store.base.SameDeployment`)."""


Remembered = IdempotentResponse | Callable[[WindowCreated], IdempotentResponse]
"""What `Store.create_window` keeps under a key: the answer, or how to word it from what
the store did, under the environment's lock (the API warns of a superseded window
deployed later than the new one: `agent.api.routes`)."""


@dataclass(slots=True)
class PendingGate:
    """A GitHub deployment protection rule waiting for its answer (contract §7). Stored
    before the hook is acknowledged, so a restart answers it; answered once."""

    callback_url: str
    """GitHub's `deployment_callback_url`: one per run; with `github_environment`, the
    gate's key (a run into two gated environments asks on one URL for each)."""
    environment: str
    sha: str
    github_environment: str
    deadline: float
    """Rejected if the window it waits on has not ended by then."""
    created_at: float


class GateAsk(enum.Enum):
    """How a protection rule's request came to its gate (`Store.add_gate`). True only when
    the gate was stored (or opened again) for it: the one case a new answer goes out."""

    ADDED = "added"
    """A gate stored for it, or an answered one opened again (a re-run, the next job)."""
    JOINED = "joined"
    """A new request joining its run's gate still waiting for its answer: answered with it."""
    ASKED = "asked"
    """Asked before (a redelivery, a replay): the gate as it is."""

    def __bool__(self) -> bool:
        return self is GateAsk.ADDED


@dataclass(frozen=True, slots=True)
class GateState:
    """Where a protection rule's request stands (`Store.gate_state`): `pending`, its answer
    (`approved`/`rejected`, with how the POST went, `result`), or `answered` when the gate
    was opened again by a later request since and this one's answer is not kept."""

    state: str
    result: str | None = None
    answered_at: float | None = None

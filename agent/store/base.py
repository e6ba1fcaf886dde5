"""The store's interface: everything the agent must not lose, behind one Protocol.

State lives here, not in memory: a window, its baseline, each round, the verdict,
the rollback intent and every delivery attempt are written before they are acted
on, so a process killed at any instant restarts into the same decisions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    Fence,
    GateAsk,
    GateState,
    IdempotentResponse,
    Page,
    PendingGate,
    Remembered,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)


class Lease(NamedTuple):
    """A window held by a claim: the claim's epoch and until when it holds."""

    window_id: str
    epoch: int
    until: float


class UnsettledAlert(NamedTuple):
    """An alert claimed with its content (`Store.claim_alert`'s `payload`) and still
    without an outcome: in flight, or cut off by a crash."""

    window_id: str
    event: str
    claimed_at: float
    payload: str
    sent_to: frozenset[str]
    """The channels that took it already (`Store.note_alert_channel`)."""


@dataclass(frozen=True, slots=True)
class Taken:
    """A claim `Store.take_alert` took (always true, as the bool it was: `if not await
    store.take_alert(...)` reads as before)."""

    attempts: int
    """The attempts the senders that handed it back made (`release_alert`), 0 for none:
    a follow-up's count, budget and backoff go on from there."""


class AlertRetry(NamedTuple):
    """An alert some channel failed, taken for its next retry (`Store.take_alert_retry`):
    the taker holds it until `lease_until`, then anyone may take it again."""

    window_id: str
    event: str
    payload: str
    sent_to: frozenset[str]
    """The channels that took it already: never sent it again."""
    retries: int
    """Retries taken so far, this one included (a taker that died counts too, so a crash
    loop cannot retry for ever)."""
    lease_until: float
    result: str
    """The stored outcome so far (`failed`, `partial`)."""
    detail: str


class OwedRetry(NamedTuple):
    """A window's alert whose failed channels are still owed a retry
    (`Store.alert_retries_of`): what a later alert catches up first."""

    event: str
    payload: str
    sent_to: frozenset[str]
    retry_at: float
    """When it is due; `take_alert_retry` at this time takes it unless taken since."""
    taken: bool
    """A taker is sending it now (its run stamped; a scheduled retry has none)."""


class StoredProbes(NamedTuple):
    """The background runs stored of one check with one fingerprint (`Store.probe_fingerprints`)."""

    check: str
    fingerprint: str | None
    """None: stored before each run kept what it probed."""
    runs: int
    newest: float


class ProbeRun(NamedTuple):
    """One background run to keep (`Store.add_probe_summary`'s arguments)."""

    environment: str
    check: str
    at: float
    summary: dict[str, Any]
    fingerprint: str | None


IN_FLIGHT = "in flight: no outcome recorded (the sender stopped mid-attempt)"
"""A delivery row's error until its attempt's outcome is stored (`Store.deliveries`)."""


class AlertClaim(NamedTuple):
    """An alert claimed in the transaction of the change that calls for it (a window's
    end, a settled rollback): a crash after that commit leaves the claim, so the alert
    is sent after it (`unsettled_alerts`), never lost."""

    event: str
    payload: str | None = None
    """What to send (`Store.claim_alert`'s `payload`); None: a mark with no message."""


class SameDeployment(NamedTuple):
    """The provider deployment a deploy event is for, as the window label that names it
    (`vercel.deployment`, `github.deployment`) and its value. Vercel sends
    `deployment.succeeded` then `deployment.promoted` for one production deployment, and
    GitHub may send several `success` statuses for one deployment: each would supersede
    the window of the one before, restarting its baseline and timing, for one deploy."""

    label: str
    value: str
    """"" when the event names no deployment (a relayed GitHub status without its
    `deployment.id`): it joins no window by it, only the other provider's by commit."""
    response: Callable[[DeployWindow], IdempotentResponse]
    """The event's answer when it joins this window, remembered under the event's key (a
    redelivery of it answers the same, even once the window has ended)."""
    version: str | None = None
    """The commit the event deploys: a window of it opened by the other provider's event
    (`PROVIDER_MARKS`) is the same deploy reported twice (Vercel's GitHub integration
    posts a GitHub deployment for each Vercel one), and the event joins it too."""
    labels: Mapping[str, str] | None = None
    """The event's labels, added to a window it joins from the other provider
    (`JOINED_LABELS`), so that provider's statuses and rollback find their deployment."""


PROVIDER_MARKS = {
    "vercel.deployment": ("vercel.deployment",),
    "github.deployment": ("github.deployment", "github.repository"),
}
"""By provider (its deployment label), the labels that say its event opened or joined a
window: a GitHub status relayed without its `deployment.id` leaves `github.repository`
only."""


def reported_by(labels: Mapping[str, str]) -> list[str]:
    """The providers (their deployment labels) whose events opened or joined a window."""
    return [label for label, marks in PROVIDER_MARKS.items() if any(m in labels for m in marks)]


JOINED_LABELS = frozenset(
    {
        "vercel.deployment",
        "vercel.previous",
        "vercel.project",
        "github.deployment",
        "github.repository",
        "github.environment",
    }
)
"""What a window takes from the other provider's event it joins: the deployment's
identity, not the URLs a window may probe (`window_base_url`): a joined window probes
what it probed since it opened."""


def same_deploy(active: DeployWindow, same: SameDeployment) -> bool:
    """Whether the event `same` describes is the deploy `active` watches: the same
    deployment of its provider, or the same commit opened by the other provider.

    The same deployment naming another commit is not: a provider's deployment has one
    commit, so it is a sender that reuses one id (a relay, a script, a fixed template),
    and the contract opens a window of the event's commit. Joined, its 202 carried the
    other commit's window and nothing watched its own."""
    if same.value and active.labels.get(same.label) == same.value:
        return not _other_commit(active.commit, same.version)
    return (
        same.version is not None
        and active.version == same.version
        and same.label not in active.labels
        and any(label != same.label for label in reported_by(active.labels))
    )


def _other_commit(watched: str | None, event: str | None) -> bool:
    """Whether both commits are known and differ (one may abbreviate the other: a window
    registered with `--commit 9fceb02`); an event or window without one differs from
    nothing (Vercel names no commit for a deployment made outside git). Only hex of 7
    digits or more abbreviates (git's shortest): other texts compare whole, where any
    prefix matched (`release-2` was `release-20`'s commit, `9fc` any SHA so begun)."""
    if not watched or not event:
        return False
    watched, event = watched.lower(), event.lower()
    if ABBREVIATED_SHA.match(watched) and ABBREVIATED_SHA.match(event):
        return not (watched.startswith(event) or event.startswith(watched))
    return watched != event


SHA_HEX = re.compile(r"^[0-9a-f]{8,64}$")
ABBREVIATED_SHA = re.compile(r"^[0-9a-f]{7,64}$")
"""A SHA or its abbreviation as git writes it (7 hex digits at the least): a commit text
that may name another by its start (`sha_and_abbreviations`)."""


def sha_and_abbreviations(sha: str) -> list[str]:
    """`sha` and its abbreviations down to git's default 7 hex digits: a window
    registered with `--commit 9fceb02` is a window of 9fceb02d0a…. Anything not a hex
    SHA stands for itself alone."""
    if not SHA_HEX.match(sha):
        return [sha]
    return [sha[:n] for n in range(7, len(sha) + 1)]


class StoreError(Exception):
    """The store cannot answer (down, locked, corrupt)."""


class StoreUnreachable(StoreError):
    """The store's server gave no answer at all (refused, timed out, starting up or
    shutting down, out of connections): worth waiting for at start, where a refused
    login or an unknown database is a configuration to fix."""


class StoreBusy(StoreError):
    """The store answered but refused one transaction for now (PostgreSQL's deadlock,
    serialization failure, lock wait given up): retried as an outage is, yet the store is
    up, so it is logged as busy and never said down (`postflight_store_up` stays 1)."""


HELD_ELSEWHERE = "the SQLite file is held by another process"


class StoreHeld(StoreError):
    """SQLite's file refusing writes for now: held by another process past `busy_timeout`
    (an operator's `sqlite3` in `BEGIN EXCLUSIVE`, a backup tool), its disk full, or
    read-only or failing writes (a remount, a file size limit): `why`, as a log line says
    it. Nothing was written, and no other agent can take this agent's windows meanwhile
    (one agent per SQLite file), so a watch keeps its rounds until the file takes writes
    again (`agent.windows.held`), where a full disk ended the watch and dropped them."""

    def __init__(self, message: str, why: str = HELD_ELSEWHERE) -> None:
        super().__init__(message)
        self.why = why


class Conflict(StoreError):
    """The change does not apply to the record's current state."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    # windows
    async def create_window(
        self,
        window: DeployWindow,
        idempotency: Remembered | None = None,
        *,
        same: SameDeployment | None = None,
    ) -> WindowCreated:
        """Insert a window, superseding the environment's active one in the same
        transaction (only when the new one is active: a window registered after its
        end is a record and supersedes nothing; whatever the `deployed_at` order, as
        contract §2 says); with `idempotency`, also remember the response (or the one it
        words from the `WindowCreated`) under its key. With `same`, when an active window
        of the environment carries its label and value, insert and supersede nothing:
        remember `same.response` of that window instead and answer it `joined` (checked
        under the environment's lock, so two events of one deployment open one window,
        across replicas)."""
        ...

    async def idempotent_response(self, key: str) -> IdempotentResponse | None: ...

    async def get_window(self, window_id: str) -> DeployWindow | None: ...

    async def get_windows(self, window_ids: list[str]) -> list[DeployWindow]:
        """Those of these windows that exist, in a few queries, not one per window (the
        watcher starting thousands of windows registered at once)."""
        ...

    async def list_windows(
        self,
        *,
        environment: str | None = None,
        state: WindowState | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page: ...

    async def newest_window_of(self, environment: str, sha: str) -> DeployWindow | None:
        """The environment's newest window whose version or commit is `sha` or an
        abbreviation of it (`sha_and_abbreviations`: a gate's staging window), by index,
        however many windows came since."""
        ...

    async def store_time(self) -> float | None:
        """The store's own clock, one every replica reads (PostgreSQL's), in Unix seconds;
        None when it has none apart from this machine's (SQLite). Rounds are paced by it
        (`agent.windows.pace`), so a replica whose clock is off judges no window early."""
        ...

    async def claim_windows(
        self, owner: str, now: float, lease_s: float, *, fresh: bool = False
    ) -> list[DeployWindow]:
        """Active windows this owner holds or may take (lease lapsed), now leased to it.
        A lease that changes hands or had lapsed gets a new `lease_epoch`; with `fresh`
        (a new process of this owner) every claimed one does."""
        ...

    async def claim_leases(
        self,
        owner: str,
        now: float,
        lease_s: float,
        *,
        fresh: bool = False,
        written_only: bool = False,
    ) -> list[Lease]:
        """`claim_windows`, answering only which windows are held and how: the watcher
        claims every second and reads in full only the windows it does not yet watch.
        `written_only`: only the leases this claim wrote (taken, or renewed with less than
        half left), not every one held — a claim pass then costs what changed, not one
        row per window watched."""
        ...

    # Writes that take a `fence` apply only while it still holds the window: a task
    # whose lease was taken over (even by its own replica, after a pause) is refused.

    async def renew_lease(self, window_id: str, fence: Fence, until: float) -> bool: ...

    async def release_lease(self, window_id: str, fence: Fence) -> None: ...

    async def release_leases(self, leases: Sequence[tuple[str, Fence]]) -> None:
        """Hand back each (window, fence) lease still that fence's (a clean stop's windows):
        another replica claims them at its next sweep, where it waited for them to lapse."""
        ...

    async def set_baseline(
        self, window_id: str, baseline: dict[str, Any], fence: Fence | None = None
    ) -> bool: ...

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, fence: Fence | None = None
    ) -> bool:
        """Store a round and the window's latest verdict (None: keep the stored one); False
        if the window ended meanwhile, the fence no longer holds, or the round is not past
        the stored ones (a round is never overwritten, the count never goes back)."""
        ...

    async def rounds(
        self,
        window_id: str,
        after: int = 0,
        *,
        each: Callable[[RoundRecord], RoundRecord] | None = None,
    ) -> list[RoundRecord]:
        """The window's rounds numbered past `after` (all by default), in order; each as
        `each` makes it of the stored one, in order, as it is read (a reader that keeps
        only part of a round never holds every round whole)."""
        ...

    async def prune_rounds(
        self, ended_before: float, limit: int = 5000, ended_after: float | None = None
    ) -> int:
        """Delete up to `limit` rounds of windows that ended before `ended_before` (and,
        given `ended_after`, not before it: those an earlier pass swept); the window, its
        verdict and its rollback stay. How many were deleted."""
        ...

    async def prune_alert_payloads(
        self, ended_before: float, limit: int = 5000, ended_after: float | None = None
    ) -> int:
        """Forget what up to `limit` settled alerts (an outcome, no retry owed) of windows
        that ended before `ended_before` (and, given `ended_after`, not before it) would
        be sent again with; their event and outcome stay. How many were forgotten."""
        ...

    async def prune_idempotency(self, before: float, limit: int = 5000) -> int:
        """Forget up to `limit` idempotency keys (`Idempotency-Key`, a hook's delivery)
        first answered before `before`: a repeat after that is a new request. How many.
        Deleting any also marks the store: `keys_forgotten_before`."""
        ...

    async def keys_forgotten_before(self) -> float | None:
        """The latest `before` of a `prune_idempotency` that deleted a key; None when none
        ever did. A deploy event of before it may be a replay whose delivery is forgotten
        (`agent.api.hooks`); one of a store that never forgot a key is not."""
        ...

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
        fence: Fence | None = None,
        alerts: Sequence[AlertClaim] = (),
        runs: Sequence[ProbeRun] = (),
    ) -> bool:
        """Move an active window to a final state (and store the rollback intent, claim
        `alerts`, claimed `at`, and keep the background `runs` its rounds stood in for, in
        the same transaction); False if it had already ended."""
        ...

    async def add_labels(self, window_id: str, labels: Mapping[str, str]) -> bool:
        """Add the `labels` a window lacks (one it has keeps its value): what the agent
        learnt about its deploy since it opened (Vercel's previous production deployment).
        False when the window is unknown or lacked none of them."""
        ...

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        """Compare-and-set a window's state (a delivered manual rollback moves `passed`
        or `inconclusive` to `rolled_back`)."""
        ...

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        """Cancel an active window; `Conflict` if it already ended, KeyError if unknown."""
        ...

    # rollback delivery
    async def get_rollback(self, window_id: str) -> RollbackIntent | None: ...

    async def deliveries(self, window_id: str) -> list[DeliveryAttempt]:
        """Every delivery attempt of a window's rollback, in order (the deploy page)."""
        ...

    async def take_rollback(
        self, window_id: str, owner: str, now: float, until: float, held: Fence | None = None
    ) -> RollbackIntent | None:
        """Lease a pending rollback to `owner` (new epoch) if it is free, lapsed, or
        already `owner`'s as `held`; None while another sender holds it."""
        ...

    async def take_replaced_rollback(
        self, window_id: str, owner: str, until: float, replaced_by: float
    ) -> RollbackIntent | None:
        """Lease to `owner` (new epoch) a pending rollback another sender holds through a
        stored wait once a newer deploy took effect, and was registered, by `replaced_by`
        (`newer_deploy`). A live holder looks for one every second and gives the rollback
        up itself, so a lease still held well after is that of a sender no longer looking
        (killed: the lease of its wait lasts the wait and `store.lease` more). Only with
        no attempt in flight: its new sender then gives it up without a wait of its own,
        in which a third could take it again (after an unanswered attempt or a 409 it
        looks once whether the rollback took effect, `RollbackDelivery._looked_for`, where
        the sender killed in a wait after one was left its lease: given up a lease after
        the kill). None otherwise."""
        ...

    async def begin_attempt(
        self, window_id: str, fence: Fence, now: float, until: float
    ) -> int | None:
        """Allocate and store the next attempt number before it goes out (the lease is
        extended to `until`); None if the lease is no longer `fence`'s, or a newer deploy
        took effect by `now` (`newer_deploy`), read in the same transaction: a
        registration committed after the sender's last look and before this record
        stops the attempt, where it went out and rolled that deploy back."""
        ...

    async def newer_deploy(
        self, window_id: str, now: float, *, counting_previous: bool = False
    ) -> DeployWindow | None:
        """The newest deploy of `window_id`'s environment that took effect by `now` after
        its rollback was requested, if any: rolling back to `previous_version` then would
        undo it (a pipeline shipped the fix while the receiver was down), so a rollback
        still owed is given up for it (`agent.rollback.delivery`), and a failed
        rollback's page tells on-call not to roll back by hand. A deploy registered
        before the request (a rollback asked for by hand, knowingly; by the store's order
        of the environment's registrations, not by the clocks of the replicas that
        stamped them, `windows.registered`), one not yet
        deployed or called off before its time, an older deploy reported late, and
        `previous_version` itself (this rollback landing, its 2xx lost to a crash: sent
        again, the receiver dedupes) do not count. None without a rollback.

        `counting_previous`: a deploy of `previous_version` counts too, for the page of a
        rollback that failed: one deployed after it was requested did the rollback
        another way (by hand, or the receiver's own), and is newest when it is."""
        ...

    async def count_look_up(
        self, window_id: str, fence: Fence, now: float, until: float, by: int = 1
    ) -> int | None:
        """Count one more ask of which deployment to roll back to (`RollbackIntent.look_ups`)
        before it goes out (`by` -1: one a stop let go of, not spent), the lease extended
        to `until`: the count so far; None if the lease is no longer `fence`'s."""
        ...

    async def add_rollback(
        self, intent: RollbackIntent, at: float = 0.0, alerts: Sequence[AlertClaim] = ()
    ) -> bool:
        """Store a rollback for a window that already ended passed, failed or
        inconclusive (a manual rollback); False if it has one already, or is in
        another state. `alerts` are claimed at `at` in the same transaction (its
        `rollback requested`: a crash just after cannot lose it)."""
        ...

    async def settle_rollback(
        self,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Sequence[AlertClaim] = (),
    ) -> bool:
        """Store an attempt's outcome and the rollback's progress at once; fenced by
        `intent.fence` except for `delivered` (a 2xx is a fact), which also moves the
        window from `failed` to `rolled_back`. `alerts` are claimed (at
        `intent.finished_at`) in the same transaction, only if this call changed it."""
        ...

    async def pending_rollbacks(self) -> list[RollbackIntent]: ...

    # alerts
    async def claim_alert(
        self,
        window_id: str,
        event: str,
        at: float,
        fence: Fence | None = None,
        payload: str | None = None,
        also: Sequence[str] = (),
    ) -> bool:
        """True the first time (window, event) is claimed: one notification per deploy
        and event, across restarts (with `fence`: only while it holds the window).
        `payload`: what to send, kept so that a claim its sender never finished can be
        sent by another (`unsettled_alerts`). `also`: more events the same alert is
        about (a round's breaches, sent as one), claimed with it as marks, all or none:
        False, claiming nothing, if any of them was claimed already."""
        ...

    async def take_alert(
        self,
        window_id: str,
        event: str,
        at: float,
        lapsed_before: float,
        *,
        orphaned: bool = False,
        waiting: bool = False,
    ) -> Taken | None:
        """Like `claim_alert`, and taken by the one caller that takes over a claim still
        without an outcome (`record_alert`) made before `lapsed_before`: a lease on one
        sending whose sender may die mid-call (`rollback.then` follow-ups). `orphaned`:
        also, at once, a claim whose claimer is proven dead (`unsettled_alerts`).
        `waiting`: the taker holds it to wait (a rate limit asked it to, until the lease
        it takes ends), not to send: its death does not make the claim `orphaned`, so a
        restart keeps the wait. None: not taken. The attempts handed back come with the
        take, in the same statement: read after it, a store that failed between held the
        claim, unsent, for its lease."""
        ...

    async def release_alert(
        self, window_id: str, event: str, claimed_at: float, attempts: int = 0
    ) -> bool:
        """Hand back a claim `take_alert` took at `claimed_at`, still without an outcome:
        the next `take_alert` takes it at once, where it waited for the claim to lapse (a
        clean stop cut its sender mid-call). `attempts`: the calls its sender made, added
        to the claim's (the next `take_alert`'s `Taken.attempts`). False if it has an
        outcome, or another caller took it over since."""
        ...

    async def count_alert_attempts(
        self, window_id: str, event: str, claimed_at: float, attempts: int
    ) -> bool:
        """Add `attempts` (the calls its sender made) to a claim `take_alert` took at
        `claimed_at`, still without an outcome, kept as it is: a stop in a wait the
        receiver asked for keeps the claim to the wait's end rather than hand it back
        (`release_alert`), and the next taker's count goes on from them all the same.
        False if it has an outcome, or another caller took it over since."""
        ...

    async def record_alert(
        self,
        window_id: str,
        event: str,
        result: str,
        detail: str,
        retry_at: float | None = None,
        also: Sequence[str] = (),
    ) -> None:
        """Store an alert's outcome; `retry_at`: when its failed channels are to be tried
        again (`alert_retries_due`; only for a claim with a payload), None for never.
        `also`: the marks claimed with it (`claim_alert`) take the same outcome."""
        ...

    async def note_alert_channel(self, window_id: str, event: str, channel: str) -> None:
        """Remember that `channel` took a claimed alert still without an outcome, or one
        being retried, so that whoever finishes it after a crash, or retries it, does not
        send it there again."""
        ...

    async def alert_retries_due(
        self, at: float, limit: int = 100, *, orphaned: bool = False
    ) -> list[tuple[str, str]]:
        """(window, event) of the alerts whose retry is due at `at` (or whose retry's
        taker let its lease lapse), soonest first; take one with `take_alert_retry`.
        `orphaned`: also a retry taken by a run proven dead (`unsettled_alerts`), at once."""
        ...

    async def next_alert_retry(self) -> float | None:
        """When the soonest retry is due (or a taken one's lease ends); None: none owed."""
        ...

    async def take_alert_retry(
        self, window_id: str, event: str, at: float, until: float, *, orphaned: bool = False
    ) -> AlertRetry | None:
        """The retry due at `at` for the one caller that takes it, held until `until`
        (a lease: a taker that dies mid-send leaves it due again then); None if it is not
        due, or another caller took it."""
        ...

    async def alert_retries_of(self, window_id: str) -> list[OwedRetry]:
        """The window's alerts still owed a retry (due or not, taken or not), each with
        its payload and the channels that took it already."""
        ...

    async def settle_alert_retry(
        self,
        retry: AlertRetry,
        result: str,
        detail: str,
        retry_at: float | None,
        also: Sequence[str] = (),
        *,
        retries: int | None = None,
    ) -> bool:
        """Store a retry's outcome and when the next is due (None: no more), only while
        `retry` still holds it; False if its lease lapsed and another took it. `also`:
        the marks claimed with it take the same outcome (`record_alert`). `retries`: the
        count stored back, where the take's counts (a later alert's catch-up that failed
        is no retry of its own: the alert keeps the retries it had)."""
        ...

    async def unsettled_alerts(
        self, claimed_before: float, limit: int = 100, *, orphaned: bool = False
    ) -> list[UnsettledAlert]:
        """Claims with a payload and no outcome made before `claimed_before`, oldest first:
        alerts whose sender died mid-send (take one with `take_alert` before sending).
        `orphaned`: also those, however recent, whose claimer is proven dead: made by
        another process under the replica id this one holds (PostgreSQL: the id's session
        lock, which ends with its process), or, on SQLite, by any other process (the
        file's lock: one agent at a time), so a restart sends them at once. Not those of a
        process that closed its store (a stop: it may send them until it exits)."""
        ...

    async def claims_without_outcome(self, event: str, limit: int | None = None) -> list[str]:
        """The windows whose `event` claim has no outcome yet, oldest claim first (at most
        `limit`): marks of work owed after a crash (`rollback:follow-ups`), found without
        reading the windows."""
        ...

    async def alert_events(self, window_id: str) -> dict[str, str]:
        """event → last result for a window."""
        ...

    async def alerts_of(self, window_ids: list[str]) -> dict[str, dict[str, str]]:
        """`alert_events` of many windows in a few queries (window id → event → result;
        a window with none is absent): the integrations' scan after a restart."""
        ...

    # GitHub deployment protection rules (contract §7)
    async def add_gate(
        self, gate: PendingGate, delivery: IdempotentResponse | None = None
    ) -> GateAsk:
        """Store a gate to answer (one a callback URL and GitHub environment: a run asks
        on one URL for each environment): `ADDED`; `JOINED` if that gate is stored already
        and still pending (a new request waits with it); `ASKED` if `delivery` (the
        request's key and answer) was stored already: a redelivery. With `delivery`, a
        gate answered already is opened again, and the delivery remembered with it: GitHub
        asks again on the same callback URL and environment for a re-run and for the
        run's next job into that environment, and that job waited for an answer nobody
        would send. A delivery's key is also kept (in `gate_requests`) past the
        idempotency keys, until `prune_gates` (90 days: `agent.retention.GATES_KEPT_S`): a
        request asked before is `ASKED`, the gate as it is, however long ago its delivery
        was forgotten."""
        ...

    async def gate_state(
        self, request: str, callback_url: str, github_environment: str
    ) -> GateState | None:
        """Where the request keyed `request` (its `delivery.key`) stands on its gate: the
        gate's answer if the gate is still the one it asked or joined, `answered` if a
        later request opened the gate again since; None if no such gate is kept."""
        ...

    async def prune_gates(self, before: float) -> int:
        """Forget the requests asked before `before` and the gates answered before it
        (how many rows in all); a pending gate is kept, however old."""
        ...

    async def pending_gates(self) -> list[PendingGate]:
        """Gates not answered yet, oldest first (claimed ones included)."""
        ...

    async def claim_gate(
        self,
        callback_url: str,
        github_environment: str,
        at: float,
        until: float,
        *,
        orphaned: bool = False,
    ) -> bool:
        """True if this caller may answer the gate now: it is unanswered and no other
        claim runs until `until` (a claimer killed mid-answer is replaced after it).
        `orphaned`: also, at once, a claim whose claimer is proven dead, as
        `unsettled_alerts` says (not one moved on to a rate limit's wait: `extend_gate`)."""
        ...

    async def gate_claimed_before(self, callback_url: str, github_environment: str) -> bool:
        """Whether the unanswered gate was claimed before and not answered since: its
        claimer may have sent the answer GitHub took and died (kill -9) before recording
        it, or a stop cut its answer in flight (`release_gate`). Read before `claim_gate`,
        which writes over it."""
        ...

    async def answer_gate(
        self, callback_url: str, github_environment: str, answer: str, result: str, at: float
    ) -> None:
        """Mark the gate answered (`approved`/`rejected`; `result`: how the POST went)."""
        ...

    async def refuse_gate(
        self, callback_url: str, github_environment: str, until: float, result: str
    ) -> bool:
        """Keep, on the gate still unanswered under the claim `claim_gate` took until
        `until`, that GitHub refused its answer (`result`, a 422's): stored before the
        claimer reads whether the run was cancelled, so a kill in that read leaves the
        next claimer the refusal to page on (`gate_refused`), not an answer to send again
        whose second 422 reads as the first one taken. False if the gate was answered, or
        another caller claimed it since."""
        ...

    async def gate_refused(self, callback_url: str, github_environment: str) -> str | None:
        """The refusal `refuse_gate` kept on the unanswered gate, if any."""
        ...

    async def release_gate(self, callback_url: str, github_environment: str, until: float) -> bool:
        """Hand back a claim `claim_gate` took until `until`, the gate still unanswered:
        the next `claim_gate` takes it at once, where it waited for the claim to lapse (a
        clean stop cut its answer mid-call or in a retry's wait); `gate_claimed_before`
        still says it was claimed. False if the gate was
        answered, or another caller claimed it since."""
        ...

    async def extend_gate(
        self, callback_url: str, github_environment: str, until: float, to: float
    ) -> bool:
        """Move on to `to` the end of a claim `claim_gate` took until `until`, the gate
        still unanswered: an answer given up on a rate limit longer than the claim is not
        taken over by the next start or another replica before the wait the provider
        asked for. `to` may come sooner than `until`: a wait asked for inside one answer
        (`claim_waits.GateClaimWait`) holds the claim to that wait's end only. False if
        the gate was answered, or another caller claimed it since."""
        ...

    # background probing (pre-deploy baselines)
    async def add_probe_summary(
        self,
        environment: str,
        check: str,
        at: float,
        summary: dict[str, Any],
        fingerprint: str | None = None,
        *,
        holder: str | None = None,
    ) -> bool:
        """Keep one background run of `check`; `fingerprint` says what it probed
        (`agent.windows.fingerprint.probe_fingerprint`), None for a run whose target is not
        known (rows stored before fingerprints were kept: no baseline pools them).
        `holder` (a shared store's replica, `take_background`): only while no other
        replica holds the environment's background lease, in the same statement: one
        that took it meanwhile (a window there started probing it) probed beside the
        run, which is not kept. Whether it was kept."""
        ...

    async def probe_summaries(
        self,
        environment: str,
        since: float,
        until: float,
        fingerprints: Collection[str] | None = None,
    ) -> list[tuple[str, float, dict[str, Any]]]:
        """(check, at, summary) of the runs in [since, until), oldest first; with
        `fingerprints`, only runs recorded with one of them (so a baseline never pools
        runs against an address or a definition the check no longer has)."""
        ...

    async def probe_fingerprints(self, environment: str, since: float) -> list[StoredProbes]:
        """The environment's runs since `since` by check and fingerprint: what a start
        compares with its checks as configured now (`agent.windows.probing.BackgroundProber`),
        on the same index as `probe_summaries`."""
        ...

    async def prune_probe_summaries(self, before: float) -> int: ...

    shared: ClassVar[bool]
    """Several replicas may use this store at once (PostgreSQL): background probing of an
    environment is then leased to one of them (`take_background`)."""

    async def take_background(
        self, environment: str, owner: str, now: float, until: float, *, steal: bool = False
    ) -> bool:
        """Hold the environment's background probing until `until`: True when `owner`
        holds it now (it did, or no one's lease runs past `now`), so replicas sharing the
        store probe each environment once, not once each (a load check's runs were
        doubled by a second replica). `steal`: take it whoever holds it (the replica
        whose window probes the environment: its rounds stand in for the runs)."""
        ...

    async def release_background(self, owner: str) -> None:
        """Give up every background lease `owner` holds (a clean stop): another replica
        takes each at its next slot instead of when the lease lapses."""
        ...

    async def prune_background_leases(self, lapsed_before: float) -> int:
        """Delete the background leases that lapsed before `lapsed_before`; how many. A
        lapsed lease is as good as none (`take_background` takes either), so this changes
        no replica's hold; it keeps leases of environments no replica probes any more (an
        environment removed from the config after its holder crashed) from staying for
        good. A live lease, whoever holds it, always stays."""
        ...

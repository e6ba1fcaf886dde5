"""The daemon's side of contract §7 that acts after a window opened: GitHub deployment
statuses, protection-rule gates, Rolling Releases approvals, manual rollbacks and the
`rollback.then` follow-ups.

One task polls the store (the truth) and does each outbound call once per window and
event: `Store.claim_alert` with `github:*`, `vercel:*` and `then:*` keys is the
persistent "done" mark, so a restart neither repeats nor forgets. It must not judge
a window or deliver a rollback itself: rollbacks go through `RollbackDelivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from agent import __version__
from agent.api.models import deploy_path
from agent.appkeys import WindowEvents
from agent.integrations.asked_waits import keeping
from agent.integrations.clients import CallResult, call, call_worst_case_s
from agent.integrations.events import Gate
from agent.integrations.runs import run_was_cancelled
from agent.integrations.targets import (
    FALLBACK,
    GITHUB_HEADERS,
    LEFT,
    LookUpDeferred,
    github_rate_limit_wait,
    look_up_previous,
    look_up_worst_case_s,
    vercel_rate_limit_wait,
    vercel_url,
)
from agent.records import (
    DeployWindow,
    GateAsk,
    IdempotentResponse,
    PendingGate,
    RollbackIntent,
    decided_verdict,
)
from agent.rollback import rollback_intent, sign
from agent.settings import EnvironmentSettings, RollbackSettings, Settings
from agent.stopping import named_for_a_stop
from agent.store.base import AlertClaim, Conflict, reported_by
from agent.store.outages import (
    StoreOutageLog,
    handed_back,
    held_until_stored,
    not_taken,
    store_outage,
    unless_outage,
)
from agent.web.links import deploy_page_url
from agent.windows.alert_once import alert_claim
from agent.windows.claim_waits import OWN_STAMP_S, AlertClaimWait, GateClaimWait
from agent.windows.lifecycle import FOLLOW_UPS, WatchServices, deliver_rollback
from agent.windows.markers import mark_rollback, marker_claims, marking
from alerting.events import MANUAL_ROLLBACK_PREFIX, Alert, AlertEvent, IntegrationCall
from common.durations import format_duration
from common.keyed_locks import KeyedLocks
from common.redaction import address_redactor
from common.times import rfc3339

log = logging.getLogger("postflight.integrations")

COMMIT_STATE = {
    "watching": "pending",
    "passed": "success",
    "failed": "failure",
    "rolled_back": "failure",
    "inconclusive": "error",
    "cancelled": "error",
    "superseded": "error",
}
"""A commit status has no `inactive`: a window ended without a verdict is `error`, with
why (`NO_VERDICT`), rather than `pending` for good."""
SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
"""What a commit status goes on: GitHub refuses a short SHA there (422)."""


def same_commit(one: str | None, other: str | None) -> bool:
    """Whether two commits are one, written in full or abbreviated (`9fceb02`)."""
    if not one or not other or not SHA.match(one) or not SHA.match(other):
        return False
    one, other = one.lower(), other.lower()
    return one.startswith(other) or other.startswith(one)


STATUS_OF_STATE = {
    "watching": "in_progress",
    "passed": "success",
    "failed": "failure",
    "rolled_back": "failure",
    "inconclusive": "error",
    "cancelled": "error",
    "superseded": "inactive",
}
"""GitHub's deployment status for a window state: a superseded deploy was replaced by a
later registration (`inactive`, as GitHub marks replaced deployments); a cancelled one was
never judged (`error`)."""
NO_VERDICT = {
    "cancelled": "cancelled before a verdict",
    "superseded": "superseded by a later registration before a verdict",
}
"""The description of a status for a window that ended unjudged (its verdict, if any, is
a round's, not a decision). A later registration, not a newer deploy: one registered late
with an earlier `deployed_at` supersedes a window deployed after it."""
VERDICT_KEYS = {
    "github:in_progress": frozenset(
        f"github:{state}" for state in STATUS_OF_STATE.values() if state != "in_progress"
    ),
    "github:commit:pending": frozenset(
        f"github:commit:{state}" for state in COMMIT_STATE.values() if state != "pending"
    ),
}
"""A watch's own status (its claim key) → the keys of the statuses that end it: once one
of those is claimed, the watch's is not posted (it would land after the verdict's)."""
STAGE_KEY = "vercel:rolling-stage"
"""The once-key of noting which Rolling Release stage a window watches (`STAGE_LABEL`)."""
STAGE_LABEL = "vercel.rolling_stage"
"""The index of the Rolling Release stage active when the window began watching its
canary: a pass approves that stage only."""
APPROVAL_KEY = "vercel:approve-stage"
"""The once-key of a passing window's Rolling Release approval (or completion)."""
SENT_KEY = "vercel:approve-sent"
"""Marks the approval going out (`sending`, detail `<stage> -> <next stage|complete>`)
before the call, then `refused` (Vercel answered every attempt, took none) or `taken`: a
takeover finding `sending` and the release where that approval takes it (`_taken_to`)
knows the approval took effect though its answer was lost."""
PREVIOUS_KEY = "vercel:previous"
"""The once-key of a window's look-up of its previous production deployment."""
GATE_ANSWERS = {"passed": "approved", "failed": "rejected", "rolled_back": "rejected"}
SCAN_LIMIT = 50
SWEEP_LIMIT = 500
"""Page size past the newest page: a burst of registrations, or the first scan."""
DONE_RESULTS = ("delivered", "failed", "sent", "rejected", "approved")
MANUAL_STATES = ("watching", "passed", "failed", "inconclusive")
STATUS_RETRY_S = 60.0
"""How long a status waits before it is tried again after one call's every attempt met
an answer worth retrying (GitHub down, rate limited): a few seconds of 503s at a verdict
left the deployment `in_progress` for good."""
STATUS_RETRY_FOR_S = 3600.0
"""How long after its window ended a verdict's status is still tried again (a watch's
own only within its window: `Integrations._tried_again`), and a gate's answer after its
`gate.timeout`; past it the status is recorded failed, the gate answered with the error,
as a refusal that will not change is."""
FOLLOW_UP_LOOK_S = 2.0
"""How often a follow-up whose claim another holds is tried again: it lapses when the
wait its receiver asked for ends (`AlertClaimWait`), which this process does not know,
where it was tried again once a whole lease (`follow_up_lease`, 565 s on the defaults)
had passed."""
GATE_CLAIM_S = 300.0
"""How long one replica may take to answer a gate (the call's retries included) before
another may: a replica killed mid-answer, or one whose answer GitHub could not take yet
(down, rate limited), which is so tried again. A stop hands its claim back instead
(`Store.release_gate`)."""


def receiver_of(url: str) -> str:
    """Which receiver a follow-up goes to, for a log line: its host and port, never the
    path, query or userinfo of its URL, where a webhook keeps its token or password."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "its url"
    return f"{host}:{port}" if port else host


def has_a_rollback(window_id: str, environment: str, rollback: RollbackIntent) -> str:
    """Why a manual rollback of a deploy with one is refused (409), in words that do not
    say a rollback went out when none did: a `failed` window's was skipped by a dry run,
    or its delivery failed, and the person asking is asking because of that. One rollback
    is requested per deploy (contract section 3), so what is left is said."""
    said = f"deploy {window_id} already has a rollback"
    if rollback.state == "skipped":
        return (
            f"{said}, skipped: {environment}'s rollback.dry_run is true, so nothing is sent"
            " to its target, by hand neither"
        )
    if rollback.state == "failed":
        why = rollback.last_error or (
            f"HTTP {rollback.last_status}" if rollback.last_status else "no answer"
        )
        return (
            f"{said}, which failed: {why}. One rollback is requested per deploy: roll back"
            " at the target by hand if it still serves this deploy"
        )
    return said


@dataclass(frozen=True, slots=True)
class _Call:
    """A status's post to GitHub: where it goes, its body, and the list it shows in."""

    url: str
    body: dict[str, Any]
    listed: str


@dataclass(frozen=True, slots=True)
class Release:
    """A project's Rolling Release as Vercel told it, read for a window's canary."""

    index: int | None = None
    """The active stage's index; None when there is none to approve (`why`)."""
    finishing: bool = False
    """Whether approving stage `index` finishes the release (`finishes`)."""
    why: str = ""
    failed: CallResult | None = None
    """Vercel's failed answer when asking it failed (refused, or `CallResult.gave_up`)."""
    state: str | None = None
    ours: bool = False
    """Whether the release is of the window's canary."""
    updated_at: float | None = None
    """When the release last changed (Vercel's `updatedAt`, in seconds), if it says."""

    def changed_since(self, started: float) -> str | None:
        """Why stage `index` may not be the one active at `started` (a window's start),
        or None when it was: stage 0 (stages only advance), or no change since then."""
        if self.index is None or self.index == 0:
            return None
        if self.updated_at is not None and self.updated_at <= started:
            return None
        when = "at an instant Vercel does not say"
        if self.updated_at is not None:
            when = f"at {rfc3339(self.updated_at, millis=False)}"
        return (
            f"the rolling release, now at stage {self.index}, changed {when}, after the"
            f" window began ({rfc3339(started, millis=False)})"
        )


def finishes(release: dict[str, Any], index: int) -> bool:
    """Whether a pass of stage `index` finishes the Rolling Release: the stage is the
    final one, or the next is (the last stage is always the full 100%), or Vercel names
    no stage after it. Read from `activeStage`/`nextStage` (`isFinalStage`), else from
    `stages`; a release that says neither is advanced, as before."""
    active = release.get("activeStage")
    if isinstance(active, dict) and active.get("isFinalStage") is True:
        return True
    following = release.get("nextStage")
    if isinstance(following, dict):
        return following.get("isFinalStage") is True
    stages = release.get("stages")
    if not isinstance(stages, list) or not stages:
        return "nextStage" in release  # named, and null: there is no next stage
    after = [s for s in stages if isinstance(s, dict) and s.get("index") == index + 1]
    if not after:
        return True
    indexes = [
        s["index"] for s in stages if isinstance(s, dict) and isinstance(s.get("index"), int)
    ]
    return after[0].get("isFinalStage") is True or after[0]["index"] == max(indexes)


def follow_up_lease(rollback: RollbackSettings) -> float:
    """How long one sender holds a `rollback.then` follow-up: its call's worst case (every
    attempt timing out after the longest backoff) and a margin. A claim older than this
    without an outcome is a dead sender's, and another replica takes it over."""
    return rollback.max_attempts * (rollback.timeout + rollback.max_backoff) + 5.0


def _asked_by_hand(rollback: RollbackIntent | None) -> bool:
    """Whether `rollback` was asked by hand (`request_rollback`): its body names no
    breach, where a failed verdict's names each rule that failed."""
    if rollback is None:
        return False
    try:
        body = json.loads(rollback.body)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("breaches") == []


class Integrations:
    """Owned by the daemon (`agent.app`); the API reaches it through `INTEGRATIONS`."""

    def __init__(
        self,
        settings: Settings,
        services: WatchServices,
        events: WindowEvents,
        *,
        public_url: str,
        redact: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.s = services
        self.events = events
        self.public_url = public_url.rstrip("/")
        self.redact = redact
        self.clock = clock
        self.poll_interval = poll_interval
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._done: set[tuple[str, str]] = set()
        self._busy: set[tuple[str, str]] = set()
        self._locks = KeyedLocks()
        """Per deploy: its statuses go out in order, a manual rollback is asked once."""
        self._later: set[asyncio.Task[None]] = set()
        """Follow-ups held by another sender, to take over if its claim lapses."""
        self._following: set[tuple[str, str]] = set()
        """(window, `then:` key) of the follow-ups `_later` tries again."""
        self._seen: set[str] = set()
        """The newest page's windows at the last scan (`_new_windows` stops at them): only
        those, so that a process that runs for months does not keep every id it read."""
        self._full_shas: dict[tuple[str, str], str] = {}
        """(repository, short commit) → its full SHA, as the commits API answered."""
        self._owing: set[str] = set()
        """Windows read again by id each scan until their actions are done."""
        self._stamps: dict[tuple[str, str], float] = {}
        """(window, key) → when this process last took its claim (`_once`)."""
        self._retry_at: dict[tuple[str, str], float] = {}
        """(window, key) of a status GitHub could not take yet → when to try it again; its
        claim stays open meanwhile (`_record`), so a restart tries it too."""
        self._gates_busy: set[tuple[str, str]] = set()
        """Gates (callback URL, GitHub environment) being answered by a task of ours."""
        self._leaving = asyncio.Event()
        """Set by a stop (`leave_waits`)."""
        self._sent: set[str] = set()
        """Windows whose Rolling Release approval this process sent (`_approved` says
        whether it took effect before a restart or on an earlier try of ours)."""
        services.after_rollback = self.after_rollback
        services.follow_ups_owed = self.follow_ups_owed
        self._taken_over: set[tuple[str, str]] = set()
        """(window, key) claims `_once` took over from a sender that left no outcome."""
        self._follow_ups_outage = StoreOutageLog(log, "integrations: owed follow-ups")
        self._actions_outage = StoreOutageLog(log, "integrations: statuses and approvals")
        """Said once when a status's or approval's task meets the store not answering
        (`_once`, tried again on the next scans), once when it answers again."""
        self._resume = True
        """Follow-ups owed to look for at the next turn (`_resume_after_rollbacks`): at
        the start, and after a store failure left a delivered rollback's owed."""

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"postflight/{__version__}"}
            )
        return self._session

    async def aclose(self) -> None:
        for task in self._later:
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def leave_waits(self) -> None:
        """A stop: a `rollback.then` follow-up, a GitHub status, a protection rule's
        answer or a Rolling Release approval waiting to retry (a `Retry-After`, a backoff)
        hands its claim back at once, and none is sent again in this process: the next
        start sends it (`_resume_after_rollbacks`, the scan); in a wait the provider or the
        receiver asked for, its claim is kept to that wait's end (`claim_waits`), and the
        next start sends it then. An attempt out finishes
        within the stop's grace (a follow-up or a gate's answer cut at its end is handed
        back too). The stop waited the wait out within its grace, sent the next attempt
        inside it when the wait was shorter, and cut it off when not."""
        self._leaving.set()

    def wake(self) -> None:
        self._wake.set()

    def follow_ups_owed(self) -> None:
        """A delivered rollback's follow-ups were left owed (`deliver_rollback`, the store
        failing after its outcome): looked for at the next turn, as at a start."""
        self._resume = True
        self.wake()

    def deploy_url(self, window_id: str) -> str:
        """The deploy's page (`server.ui`), else its API object. Without a view token: a
        commit status and a gate's comment are public on a public repository, and a token
        there let anyone read the deploy for `server.view_ttl`; on-call signs in."""
        page = deploy_page_url(self.settings.server, window_id, now=self.clock(), view=False)
        return page or self.object_url(window_id)

    def deploys_url(self) -> str | None:
        """The deploy pages' list (`server.ui`; None when they are off): a gate's comment
        when no window of its sha came to link to."""
        server = self.settings.server
        return f"{server.base_url}/deploys" if server.ui else None

    def object_url(self, window_id: str) -> str:
        """The deploy object's URL (its `links.self` under `server.public_url`): what a
        deployment status's `log_url` points at (contract section 7)."""
        return f"{self.public_url}{deploy_path(window_id)}"

    # the loop ----------------------------------------------------------------

    async def run(self) -> None:
        outage = StoreOutageLog(log, "integrations: a scan")
        while True:
            # cleared as the turn begins: a deploy event or a gate heard during a scan (one
            # of seconds with a store slow to answer, after it read the windows) wakes the
            # next at once, where clearing after the scan left its status a whole poll late
            self._wake.clear()
            try:
                if self._resume:
                    # retried until the store answers: a first look that failed was
                    # skipped, and its follow-ups waited for the next restart
                    self._resume = False
                    try:
                        await unless_outage(
                            self._resume_after_rollbacks(), log, "resuming rollbacks' follow-ups"
                        )
                    except Exception:
                        self._resume = True
                        raise
                await self._scan()
                outage.answered()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(exc)
                self._wake.clear()  # a scan that failed waits a whole poll
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    def _follows_windows(self) -> bool:
        """Whether any integration acts on windows (GitHub statuses, Vercel stages): if
        none does, the scan reads no windows (it runs every second)."""
        integrations = self.settings.integrations
        return (integrations.github is not None and integrations.github.token is not None) or (
            integrations.vercel is not None and bool(integrations.vercel.token)
        )

    async def _scan(self) -> None:
        if self._follows_windows():
            await self._follow_windows()
        for gate in await self.s.store.pending_gates():
            # each in its own task: one whose answer hangs (GitHub slow for that run, a
            # call's 4 attempts) held up every other gate, and the scans, all that time
            asked = (gate.callback_url, gate.github_environment)
            if asked not in self._gates_busy:
                self._gates_busy.add(asked)
                self.s.spawn(self._gate_in_turn(gate, asked))

    async def _gate_in_turn(self, gate: PendingGate, asked: tuple[str, str]) -> None:
        """`_gate`, once at a time per gate; a failure (the store not answering) is left
        to the next scan, which finds the gate still pending."""
        try:
            await self._gate(gate)
        except Exception as exc:
            log.warning(
                "protection rule for %s %s: not answered this time (%s)",
                gate.github_environment,
                gate.sha[:12],
                self.redact(str(exc)),
                exc_info=not store_outage(exc),
            )
        finally:
            self._gates_busy.discard(asked)

    async def _follow_windows(self) -> None:
        """Act on every window that still owes a status or an approval, at any scale.

        Each second it reads the windows registered since the last scan (`_new_windows`)
        and, by id, those it follows (`_owing`: watching, or with an action not yet
        done), never the whole table: the newest page alone missed a window that ended
        after 50 newer ones were registered, and its GitHub deployment stayed
        `in_progress`. A window is dropped once its state's actions are all done; a
        later change (a manual rollback after a pass) follows it again (`after_rollback`).
        """
        newest, older = await self._new_windows()
        new = newest + older
        await self._mark_done(newest, older)
        owing = [w for w in new if self._owes(w)]
        known = {w.id for w in new}
        followed = [i for i in self._owing if i not in known]
        if followed:
            owing += await self.s.store.get_windows(followed)
        self._owing.difference_update(followed)  # kept: ids added meanwhile (a rollback)
        for window in owing:
            self._act(window)
            if self._owes(window):
                self._owing.add(window.id)
        # what is done matters only for the windows still followed (the store's claims
        # guard the rest): the set stays as small as the work in hand
        self._done = {mark for mark in self._done if mark[0] in self._owing}
        self._retry_at = {m: at for m, at in self._retry_at.items() if m[0] in self._owing}
        self._stamps = {m: at for m, at in self._stamps.items() if m[0] in self._owing}
        self._sent.intersection_update(self._owing)

    async def _new_windows(self) -> tuple[list[DeployWindow], list[DeployWindow]]:
        """Windows not seen before, newest first, on the newest page and past it: pages
        until one holds a window seen already (all older ones were). The first scan after
        a start so reads the table once, and finds the windows that ended unposted while
        no agent followed them."""
        pages: list[list[DeployWindow]] = []
        cursor: str | None = None
        newest: set[str] = set()
        while True:
            limit = SCAN_LIMIT if cursor is None else SWEEP_LIMIT
            page = await self.s.store.list_windows(limit=limit, cursor=cursor)
            if cursor is None:
                newest = {w.id for w in page.items}
            fresh = [w for w in page.items if w.id not in self._seen]
            pages.append(fresh)
            if len(fresh) < len(page.items) or page.next_cursor is None:
                # the next scan's first page holds some of these unless more than a page
                # came meanwhile, and then it pages on until it meets them
                self._seen = newest
                return pages[0], [w for later in pages[1:] for w in later]
            cursor = page.next_cursor

    async def _mark_done(self, newest: list[DeployWindow], older: list[DeployWindow]) -> None:
        """Note the actions already done for windows new to this process (one query per
        thousand, not a claim per window and key: a restart finds thousands).

        Past the newest page, a window that had ended owes only what it began (its
        `in_progress` or `pending` claimed): one never begun predates the integration's
        configuration, and turning `commit_status` on must not post a status on every
        commit of the history."""
        windows = [w for w in newest + older if self._keys(w)]
        if not windows:
            return
        events = await self.s.store.alerts_of([w.id for w in windows])
        history = {w.id for w in older if w.state != "watching"}
        for window in windows:
            done = events.get(window.id, {})
            self._done.update((window.id, k) for k, result in done.items() if result != "claimed")
            if window.id in history:
                begun = {key.rsplit(":", 1)[0] for key in done}
                self._done.update(
                    (window.id, k) for k in self._keys(window) if k.rsplit(":", 1)[0] not in begun
                )

    def _act(self, window: DeployWindow) -> None:
        if self._owes_previous(window):
            self._once(
                window,
                PREVIOUS_KEY,
                lambda: self._look_up_previous(window),
                lease=self._previous_lease(),
            )
        if self._owes_stage(window):
            self._once(
                window, STAGE_KEY, lambda: self._note_stage(window), lease=self._stage_lease()
            )
        if "github.deployment" in window.labels:
            self._github_statuses(window)
        self._commit_status(window)
        if window.state == "passed" and "vercel.deployment" in window.labels:
            self._rolling_release(window)

    def _keys(self, window: DeployWindow) -> list[str]:
        """The `claim_alert` keys of the actions the window's current state calls for."""
        keys: list[str] = []
        state = self._deployment_state(window)
        if state is not None:
            keys.append(f"github:{state}")
        commit = self._commit_state(window)
        if commit is not None:
            keys.append(f"github:commit:{commit[0]}")
        if window.state == "passed" and self._rolls_out(window):
            keys.append(APPROVAL_KEY)
        if self._owes_previous(window):
            keys.append(PREVIOUS_KEY)
        if self._owes_stage(window):
            keys.append(STAGE_KEY)
        return keys

    def _owes(self, window: DeployWindow) -> bool:
        """Whether the window is still to be followed: watching (its verdict will call
        for a status or an approval, or the other provider's event may join it) or with
        an action not done yet."""
        keys = self._keys(window)
        if window.state == "watching" and (
            keys or self._rolls_out(window) or self._may_be_joined(window)
        ):
            return True
        return any((window.id, key) not in self._done for key in keys)

    def _may_be_joined(self, window: DeployWindow) -> bool:
        """Whether the other provider's event of the same deploy may still join the
        window (`same_deploy`: its environment has both sources, the window names one
        provider's deployment): the labels a join adds call for actions (GitHub's
        statuses), where a scan that had found the window owing nothing stopped reading
        it, and a GitHub deployment joined a second later heard no status at all."""
        env = self.settings.environments.get(window.environment)
        if env is None or env.sources.github is None or env.sources.vercel is None:
            return False
        return len(reported_by(window.labels)) == 1

    def _once(
        self,
        window: DeployWindow,
        key: str,
        work: Callable[[], Any],
        *,
        lease: float | None = None,
    ) -> None:
        """Start `work` for (window, key) unless done or running; `work` claims `key`.
        A `work` that returns False left it to a later try (`_record`): not done, and its
        own claim, still open, is taken back once `_retry_at` has come.

        With `lease` (a status, which GitHub takes twice without harm; a stage approval,
        which reads the release afresh first), a claim still without an outcome after
        `lease` seconds is a sender's that died mid-call or between two tries (kill -9, a
        stop while GitHub answered 503): it is taken over, else the verdict's status is
        never posted. Without it, a claim is final. A later try of this process's takes
        back only its own claim (`_stamps`), not one another replica took over since."""
        mark = (window.id, key)
        if mark in self._done or mark in self._busy:
            return
        retry_at = self._retry_at.get(mark)
        if retry_at is not None and self.clock() < retry_at:
            return
        self._busy.add(mark)

        async def run() -> None:
            done = True
            try:
                now = self.clock()
                if retry_at is not None:
                    # a claim this process left open for a later try is its own to take,
                    # unless another replica took it over since (a stamp newer than ours)
                    mine = self._stamps.get(mark, now)
                    lapsed = min(now, mine + OWN_STAMP_S)
                    claimed = await self._taken(window.id, key, now, lapsed)
                elif lease is None:
                    claimed = await self.s.store.claim_alert(window.id, key, now)
                else:
                    # a claim without an outcome is a dead (or stopped) sender's, whose
                    # call may have been taken: told to the work (`_posted_before`)
                    events = await self.s.store.alert_events(window.id)
                    # or at once one its own killed process left mid-call (`orphaned`),
                    # where the restart waited out the lease (135 s on the defaults); a
                    # rate limit's wait stays kept (`_stamp_for_retry`)
                    claimed = await self._taken(window.id, key, now, now - lease, orphaned=True)
                    if claimed and events.get(key) == "claimed":
                        self._taken_over.add(mark)
                self._retry_at.pop(mark, None)
                if claimed:
                    self._stamps[mark] = now
                    if lease is None:
                        done = await work() is not False
                        stamp, kept = now, False
                    else:
                        # a wait GitHub or Vercel asks for inside a call is kept in the
                        # claim (`AlertClaimWait`), where a kill -9 in it left the restart
                        # sending at once, inside the wait
                        wait = AlertClaimWait(self.s.store, window.id, key, now, lease, self.clock)
                        with keeping(wait):
                            done = await work() is not False
                        stamp, kept = wait.stamp, wait.waiting
                        self._stamps[mark] = stamp
                    due = self._retry_at.get(mark)
                    if not done and lease is not None and due is not None:
                        await self._stamp_for_retry(window.id, key, mark, stamp, due)
                    if not done and lease is not None and self._leaving.is_set() and not kept:
                        # a stop met it before an attempt or between two: nothing of it
                        # out, its claim handed back, where the next start waited for it
                        # to lapse (`_status_lease`, 135 s with the defaults); in a wait
                        # the provider asked for, kept till its end (`kept`)
                        release = self.s.store.release_alert
                        await handed_back(lambda: release(window.id, key, stamp), self.s.stop)
                elif lease is not None:
                    # held by a live sender, or by a dead one whose claim has not lapsed
                    # yet: looked at again on a later scan until it has an outcome
                    events = await self.s.store.alert_events(window.id)
                    done = events.get(key, "claimed") != "claimed"
                self._actions_outage.answered()
            except Exception as exc:
                if not store_outage(exc):
                    raise
                # the store did not answer (a restart, a file held elsewhere): tried again
                # by the scans once it does, where it was marked done, and the status
                # never posted until a restart. A claim of ours is taken back at once
                # (`_retry_at`, its stamp ours); one not taken is claimed afresh.
                done = False
                if mark in self._stamps:
                    self._retry_at[mark] = self.clock()
                self._actions_outage.failed(
                    exc, {"deploy_id": window.id, "environment": window.environment}
                )
            finally:
                self._busy.discard(mark)
                self._taken_over.discard(mark)
                if done:
                    self._done.add(mark)
                    self._stamps.pop(mark, None)

        self.s.spawn(run())

    async def _stamp_for_retry(
        self, window_id: str, key: str, mark: tuple[str, str], stamp: float, due: float
    ) -> None:
        """A claim left for a later try at `due` past `STATUS_RETRY_S` (the wait a rate
        limit asked for) is stamped `due - STATUS_RETRY_S`, as if claimed then: its lease,
        which a restart or another replica waits out before taking it over, then ends past
        `due` as it does for a retry after `STATUS_RETRY_S`, where it ended `lease` after
        the claim and the asked wait was not kept. Only while the claim is still this
        process's (its stamp), as `_once` takes it back. Stamped `waiting`: a restart
        after a kill -9 keeps the wait rather than take the claim as its dead run's."""
        moved = due - STATUS_RETRY_S
        if moved <= stamp:
            return
        try:
            if await self._taken(window_id, key, moved, stamp + OWN_STAMP_S, waiting=True):
                self._stamps[mark] = moved
        except Exception as exc:  # kept as claimed: taken over `lease` after that, as before
            log.warning("%s of %s: its claim not moved on (%s)", key, window_id, exc)

    async def _taken(
        self,
        window_id: str,
        key: str,
        now: float,
        lapsed_before: float,
        *,
        orphaned: bool = False,
        waiting: bool = False,
    ) -> bool:
        taken = await self.s.store.take_alert(
            window_id, key, now, lapsed_before, orphaned=orphaned, waiting=waiting
        )
        return taken is not None

    def _approval_lease(self) -> float:
        """How long one sender holds a Rolling Release approval: its two calls' worst case
        (the release's state, then the approval), the wait before its next try
        (`STATUS_RETRY_S`) and a margin. A claim older than this without an outcome is a
        stopped or dead sender's: a restart takes it over, where the approval a stop cut
        off between two tries was never sent. The approval reads the release afresh, so
        one that took effect is not sent again (`_approve_stage`)."""
        return 2 * call_worst_case_s(self._vercel_timeout()) + STATUS_RETRY_S + 5.0

    def _previous_lease(self) -> float:
        """How long one agent holds the look-up of `vercel.previous`: its worst case
        (`look_up_worst_case_s`) and a margin. A stop hands its claim back at once
        (`_look_up_previous` False), a kill -9's lapses after this, and the next agent
        asks again; without a lease the claim of a look-up cut off was final, and it was
        never asked again (the page showed no deployment to go back to)."""
        return look_up_worst_case_s(self._vercel_timeout()) + 5.0

    def _stage_lease(self) -> float:
        """How long one agent holds the note of a Rolling Release's stage: its read's
        worst case (`call_worst_case_s`) and a margin; a stop hands it back at once."""
        return call_worst_case_s(self._vercel_timeout()) + 5.0

    def _vercel_timeout(self) -> float:
        """Vercel's calls' timeout, which its claims' leases are sized by (10 s when no
        Vercel is configured)."""
        vercel = self.settings.integrations.vercel
        return vercel.timeout if vercel is not None else 10.0

    def _status_lease(self) -> float:
        """How long one sender holds a GitHub status: `call`'s worst case
        (`call_worst_case_s`: 4 attempts timing out, 3 waits of at most 30 s) and a margin."""
        github = self.settings.integrations.github
        timeout = github.timeout if github is not None else 10.0
        return call_worst_case_s(timeout) + 5.0

    # GitHub deployment statuses ----------------------------------------------

    def _deployment_state(self, window: DeployWindow) -> str | None:
        """The deployment status the window's state calls for, if it has a deployment."""
        github = self.settings.integrations.github
        if github is None or github.token is None or "github.deployment" not in window.labels:
            return None
        return STATUS_OF_STATE.get(window.state)

    def _github_statuses(self, window: DeployWindow) -> None:
        state = self._deployment_state(window)
        if state is None:
            return
        lease = self._status_lease()
        if state == "in_progress":
            self._once(
                window, "github:in_progress", lambda: self._watch_status(window), lease=lease
            )
        else:
            self._once(
                window, f"github:{state}", lambda: self._final_status(window, state), lease=lease
            )

    async def _final_status(self, window: DeployWindow, state: str) -> bool:
        """`in_progress` first (a window can end before the first scan saw it open); it
        is not tried again later, when it would come after the verdict's."""
        if await self.s.store.claim_alert(window.id, "github:in_progress", self.clock()):
            await self._status(window, "in_progress", retry=False)
        return await self._status(window, state)

    async def _status(self, window: DeployWindow, state: str, *, retry: bool = True) -> bool:
        """Statuses of one deployment go out one after the other, in order."""
        async with self._locks.hold(f"status:{window.id}"):
            return await self._post_status(window, state, retry=retry)

    async def _watch_status(self, window: DeployWindow) -> bool:
        """The deployment's `in_progress`, unless its verdict's status went out first: a
        sender that read the window while it watched (a scan just before its end, a claim
        taken over from a killed replica) posted it after another replica's `failure`,
        and GitHub showed the deployment in progress for good (`_verdict_kept_last`)."""
        async with self._locks.hold(f"status:{window.id}"):
            if await self._watch_overtaken(window, "github:in_progress"):
                return True
            done = await self._post_status(window, "in_progress", retry=True)
            await self._keep_verdict_last(window, "github:in_progress")
            return done

    def _status_call(self, window: DeployWindow, state: str, description: str) -> _Call:
        """Where a deployment status goes, and its body."""
        github = self.settings.integrations.github
        assert github is not None and github.token is not None
        repository = window.labels.get("github.repository", "")
        deployment = window.labels.get("github.deployment", "")
        body: dict[str, Any] = {
            "state": state,
            "log_url": self.object_url(window.id),
            "description": description[:140],
            "environment": window.labels.get("github.environment", window.environment),
        }
        if window.labels.get("github.environment_url"):
            body["environment_url"] = window.labels["github.environment_url"]
        url = (
            f"{github.api_url.rstrip('/')}/repos/{repository}/deployments/"
            f"{quote(deployment, safe='')}/statuses"
        )
        return _Call(url, body, url)

    async def _post_status(self, window: DeployWindow, state: str, *, retry: bool) -> bool:
        description = await self._status_words(window, state, watching=state == "in_progress")
        call = self._status_call(window, state, description)
        url, body = call.url, call.body
        what = f"GitHub deployment status {state}"
        key = f"github:{state}"
        if await self._listed_before(
            window, key, what, lambda: self._posted_before(url, state, deploy_path(window.id))
        ):
            return True
        result = await self._github_post(url, body)
        return self._record(window, key, result, what, retry=retry, call="status")

    def _posts_after(self, window_id: str, key: str) -> bool:
        """Whether this process holds `key`'s claim and its task has not returned: its
        post, if any, comes after the status being posted under the same lock."""
        mark = (window_id, key)
        return mark in self._busy and mark in self._stamps

    async def _watch_overtaken(self, window: DeployWindow, key: str) -> bool:
        """Whether a status that ends the watch is claimed already (by another replica,
        or by a task of this process that has had its turn): the watch's own (`key`) is
        then recorded skipped, not posted, where it landed after the verdict's."""
        events = await self.s.store.alert_events(window.id)
        ended = [
            k
            for k in sorted(VERDICT_KEYS[key].intersection(events))
            if not self._posts_after(window.id, k)
        ]
        if not ended:
            return False
        log.info(
            "%s: not posted, its window's %s is claimed already (it would land after it)",
            key,
            ended[0],
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        why = f"the window ended first ({ended[0]} claimed)"
        await self._held_write(
            window,
            lambda: self.s.store.record_alert(window.id, key, "skipped", why),
            f"{key} skipped",
        )
        return True

    async def _keep_verdict_last(self, window: DeployWindow, key: str) -> None:
        """`_verdict_kept_last`, whose failure (the store or GitHub not answering) leaves
        the watch's status as it went: said, and not tried again."""
        try:
            await self._verdict_kept_last(window, key)
        except Exception as exc:
            log.warning(
                "%s: whether the verdict's status is still the last GitHub got is not known (%s)",
                key,
                self.redact(str(exc)),
                exc_info=not store_outage(exc),
                extra={"deploy_id": window.id, "environment": window.environment},
            )

    async def _verdict_kept_last(self, window: DeployWindow, key: str) -> None:
        """After a watch's status (`key`) went out: if the window ended meanwhile and
        another sender (a replica, or a claim of ours another took over) claimed its
        verdict's status, that one may have landed first, and GitHub would show the
        watch's as the latest. Unless GitHub's list (newest first) starts with the
        verdict's, it is posted again, so that it is the last GitHub gets; a verdict's
        status claimed by this process goes out after this one (the same lock)."""
        events = await self.s.store.alert_events(window.id)
        if not VERDICT_KEYS[key].intersection(events):
            return
        fresh = await self.s.store.get_window(window.id)
        if fresh is None:
            return
        deployment = key == "github:in_progress"
        if deployment:
            state = self._deployment_state(fresh)
            final = f"github:{state}"
        else:
            commit = self._commit_state(fresh)
            state = commit[0] if commit is not None else None
            final = f"github:commit:{state}"
        if state is None or final not in VERDICT_KEYS[key] or final not in events:
            return  # not claimed yet: its sender posts it after this
        if self._posts_after(window.id, final):
            return  # ours, waiting for the lock this holds
        description = await self._verdict_words(fresh, state)
        call = (
            self._status_call(fresh, state, description)
            if deployment
            else await self._commit_call(fresh, state, description)
        )
        if call is None or await self._newest_status(call) == state:
            return
        what = f"GitHub {'deployment' if deployment else 'commit'} status {state}"
        log.info(
            "%s: posted again, after the watch's %s, which GitHub may have taken after it",
            what,
            key,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        result = await self._github_post(call.url, call.body)
        if not result.ok:
            log.warning(
                "%s not posted again: %s",
                what,
                result.error,
                extra={"deploy_id": window.id, "environment": window.environment},
            )

    async def _newest_status(self, call: _Call) -> str | None:
        """The state of the newest status GitHub lists where `call` posts (of its context,
        for a commit's); None when none is read."""
        context = call.body.get("context")
        for listed in await self._github_list(call.listed):
            if context is None or listed.get("context") == context:
                return str(listed.get("state"))
        return None

    async def _listed_before(
        self, window: DeployWindow, key: str, what: str, listed: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Whether a status whose claim was taken over from a sender that left no outcome
        is on GitHub's list already (`listed`, looked at only then), and so recorded sent,
        not posted again: its sender died (kill -9) between GitHub's 201 and its record,
        and a second status of the same state went out once its claim lapsed."""
        if (window.id, key) not in self._taken_over or not await listed():
            return False
        log.info(
            "%s: GitHub lists it already (posted by a sender that left no record of it);"
            " not posted again",
            what,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        self.s.spawn(self._held_record(window, key, "sent", "posted before", what))
        return True

    async def _posted_before(self, url: str, state: str, path: str) -> bool:
        """Whether the deployment's statuses (`url`, GitHub's list of them, newest first)
        hold one of `state` whose `log_url` is the deploy's (ends with its `path`: the
        public URL may have changed with the restart). Any doubt (GitHub down, an answer
        not read): False, and it is posted, a second status doing no harm."""
        listed = await self._github_list(url)
        return any(
            s.get("state") == state and str(s.get("log_url") or "").endswith(path) for s in listed
        )

    async def _commit_posted_before(
        self, repository: str, sha: str, body: dict[str, Any], window_id: str
    ) -> bool:
        """Whether the commit's statuses (GitHub's list of them for the SHA, newest first)
        hold one of this state and context whose `target_url` is the deploy's (its page or
        its API object: `server.ui` or the public URL may have changed with the restart).
        Any doubt: False, and it is posted, as a deployment status is (`_posted_before`)."""
        github = self.settings.integrations.github
        assert github is not None
        url = f"{github.api_url.rstrip('/')}/repos/{repository}/commits/{sha}/statuses"
        ends = (f"/deploys/{quote(window_id)}", deploy_path(window_id))
        return any(
            s.get("state") == body["state"]
            and s.get("context") == body["context"]
            and str(s.get("target_url") or "").endswith(ends)
            for s in await self._github_list(url)
        )

    async def _github_list(self, url: str) -> list[dict[str, Any]]:
        """The first page (100) of a GitHub list (`url`), newest first; empty when GitHub
        does not answer or its answer is not a list."""
        result = await self._github_get(f"{url}?per_page=100")
        listed = result.data if result.ok and isinstance(result.data, list) else []
        return [s for s in listed if isinstance(s, dict)]

    async def _github_get(self, url: str) -> CallResult:
        """One GET from GitHub (no body, so no Content-Type): a read, so a stop in its waits
        leaves it (`CallResult.left`)."""
        github = self.settings.integrations.github
        assert github is not None
        headers = {k: v for k, v in self._github_headers().items() if k != "Content-Type"}
        return await call(
            self._client(),
            "GET",
            url,
            headers=headers,
            timeout_s=github.timeout,
            redact=self.redact,
            rate_limit=github_rate_limit_wait,
            leaving=self._leaving,
        )

    def _commit_state(self, window: DeployWindow) -> tuple[str, str] | None:
        """The commit status the window's state calls for, and the repository."""
        github = self.settings.integrations.github
        env = self.settings.environments.get(window.environment)
        source = env.sources.github if env is not None else None
        state = COMMIT_STATE.get(window.state)
        if (
            github is None
            or github.token is None
            or source is None
            or not source.commit_status
            or state is None
            or not SHA.match(window.commit or "")
        ):
            return None
        return state, source.repository

    def _commit_status(self, window: DeployWindow) -> None:
        commit = self._commit_state(window)
        if commit is None:
            return
        state, repository = commit
        self._once(
            window,
            f"github:commit:{state}",
            lambda: self._post_commit_status(window, state, repository),
            lease=self._status_lease(),
        )

    async def _post_commit_status(self, window: DeployWindow, state: str, repository: str) -> bool:
        github = self.settings.integrations.github
        assert github is not None
        key = f"github:commit:{state}"
        if window.state == "superseded" and await self._same_commit_newer(window):
            await self.s.store.record_alert(window.id, key, "skipped", "a newer window's commit")
            return True
        async with self._locks.hold(f"commit:{window.id}"):
            # a `pending` is not posted once the verdict's status is claimed, and the
            # verdict's is posted again if it may have landed first (`_watch_status`)
            watching = state == "pending"
            if watching and await self._watch_overtaken(window, key):
                return True
            description = await self._status_words(window, state, watching=watching)
            body = self._commit_body(window, state, description)
            sha = await self._full_sha(repository, window.commit or "")
            if not sha.ok:
                return self._record(
                    window, key, sha, f"commit status {state}", retry=True, call="commit_status"
                )
            what = f"GitHub commit status {state}"
            if await self._listed_before(
                window,
                key,
                what,
                lambda: self._commit_posted_before(repository, sha.data, body, window.id),
            ):
                return True
            url = f"{github.api_url.rstrip('/')}/repos/{repository}/statuses/{sha.data}"
            result = await self._github_post(url, body)
            done = self._record(window, key, result, what, retry=True, call="commit_status")
            if watching:
                await self._keep_verdict_last(window, key)
        return done

    def _commit_body(self, window: DeployWindow, state: str, description: str) -> dict[str, Any]:
        return {
            "state": state,
            "target_url": self.deploy_url(window.id),
            "description": description[:140],
            "context": f"postflight/{window.environment}",
        }

    async def _commit_call(
        self, window: DeployWindow, state: str, description: str
    ) -> _Call | None:
        """Where a commit status goes, its body and the commit's list of statuses; None
        when the commit's full SHA is not known."""
        github = self.settings.integrations.github
        commit = self._commit_state(window)
        if github is None or commit is None:
            return None
        repository = commit[1]
        sha = await self._full_sha(repository, window.commit or "")
        if not sha.ok:
            return None
        api = f"{github.api_url.rstrip('/')}/repos/{repository}"
        return _Call(
            f"{api}/statuses/{sha.data}",
            self._commit_body(window, state, description),
            f"{api}/commits/{sha.data}/statuses",
        )

    async def _github_post(self, url: str, body: dict[str, Any]) -> CallResult:
        """One status (a deployment's or a commit's) or a gate's answer posted to GitHub."""
        github = self.settings.integrations.github
        assert github is not None
        return await call(
            self._client(),
            "POST",
            url,
            headers=self._github_headers(),
            body=json.dumps(body).encode(),
            timeout_s=github.timeout,
            redact=self.redact,
            rate_limit=github_rate_limit_wait,
            leaving=self._leaving,
        )

    async def _status_words(self, window: DeployWindow, state: str, *, watching: bool) -> str:
        """A status's description: the watch while it runs, else the verdict's words."""
        if watching:
            return f"Postflight is watching {window.version[:40]}"
        return await self._verdict_words(window, state)

    async def _full_sha(self, repository: str, commit: str) -> CallResult:
        """The full SHA (in `data`) a commit names: a commit status goes on a full one only,
        and a pipeline's `--commit` is often short (`9fceb02`, the contract's example), so a
        short one is resolved through `GET /repos/{repository}/commits/{ref}`."""
        if FULL_SHA.match(commit.lower()):
            return CallResult(True, None, None, commit.lower())
        known = self._full_shas.get((repository, commit))
        if known is not None:
            return CallResult(True, None, None, known)
        github = self.settings.integrations.github
        assert github is not None
        ref = quote(commit, safe="")
        result = await self._github_get(
            f"{github.api_url.rstrip('/')}/repos/{repository}/commits/{ref}"
        )
        sha = result.data.get("sha") if result.ok and isinstance(result.data, dict) else None
        if not isinstance(sha, str) or not FULL_SHA.match(sha):
            why = result.error if not result.ok else "no full SHA in GitHub's answer"
            return CallResult(
                False,
                result.status,
                f"commit {commit} in {repository}: {why}",
                attempts=result.attempts,
                gave_up=result.gave_up,
                left=result.left,
            )
        if len(self._full_shas) >= 1024:  # a long-running agent's windows: keep it bounded
            self._full_shas.clear()
        self._full_shas[(repository, commit)] = sha
        return CallResult(True, result.status, None, sha)

    async def _verdict_words(self, window: DeployWindow, state: str) -> str:
        """A final status's description: the verdict's reason, or why there is none; for
        a window rolled back by hand, the rollback's reason, so said: after its verdict
        passed (or was inconclusive), where the pass's words explained a `failure`; while
        it was watched, where the reason as given read as a rule's finding."""
        fresh = await self.s.store.get_window(window.id) or window
        verdict = fresh.verdict or {}
        by_hand = fresh.state == "rolled_back" and verdict.get("outcome") != "fail"
        if by_hand or fresh.state in ("failed", "rolled_back"):
            rollback = await self.s.store.get_rollback(window.id)
            reason = rollback.reason if rollback is not None else None
            if reason and (by_hand or _asked_by_hand(rollback)):
                return f"rolled back by hand: {reason}"
        return NO_VERDICT.get(fresh.state) or str(verdict.get("reason") or state)

    async def _same_commit_newer(self, window: DeployWindow) -> bool:
        """Whether the environment's newest window is another on the same commit: a
        superseded window then leaves the commit's status to it (an `error` racing its
        `pending` or verdict would stand on the commit)."""
        page = await self.s.store.list_windows(environment=window.environment, limit=1)
        newest = page.items[0] if page.items else None
        return (
            newest is not None
            and newest.id != window.id
            and (newest.commit == window.commit or same_commit(newest.commit, window.commit))
        )

    def _github_headers(self) -> dict[str, str]:
        github = self.settings.integrations.github
        assert github is not None and github.token is not None
        return {
            **GITHUB_HEADERS,
            "Authorization": f"Bearer {github.token.get_secret_value()}",
            "Content-Type": "application/json",
        }

    def _record(
        self,
        window: DeployWindow,
        key: str,
        result: CallResult,
        what: str,
        *,
        retry: bool = False,
        call: IntegrationCall | None = None,
    ) -> bool:
        """Store how a call went; with `retry` (a status, which GitHub takes twice without
        harm), a call that gave up on answers worth retrying is instead left to a later try
        (`STATUS_RETRY_S`) within `STATUS_RETRY_FOR_S`: False, its claim kept open.

        With `call`, a call given up for good (refused, or past the retries) is counted and
        told to on-call (`_given_up`); one not made (nothing to approve) is neither."""
        if result.left or result.lost:
            # a stop, with nothing of it out: no outcome (`_once` hands it back); or
            # another sender took its claim over in a wait the provider asked for, or the
            # store did not answer its take-back (the claim lapsed with the wait)
            said = (
                "its claim not taken back after waiting what the provider asked: "
                + result.not_back.replace("%", "%%")
                + " (%d attempt(s) made here); tried again by a later scan"
                if result.store_away
                else "taken over by another sender while waiting what the provider asked (%d"
                " attempt(s) made here); not sent again from here"
                if result.lost
                else "stopping before its next attempt (%d attempt(s) made): left pending to"
                " the next start, which posts it; nothing of it was in flight"
            )
            log.info(
                "%s: " + said,
                what,
                result.attempts,
                extra={"deploy_id": window.id, "environment": window.environment},
            )
            return False
        now = self.clock()
        # not before the wait GitHub or Vercel asked for (a rate limit's reset), where it
        # was tried again after `STATUS_RETRY_S` inside it
        wait = max(STATUS_RETRY_S, result.retry_after or 0.0)
        if retry and result.gave_up and self._tried_again(window, key, result, now + wait):
            # the claim's stamp is moved on with it (`_once`), so no restart or replica
            # takes it over sooner
            self._retry_at[(window.id, key)] = now + wait
            log.warning(
                "%s not posted yet: %s (tried again in %s)",
                what,
                result.error,
                format_duration(wait),
                extra={"deploy_id": window.id, "environment": window.environment},
            )
            return False
        outcome = "sent" if result.ok else "failed"
        detail = f"HTTP {result.status}" if result.ok else (result.error or "failed")
        if not result.ok:
            log.warning(
                "%s not posted: %s",
                what,
                detail,
                extra={"deploy_id": window.id, "environment": window.environment},
            )
        self.s.spawn(self._held_record(window, key, outcome, detail, what))
        if call is not None and (result.ok or result.status is not None or result.gave_up):
            self._count(key, outcome)
            # a watch's own `in_progress`/`pending` is told no one: its verdict's is
            if not result.ok and not key.endswith((":in_progress", ":pending")):
                why = f"{what} for {window.id}: {detail}"
                if result.gave_up:
                    why += " (not taken through an hour of retries)"
                self._given_up(window, window.environment, call, key, why)
        return True

    @staticmethod
    def _tried_again(window: DeployWindow, key: str, result: CallResult, due: float) -> bool:
        """Whether a status GitHub could not take is tried again at `due`: a watch's own
        (`in_progress`, `pending`) within its window and the wait GitHub asked for past
        its end (its verdict's status says the rest), where it went on for an hour after
        the deploy, posting and warning for a window long over; a verdict's for an hour
        after its window ended (`STATUS_RETRY_FOR_S`)."""
        if key.endswith((":in_progress", ":pending")):
            return due <= window.ends_at + (result.retry_after or 0.0)
        return due - max(STATUS_RETRY_S, result.retry_after or 0.0) < (
            (window.ended_at or window.deployed_at) + STATUS_RETRY_FOR_S
        )

    async def _held_record(
        self, window: DeployWindow, key: str, outcome: str, detail: str, what: str
    ) -> None:
        """A call's outcome (a status GitHub took, an approval Vercel took), held until
        the store takes it (`held_until_stored`): one write, a store that did not answer
        it left the claim with no outcome, and the next start (or another replica) took
        it over once it lapsed (`_status_lease`) and posted the status again."""

        await self._held_write(
            window,
            lambda: self.s.store.record_alert(window.id, key, outcome, detail),
            f"{what} {outcome} ({detail})",
        )

    async def _held_write(
        self, window: DeployWindow, write: Callable[[], Awaitable[object]], what: str
    ) -> None:
        """`write()`, what a call the receiver took did, until the store takes it."""

        def outage_begins(exc: Exception) -> None:
            log.warning(
                "%s; %s (%s): recording it once the store takes it, not sending it again",
                what,
                not_taken(exc),
                self.redact(str(exc)),
                extra={"deploy_id": window.id, "environment": window.environment},
            )

        await held_until_stored(write, outage_begins, stop=self.s.stop)

    def _count(self, key: str, outcome: str) -> None:
        """`postflight_integration_calls_total`, by the provider that `key` begins with."""
        provider = key.partition(":")[0]
        self.s.metrics.integration_calls_total.labels(provider, outcome).inc()

    def _given_up(
        self,
        window: DeployWindow,
        environment: str,
        call: IntegrationCall,
        key: str,
        why: str,
    ) -> None:
        """Tell `environment`'s channels that a call the deploy called for was given up
        (once per window and call, `integration_failed:<key>`): a log line alone left a
        production job waiting on a protection rule, or a release at its stage, with no
        one told."""
        env = self.settings.environments.get(environment)
        if env is None:
            return
        alert = Alert.for_window(window, "integration_failed", reason=why, call=call)
        self.s.spawn(
            self.s.alerts.emit(window, alert, env.alerts.tags, key=f"integration_failed:{key}")
        )

    # Vercel: the previous production deployment ------------------------------------

    def _owes_previous(self, window: DeployWindow) -> bool:
        """Whether a watched window of a Vercel production deployment lacks
        `vercel.previous` (a fresh agent's first window: no earlier window of ours, and
        the event named none), which contract section 7 keeps on its labels."""
        env = self.settings.environments.get(window.environment)
        source = env.sources.vercel if env is not None else None
        vercel = self.settings.integrations.vercel
        return (
            window.state == "watching"
            and bool(window.labels.get("vercel.deployment"))
            and "vercel.previous" not in window.labels
            and source is not None
            and source.target.lower() == "production"
            and vercel is not None
            and vercel.token is not None
        )

    async def _look_up_previous(self, window: DeployWindow) -> bool:
        """Ask Vercel which production deployment came before the window's, and keep it
        as `vercel.previous`: the deploy object and page show what a rollback goes back
        to, and the rollback reads it. Not found: the rollback asks again itself. A stop
        leaves it at once (False: no outcome, nothing asked since), where it waited out
        its backoff and asked Vercel again inside the stop's grace."""
        vercel = self.settings.integrations.vercel
        env = self.settings.environments[window.environment]
        assert vercel is not None and env.sources.vercel is not None
        own = window.labels["vercel.deployment"]
        try:
            found, why = await look_up_previous(
                self._client(),
                vercel,
                env.sources.vercel.project,
                own,
                self.redact,
                leaving=self._leaving,
            )
        except LookUpDeferred as exc:  # not known now: the rollback asks again itself
            found, why = None, exc.why + FALLBACK
        context = {"deploy_id": window.id, "environment": window.environment}
        if found is None and why == LEFT:
            log.info("vercel.previous of %s not asked: stopping", own, extra=context)
            return False
        if found is None:
            log.warning("no vercel.previous for %s: %s", own, why, extra=context)
            await self.s.store.record_alert(window.id, PREVIOUS_KEY, "failed", why)
            return True
        await self.s.store.add_labels(window.id, {"vercel.previous": found})
        await self.s.store.record_alert(window.id, PREVIOUS_KEY, "sent", found)
        log.info(
            "vercel.previous of %s is %s, the production deployment Vercel lists before it",
            own,
            found,
            extra=context,
        )
        return True

    # Vercel Rolling Releases ---------------------------------------------------

    def _rolls_out(self, window: DeployWindow) -> bool:
        """Whether a pass of this window approves a Rolling Release stage."""
        env = self.settings.environments.get(window.environment)
        source = env.sources.vercel if env is not None else None
        vercel = self.settings.integrations.vercel
        return (
            "vercel.deployment" in window.labels
            and source is not None
            and source.rolling_release
            and vercel is not None
            and bool(vercel.token)
        )

    def _rolling_release(self, window: DeployWindow) -> None:
        if not self._rolls_out(window):
            return
        self._once(
            window,
            APPROVAL_KEY,
            lambda: self._approve_stage(window),
            lease=self._approval_lease(),
        )

    def _owes_stage(self, window: DeployWindow) -> bool:
        """Whether a watched window of a Rolling Release's canary has not yet noted the
        stage it watches (`STAGE_LABEL`)."""
        return (
            window.state == "watching"
            and STAGE_LABEL not in window.labels
            and self._rolls_out(window)
        )

    def _rolling_headers(self) -> dict[str, str]:
        vercel = self.settings.integrations.vercel
        assert vercel is not None and vercel.token is not None
        return {
            "Authorization": f"Bearer {vercel.token.get_secret_value()}",
            "Content-Type": "application/json",
        }

    async def _rolling_release_now(self, window: DeployWindow) -> Release:
        """The project's Rolling Release as Vercel tells it now, read for the window's
        canary (`Release`)."""
        vercel = self.settings.integrations.vercel
        env = self.settings.environments[window.environment]
        assert vercel is not None and env.sources.vercel
        project = quote(env.sources.vercel.project, safe="")
        current = await call(
            self._client(),
            "GET",
            vercel_url(vercel.api_url, f"/v1/projects/{project}/rolling-release", vercel.team_id),
            headers=self._rolling_headers(),
            timeout_s=vercel.timeout,
            redact=self.redact,
            rate_limit=vercel_rate_limit_wait,
            leaving=self._leaving,  # a read: a stop in its waits leaves it (`CallResult.left`)
        )
        if not current.ok:
            return Release(why=current.error or "failed", failed=current)
        data = current.data
        release = data.get("rollingRelease") if isinstance(data, dict) else None
        if data is not None and not isinstance(data, dict):
            shape = f"the answer is {type(data).__name__}"
        elif release is None:
            return Release(why="no rolling release")
        elif not isinstance(release, dict):
            shape = f"its rollingRelease is {type(release).__name__}"
        elif not isinstance(release.get("canaryDeployment") or {}, dict):
            shape = f"its canaryDeployment is {type(release['canaryDeployment']).__name__}"
        else:
            shape = ""
        if shape or not isinstance(release, dict):  # raised out of the approval, unrecorded
            why = f"HTTP {current.status}: a rolling release not of Vercel's shape ({shape})"
            return Release(why=why, failed=CallResult(False, current.status, why))
        state = str(release.get("state") or "?")
        canary = window.labels.get("vercel.deployment")
        canary_id = (release.get("canaryDeployment") or {}).get("id")
        if canary_id != canary:
            why = f"the rolling release is for {canary_id}, not {canary}"
            return Release(why=why, state=state)
        if state != "ACTIVE":
            return Release(why=f"the rolling release is {state}", state=state, ours=True)
        active = release.get("activeStage") or {}
        index = active.get("index") if isinstance(active, dict) else None
        if not isinstance(index, int):
            index = release.get("activeStageIndex", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            why = f"the rolling release names no active stage ({index!r})"
            return Release(why=why, state=state, ours=True)
        updated = release.get("updatedAt")
        updated_at = (
            updated / 1000
            if isinstance(updated, int | float) and not isinstance(updated, bool)
            else None
        )
        return Release(
            index, finishes(release, index), state=state, ours=True, updated_at=updated_at
        )

    async def _note_stage(self, window: DeployWindow) -> bool:
        """Keep the stage the window watches on its labels, in the store: whichever
        replica ends the window (a takeover's too) approves that stage only. False when a
        stop let the read go: its claim handed back (`_once`), read again by the next
        start, where the claim was final and the stage never noted."""
        release = await self._rolling_release_now(window)
        if release.failed is not None and release.failed.left:
            # a stop before or while it read: nothing noted; the next start reads it (the
            # approval notes the stage itself, if Vercel shows it unchanged since the
            # window began)
            return False
        why = release.why if release.index is None else release.changed_since(window.deployed_at)
        if why:  # the approval notes the stage it approves, if it can tell it
            await self.s.store.record_alert(window.id, STAGE_KEY, "failed", why)
            return True
        await self.s.store.add_labels(window.id, {STAGE_LABEL: str(release.index)})
        await self.s.store.record_alert(window.id, STAGE_KEY, "sent", str(release.index))
        return True

    async def _approve_stage(self, window: DeployWindow) -> bool:
        """Approve (or complete) the stage the window watched; False when Vercel could not
        take it yet (`_record`): tried again, the stage read afresh first, so an approval
        that took effect though its answer was lost is not sent twice. The stage is on the
        window's labels in the store before the approval goes (when `_note_stage` could not
        note it), so a restart that takes the approval over finds the release moved on
        from it, if it did, and does not approve the next stage too; and what went out is
        marked (`SENT_KEY`), so the restart tells our own approval that took effect (done)
        from a release moved on without us (`_moved_on`). A stage not noted at the open is
        approved only if Vercel shows it active as the window began (`_unknown_stage`)."""
        vercel = self.settings.integrations.vercel
        env = self.settings.environments[window.environment]
        assert vercel is not None and vercel.token is not None and env.sources.vercel
        project = quote(env.sources.vercel.project, safe="")
        base = f"/v1/projects/{project}/rolling-release"
        canary = window.labels.get("vercel.deployment")
        release = await self._rolling_release_now(window)
        if release.failed is not None:
            what = "Rolling Release approval (reading the release)"
            return self._record(
                window, APPROVAL_KEY, release.failed, what, retry=True, call="approval"
            )
        fresh = await self.s.store.get_window(window.id) or window
        if release.index is not None and STAGE_LABEL not in fresh.labels:
            changed = release.changed_since(window.deployed_at)
            if changed is not None:
                await self._unknown_stage(window, release.index, changed)
                return True
            await self.s.store.add_labels(window.id, {STAGE_LABEL: str(release.index)})
            fresh = await self.s.store.get_window(window.id) or fresh
        watched = fresh.labels.get(STAGE_LABEL)
        if release.index is None or (watched is not None and watched != str(release.index)):
            await self._moved_on(window, release, watched)
            return True
        index = release.index
        if release.finishing:
            # the stage watched was the last before the full 100%: `complete` finishes
            # the release (approve-stage only advances it to a stage that exists)
            path, what, step = f"{base}/complete", "Rolling Release completion", "complete"
            body: dict[str, Any] = {"canaryDeploymentId": canary}
        else:
            path, what, step = f"{base}/approve-stage", "Rolling Release approval", str(index + 1)
            body = {
                "activeStageIndex": index,
                "nextStageIndex": index + 1,
                "canaryDeploymentId": canary,
            }
        # marked before it goes: a stop or a kill from here on leaves "sending", which the
        # next try reads as an approval that may have taken effect
        await self.s.store.claim_alert(window.id, SENT_KEY, self.clock())
        await self.s.store.record_alert(window.id, SENT_KEY, "sending", f"{index} -> {step}")
        self._sent.add(window.id)
        result = await call(
            self._client(),
            "POST",
            vercel_url(vercel.api_url, path, vercel.team_id),
            headers=self._rolling_headers(),
            body=json.dumps(body).encode(),
            timeout_s=vercel.timeout,
            redact=self.redact,
            rate_limit=vercel_rate_limit_wait,
            leaving=self._leaving,  # answered or not yet sent: `SENT_KEY` below holds
        )
        if result.ok:
            # held until stored: raised, the approval's own outcome went unrecorded (its
            # claim open, nothing counted) until a restart read the release afresh
            await self._held_write(
                window,
                lambda: self.s.store.record_alert(
                    window.id, SENT_KEY, "taken", f"{index} -> {step}"
                ),
                f"{what} taken ({index} -> {step})",
            )
        elif not result.unanswered:
            # Vercel answered every attempt, and took none: nothing of ours took effect
            await self.s.store.record_alert(window.id, SENT_KEY, "refused", f"{index} -> {step}")
        elif not result.gave_up:
            # refused after an attempt whose answer was lost (refused, maybe, as already
            # done): the release read afresh tells whether that attempt took effect
            after = await self._rolling_release_now(window)
            if after.failed is not None and after.failed.left:  # a stop: `SENT_KEY` holds
                return self._record(window, APPROVAL_KEY, after.failed, what, call="approval")
            taken = self._taken_to(after, str(index)) if after.failed is None else None
            if taken is not None:
                await self._approved(window, str(index), taken)
                return True
        return self._record(window, APPROVAL_KEY, result, what, retry=True, call="approval")

    @staticmethod
    def _taken_to(release: Release, watched: str) -> str | None:
        """Where our approval of stage `watched` took the release, if it is there: the next
        stage's index (approve-stage), or `complete` (`complete`, or an approve-stage into
        the final stage, which completes it); None if it is elsewhere."""
        if not release.ours:
            return None
        if release.state == "COMPLETE":
            return "complete"
        if release.index is not None and watched.isdigit() and release.index == int(watched) + 1:
            return str(release.index)
        return None

    async def _moved_on(self, window: DeployWindow, release: Release, watched: str | None) -> None:
        """The release is not at the stage the window watched: our approval sent earlier
        took it on (done, `approved`), or it moved on without us (by hand, on its own, an
        abort, another canary's): nothing approved, said as such (`skipped`), where every
        such case was recorded failed and sent on-call to approve by hand."""
        events = await self.s.store.alert_events(window.id)
        taken = self._taken_to(release, watched) if watched is not None else None
        # `taken`: Vercel's answer came, and a stop cut the approval's own record after it
        ours = events.get(SENT_KEY) in ("sending", "taken")
        if ours and watched is not None and taken is not None:
            await self._approved(window, watched, taken)
            return
        if release.index is not None:
            why = (
                f"the rolling release moved on from stage {watched} to stage {release.index}"
                " without Postflight (approved by someone else, or on its own) while the"
                f" window watched stage {watched}: not approved by Postflight; stage"
                f" {release.index} is not one a window of Postflight watched"
            )
        else:
            why = f"{release.why}: no stage to approve"
        log.warning(
            "Rolling Release stage not approved: %s",
            why,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        await self.s.store.record_alert(window.id, APPROVAL_KEY, "skipped", why)

    async def _unknown_stage(self, window: DeployWindow, index: int, changed: str) -> None:
        """The stage active as the window began was not noted (`_note_stage` could not
        read it, or could not tell it), and the release changed since: stage `index` may
        be one a person approved while the window watched, which its verdict is not about.
        Nothing approved (`skipped`), where the pass approved stage `index` (or completed
        the release) on a verdict about the stage before it. The release waits at stage
        `index` for a person, who is told (`_declined`): it may be the stage judged."""
        why = (
            f"the stage active as the window began was not noted, and {changed}: it may"
            " have moved on while the window watched (approved by someone else, or on its"
            f" own), and the verdict is not known to be about stage {index}: not approved"
            " by Postflight"
        )
        log.warning(
            "Rolling Release stage not approved: %s",
            why,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        await self._declined(window, f"Rolling Release stage {index} of {window.id}: {why}", why)

    async def _declined(self, window: DeployWindow, reason: str, why: str) -> None:
        """Record the approval `skipped` (`why`) for a release left waiting at a stage
        Postflight declined to approve, and tell the environment's channels, once a
        window (`integration_failed:<APPROVAL_KEY>`, as a given-up approval's): where
        nobody was told, and it waited for a person who did not know. The alert is
        claimed first, in the write that stores the outcome (as a failed follow-up's,
        `_record_follow_up`): a crash after both sends it by the alerts' recovery, one
        before the outcome leaves the approval to a takeover, which finds the alert
        claimed and does not send it twice."""
        env = self.settings.environments.get(window.environment)
        key = f"integration_failed:{APPROVAL_KEY}"
        at = self.clock()
        claimed = False
        alert = Alert.for_window(
            window, "integration_failed", reason=reason, call="approval_declined"
        )
        if env is not None:
            page = alert_claim(alert, env.alerts.tags, key)
            claimed = await self.s.store.claim_alert(window.id, key, at, payload=page.payload)
        await self.s.store.record_alert(window.id, APPROVAL_KEY, "skipped", why)
        if claimed and env is not None:
            self.s.spawn(
                self.s.alerts.send_claimed(window, alert, env.alerts.tags, claimed_at=at, key=key)
            )

    async def _approved(self, window: DeployWindow, watched: str, step: str) -> None:
        """Our approval took effect though its answer was lost: done, counted once."""
        when = "earlier" if window.id in self._sent else "before the restart"
        what = "completion" if step == "complete" else "approval"
        detail = (
            f"stage {watched} -> {step}: the {what} Postflight sent {when} took effect"
            " (its answer was lost)"
        )
        log.info(
            "Rolling Release %s",
            detail,
            extra={"deploy_id": window.id, "environment": window.environment},
        )
        self._count(APPROVAL_KEY, "sent")
        await self.s.store.record_alert(window.id, SENT_KEY, "taken", f"{watched} -> {step}")
        await self.s.store.record_alert(window.id, APPROVAL_KEY, "approved", detail)

    # GitHub deployment protection rules ------------------------------------------

    async def add_gate(self, gate: Gate, delivery: IdempotentResponse | None = None) -> GateAsk:
        """Store the gate (before the hook is acknowledged), so a restart answers it; with
        `delivery`, one answered already is asked again (`Store.add_gate`): `ADDED`;
        `JOINED`, the gate pending already; `ASKED`, a redelivery."""
        env = self.settings.environments[gate.environment]
        assert env.gate is not None
        now = self.clock()
        added = await self.s.store.add_gate(
            PendingGate(
                callback_url=gate.callback_url,
                environment=gate.environment,
                sha=gate.sha,
                github_environment=gate.github_environment,
                deadline=now + env.gate.timeout,
                created_at=now,
            ),
            delivery,
        )
        self.wake()
        return added

    async def _gate(self, gate: PendingGate) -> None:
        env = self.settings.environments.get(gate.environment)
        github = self.settings.integrations.github
        if env is None or env.gate is None or github is None:
            return  # configured away since: left pending, answered if it comes back
        after = env.gate.after
        # by index: the 50 newest missed one that passed before more were registered
        window = await self.s.store.newest_window_of(after, gate.sha)
        now = self.clock()
        if window is None or window.state == "watching":
            if now < gate.deadline:
                return
            answer = "rejected"
            comment = f"Postflight: no {after} window of {gate.sha[:12]} ended in time"
            link = self.deploys_url() if window is None else self.deploy_url(window.id)
            comment += f" — {link}" if link else ""
        elif window.state in GATE_ANSWERS:
            answer = GATE_ANSWERS[window.state]
            comment = f"Postflight: {after} window {window.state} — {self.deploy_url(window.id)}"
        else:
            answer = "rejected"
            comment = f"Postflight: {after} window {window.state}, not passed — "
            comment += self.deploy_url(window.id)
        if self._leaving.is_set():
            return  # a stop: left pending to the next start, unclaimed
        # one answerer across replicas; a claimer killed mid-answer is replaced later
        until = now + GATE_CLAIM_S
        # read before the claim writes over it: an earlier claimer's answer may be taken
        again = await self.s.store.gate_claimed_before(gate.callback_url, gate.github_environment)
        # and the refusal an earlier claimer kept before it read the run (`refuse_gate`)
        refused = (
            await self.s.store.gate_refused(gate.callback_url, gate.github_environment)
            if again
            else None
        )
        # or at once one its own killed process left mid-answer (`orphaned`), where the
        # restart waited out `GATE_CLAIM_S`; a rate limit's wait stays kept (`_gate_wait`)
        if not await self.s.store.claim_gate(
            gate.callback_url, gate.github_environment, now, until, orphaned=True
        ):
            return
        if not gate.callback_url.startswith(github.api_url.rstrip("/") + "/"):
            why = (
                f"its callback URL {gate.callback_url} is not under"
                " integrations.github.api_url: not sent"
            )
            await self._gate_given_up(gate, window, answer, why)
            await self.s.store.answer_gate(
                gate.callback_url, gate.github_environment, answer, "not sent", now
            )
            return
        body = {"environment_name": gate.github_environment, "state": answer, "comment": comment}
        asked = f"protection rule for {gate.github_environment} {gate.sha[:12]}"

        # a wait GitHub asks for inside the call is kept in the claim, where a kill -9 in
        # it left the restart answering at once, inside it
        wait = GateClaimWait(
            self.s.store,
            gate.callback_url,
            gate.github_environment,
            until,
            GATE_CLAIM_S,
            self.clock,
        )

        async def hand_back() -> None:
            # given back, where the next start (or the other replica) waited for it to
            # lapse (`GATE_CLAIM_S`, 300 s) and the job behind the rule waited as long;
            # not in a kept wait: the next start answers it after the wait
            if not wait.waiting:
                release = self.s.store.release_gate
                await handed_back(
                    lambda: release(gate.callback_url, gate.github_environment, wait.until),
                    self.s.stop,
                )

        if refused is not None:
            # GitHub refused the earlier claimer's answer (422) and it died reading the
            # run: not answered again, where the second 422 read as its answer taken
            # ("answered before") and the page was lost; the run is read here
            result = CallResult(False, 422, refused, None, 0)
            again = False
        else:
            named_for_a_stop(f"the answer to the {asked} (handed back: answered at the next start)")
            try:
                with keeping(wait):
                    result = await self._github_post(gate.callback_url, body)
            except asyncio.CancelledError:
                await hand_back()  # a stop cut it, its request out
                raise
        if result.store_away:  # its claim lapsed with the asked wait: the next scan claims it
            log.info(
                "%s: not claimed back after waiting what GitHub asked: %s; answered by a later"
                " scan",
                asked,
                result.not_back,
            )
            return
        if result.lost:  # another claimer took it over in an asked wait: it answers it
            log.info("%s: taken over by another claimer while waiting what GitHub asked", asked)
            return
        if result.left:  # a stop, with nothing of it out: handed back at once
            await hand_back()
            log.info(
                "%s: stopping before its next attempt (%d attempt(s) made): left pending to"
                " the next start, which answers it; nothing of it was in flight",
                asked,
                result.attempts,
            )
            return
        if result.gave_up and self.clock() < gate.deadline + STATUS_RETRY_FOR_S:
            # GitHub down or rate limited: left pending, so answered again once this claim
            # lapses (`GATE_CLAIM_S`), where marked answered it was never sent and the
            # production job waited on its protection rule for GitHub's 30 days
            again_in = await self._gate_wait(gate, wait.until, result.retry_after)
            log.warning(
                "protection rule for %s %s not answered yet: %s (tried again in %s)",
                gate.github_environment,
                gate.sha[:12],
                result.error,
                format_duration(again_in),
            )
            return
        outcome = f"HTTP {result.status}" if result.ok else (result.error or "failed")
        cancelled, found = False, ""
        # an attempt of this call that got no answer may have been taken, as an earlier
        # claimer's answer may: a 422 after either is that answer taken
        taken_before = again or result.unanswered > 0
        if not result.ok and not taken_before and result.status == 422:
            # a 422 is also nothing left waiting: the run, read, tells a cancelled one;
            # the refusal kept first, so a kill in the read leaves it to page on
            if refused is None:
                await self._keep_refusal(gate, wait.until, outcome)
            assert github.token is not None
            cancelled, found = await run_was_cancelled(
                self._client(),
                gate.callback_url,
                github.token.get_secret_value(),
                timeout_s=github.timeout,
                redact=self.redact,
                leaving=self._leaving,
            )
        if result.ok:
            self._count("github:gate", "sent")
        elif cancelled:
            # no page: nothing is left to protect, and nobody to answer by hand
            outcome = f"{outcome} ({found})"
            log.info("%s: GitHub refused the answer, %s", asked, outcome)
        elif taken_before and result.status == 422:
            # nothing waits for an answer: the earlier claimer's was taken, and it died (a
            # kill -9) or was stopped before recording it, or this call's attempt whose
            # answer was lost was; paged NOT answered, on-call answered by hand a gate
            # GitHub had taken the answer to
            earlier = "an earlier claim's" if again else "an attempt's that got no answer"
            outcome = f"{outcome} (answered before: {earlier} answer was taken)"
            log.info("%s: GitHub refused the answer, %s", asked, outcome)
        else:
            # told before the gate is marked answered: a crash between the two tells
            # again (at least once), where the other way round it told no one
            why = outcome + (" (not taken through an hour of retries)" if result.gave_up else "")
            if result.status == 422:
                # paged all the same: a 422 is also a body GitHub refuses (the job waits on),
                # which the status alone does not tell from a run with nothing waiting
                why += (
                    " (a 422 also when nothing waits any more: the run cancelled, or answered"
                    " by hand; if its Review deployments shows no request, nothing is left)"
                )
                why += f" ({found})" if found else ""
            await self._gate_given_up(gate, window, answer, why)
        named_for_a_stop(
            f"the record of the answer to the {asked} (GitHub answered: held until the"
            " store takes it, not sent again)"
        )
        at = self.clock()

        async def write() -> None:
            await self.s.store.answer_gate(
                gate.callback_url, gate.github_environment, answer, outcome, at
            )

        def outage_begins(exc: Exception) -> None:
            log.warning(
                "%s %s (%s); %s (%s): recording it once the store takes it, not sending it again",
                asked,
                answer,
                outcome,
                not_taken(exc),
                self.redact(str(exc)),
            )

        # held until stored: raised, the gate stayed pending under its claim, and was
        # answered again once the claim lapsed (GitHub refuses a second answer: a page
        # saying NOT answered for a gate that was)
        _, waited = await held_until_stored(write, outage_begins, stop=self.s.stop)
        log.info(
            "%s: %s (%s)%s",
            asked,
            answer,
            "answered" if result.ok else result.error,
            ", its answer stored" if waited else "",
        )

    async def _keep_refusal(self, gate: PendingGate, until: float, refusal: str) -> None:
        """Keep GitHub's refusal of the gate's answer under its claim (`refuse_gate`)
        before its run is read: a store that does not take it leaves the gate as before
        (a kill in the read then loses the page); the read goes on either way."""
        try:
            await self.s.store.refuse_gate(
                gate.callback_url, gate.github_environment, until, refusal
            )
        except Exception as exc:
            log.warning(
                "protection rule %s: its refusal not kept before the run's read (%s)",
                gate.callback_url,
                self.redact(str(exc)),
            )

    async def _gate_wait(self, gate: PendingGate, until: float, asked: float | None) -> float:
        """Until the gate is answered again: its claim's end, moved on to the wait a rate
        limit asked for when that is longer (fenced by `until`: only while the claim is
        still ours), where every claimer, this process included, answered it again once
        the claim lapsed (`GATE_CLAIM_S`), inside the wait: GitHub may ban an integration
        that goes on calling while limited. A claim that ends past the wait already is
        kept to its end all the same, its run unsaid: a restart after a kill -9 took it at
        once as its dead run's (`orphaned`), and answered inside the wait."""
        now = self.clock()
        if asked is None:
            return max(0.0, until - now)
        to = max(until, now + asked)
        try:
            moved = await self.s.store.extend_gate(
                gate.callback_url, gate.github_environment, until, to
            )
        except Exception as exc:  # kept to its end: answered again after it, as before
            log.warning("protection rule %s: its claim not moved on (%s)", gate.callback_url, exc)
            moved = False
        return max(0.0, (to if moved else until) - now)

    async def _gate_given_up(
        self, gate: PendingGate, window: DeployWindow | None, answer: str, why: str
    ) -> None:
        """Count and tell the gate's environment that its answer will not be sent: the
        job behind the protection rule waits for a person. About the window it answers
        from (deduplicated with its alerts), else (none ended in time) about the sha."""
        self._count("github:gate", "failed")
        reason = (
            f"{gate.environment}'s protection rule for {gate.sha[:12]} (GitHub environment"
            f" {gate.github_environment!r}) was to be {answer}: {why}"
        )
        # paged below; the log said nothing, and an on-call reading it could not tell
        # the answer never arrived
        log.warning(
            "%s; given up, not answered (deploy %s)",
            reason,
            window.id if window is not None else "none: no window ended in time",
            extra={
                "deploy_id": window.id if window is not None else None,
                "environment": gate.environment,
            },
        )
        env = self.settings.environments.get(gate.environment)
        if env is None:
            return
        # one a request: the run's next job asks on the same callback URL again
        run = re.search(r"/runs/([^/]+)/", gate.callback_url)
        asked = f"{run.group(1) if run else gate.sha[:12]}:{gate.github_environment}"
        mark = f"gate:{asked}@{gate.created_at:.0f}"
        if window is not None:
            self._given_up(window, gate.environment, "gate", mark, reason)
            return
        alert = Alert(
            event="integration_failed",
            environment=gate.environment,
            version=gate.sha,
            deploy_id=f"none ({env.gate.after if env.gate else 'no'} window ended in time)",
            reason=reason,
            commit=gate.sha,
            call="gate",
        )
        self.s.spawn(self.s.alerts.notify(f"{gate.environment}:{mark}", alert, env.alerts.tags))

    # manual rollback ----------------------------------------------------------------

    async def request_rollback(self, window_id: str, reason: str, who: str) -> DeployWindow:
        """Store a manual rollback's intent and start its delivery (contract §7).

        KeyError: unknown deploy. Conflict: it has a rollback already, it was cancelled
        or superseded, or its environment has no rollback target.
        """
        async with self._locks.hold(window_id):
            window = await self.s.store.get_window(window_id)
            if window is None:
                raise KeyError(window_id)
            env = self.settings.environments.get(window.environment)
            if env is None or env.rollback is None:
                raise Conflict(f"environment {window.environment!r} has no rollback configured")
            existing = await self.s.store.get_rollback(window_id)
            if existing is not None:
                raise Conflict(has_a_rollback(window_id, window.environment, existing))
            if window.state not in MANUAL_STATES:
                raise Conflict(f"deploy {window_id} was {window.state}: nothing to roll back")
            now = self.clock()
            # the alert and the log name who asked; the webhook (the pipeline's `reason`,
            # a workflow's input) and the verdict carry the reason as given
            text = f"{MANUAL_ROLLBACK_PREFIX}{who}: {reason}"
            intent = rollback_intent(
                window, reason, [], now, dry_run=env.rollback.dry_run, target=env.rollback.target
            )
            if intent.state == "pending":
                # handed to this replica's sender with the intent, as a verdict's is
                # (`WindowWatch._fail`): stored unleased, the sweep for lapsed rollbacks
                # could take it first and logged each manual rollback "resuming rollback
                # delivery (attempt 1, from nobody)", a delivery not begun
                intent.lease_owner, intent.lease_epoch = self.s.owner, 1
                intent.lease_until = now + self.s.lease_s
            # claimed with the intent, in its transaction: a crash just after the commit
            # leaves the claim, and `WindowAlerts.recover` sends it. In a dry run nothing
            # is sent: its alert says so, where it said requested from the target
            event: AlertEvent = (
                "rollback_skipped" if intent.state == "skipped" else "rollback_requested"
            )
            alert = Alert.for_window(
                window, event, reason=text, rollback_target=env.rollback.target
            )
            claims = [alert_claim(alert, env.alerts.tags)]
            if intent.state == "pending":  # marked at the providers as a verdict's is
                claims += marker_claims(env, self.s.providers)
            stored = False
            if window.state == "watching":
                # a `failed` window's verdict failed (contract section 2): the person's,
                # with the rules as the last round judged them
                rules = (window.verdict or {}).get("rules") or []
                verdict = decided_verdict("fail", reason, now, rules)
                stored = await self.s.store.finish_window(
                    window_id, "failed", verdict, now, intent, alerts=claims
                )
                if stored:
                    self.events.window_ended(window_id)
            if not stored and not await self.s.store.add_rollback(intent, now, claims):
                raise Conflict(f"deploy {window_id} changed meanwhile; ask again")
        window = await self.s.store.get_window(window_id) or window
        log.warning("%s", text, extra={"deploy_id": window.id, "environment": window.environment})
        self.s.spawn(self.s.alerts.send_claimed(window, alert, env.alerts.tags, claimed_at=now))
        if intent.state == "pending":
            self.s.spawn(deliver_rollback(window, intent, env, self.s))
            for name in marking(env, self.s.providers):
                self.s.spawn(mark_rollback(window, env, self.s, name, lapsed_before=now + 1.0))
        return window

    # after a rollback ------------------------------------------------------------------

    async def after_rollback(self, window: DeployWindow, intent: RollbackIntent) -> None:
        """The rollback was delivered: a window that had passed (or was inconclusive)
        is now `rolled_back` too, and the `rollback.then` follow-ups go out once each."""
        for state in ("passed", "inconclusive"):
            await self.s.store.set_state(window.id, "rolled_back", state)
        self._owing.add(window.id)  # its statuses change with its state
        env = self.settings.environments.get(window.environment)
        if env is not None and env.rollback is not None:
            for follow in env.rollback.then:
                await self._follow_up(window, env, intent, follow.name)
        await self._followed_up(window, env)

    async def _followed_up(self, window: DeployWindow, env: EnvironmentSettings | None) -> None:
        """Give the rollback's `FOLLOW_UPS` mark its outcome once every follow-up has one
        (one held by another sender is waited for, `_follow_up_later`)."""
        names = [f.name for f in env.rollback.then] if env and env.rollback else []
        events = await self.s.store.alert_events(window.id)
        if all(events.get(f"then:{name}") in DONE_RESULTS for name in names):
            await self.s.store.record_alert(window.id, FOLLOW_UPS, "done", f"{len(names)} done")

    async def _follow_up(
        self, window: DeployWindow, env: EnvironmentSettings, intent: RollbackIntent, name: str
    ) -> None:
        assert env.rollback is not None
        follow = next(f for f in env.rollback.then if f.name == name)
        key = f"then:{name}"
        mark = (window.id, key)
        if mark in self._busy:
            return
        events = await self.s.store.alert_events(window.id)
        if events.get(key) in DONE_RESULTS:
            return
        lease = follow_up_lease(env.rollback)
        now = self.clock()
        # one its own killed process left mid-call is taken at once (`orphaned`), where
        # the restart waited out its lease (565 s on the defaults)
        taken = await self.s.store.take_alert(
            window.id, key, now, lapsed_before=now - lease, orphaned=True
        )
        if taken is None:
            # another sender holds it (another replica's resume, or the rollback's sender);
            # if that one dies mid-call, its claim lapses and we take it over then
            self._follow_up_later(window, env, intent, name, lease)
            return
        self._busy.add(mark)
        try:
            rollback_body = json.loads(intent.body)
            body = json.dumps(
                {
                    "event": "rollback.then",
                    "name": name,
                    "deploy": rollback_body.get("deploy"),
                    "reason": rollback_body.get("reason"),
                    "rollback": {
                        "target": env.rollback.target,
                        "delivered_at": rfc3339(intent.finished_at or self.clock(), millis=False),
                    },
                },
                separators=(",", ":"),
            ).encode()
            secret = follow.secret or env.rollback.secret
            assert secret is not None
            made = 0  # by this sender; those not counted (`count`) go with `hand_back`

            def signed() -> dict[str, str]:  # called once per attempt, as it goes out
                nonlocal made
                made += 1
                timestamp = int(self.clock())
                return {
                    "X-Postflight-Timestamp": str(timestamp),
                    "X-Postflight-Signature": sign(secret.get_secret_value(), timestamp, body),
                }

            named_for_a_stop(
                f"follow-up {name!r} of rollback {window.id} (the rollback is stored as"
                " delivered: not sent again; the follow-up is handed back, sent at the"
                " next start)"
            )
            # a wait the receiver asks for inside the call is kept in the claim, where a
            # kill -9 in it left the restart sending at once, inside it
            wait = AlertClaimWait(self.s.store, window.id, key, now, lease, self.clock)

            counted = 0  # of `made`, in the store already (`count`)

            async def count() -> None:
                # each attempt counted in the claim as it goes out: a kill -9 lost those
                # made, and the restart's budget began again (`max_attempts` more)
                nonlocal counted
                try:
                    if await self.s.store.count_alert_attempts(window.id, key, wait.stamp, 1):
                        counted += 1
                except Exception as exc:  # counted with the hand-back, if there is one
                    log.warning(
                        "follow-up %r of %s: attempt not counted (%s)", name, window.id, exc
                    )

            async def hand_back() -> None:
                # in a kept wait, kept: the next start sends it once the wait is over
                store = self.s.store
                write = store.count_alert_attempts if wait.waiting else store.release_alert
                await handed_back(
                    lambda: write(window.id, key, wait.stamp, made - counted), self.s.stop
                )

            try:
                # the attempts are the follow-up's, not the sender's: those made before a
                # hand-back count (told by the take, no read between), where each agent
                # started again at 1 with a fresh budget and backoff
                before = taken.attempts
                with keeping(wait):
                    result = await call(
                        self._client(),
                        "POST",
                        follow.url,
                        headers={
                            "Content-Type": "application/json",
                            "Idempotency-Key": f"{window.id}:{name}",
                            "X-Postflight-Event": "rollback.then",
                        },
                        body=body,
                        headers_per_attempt=signed,
                        before_attempt=count,
                        timeout_s=env.rollback.timeout,
                        # one at least: a last attempt cut in flight has no known answer (as a
                        # rollback's, it is sent once more, with the same Idempotency-Key)
                        attempts=max(1, env.rollback.max_attempts - before),
                        backoff=env.rollback.backoff,
                        max_backoff=env.rollback.max_backoff,
                        made_before=before,
                        # a receiver's refusal that quotes the path it was sent (its
                        # token, as a hook's) is said, paged and stored without it
                        redact=lambda text: address_redactor(follow.url)(self.redact(text)),
                        leaving=self._leaving,
                    )
            except asyncio.CancelledError:
                # a stop cut it (its request out, or a retry's wait): its claim is given
                # back (kept, in a wait the receiver asked for: `hand_back`), where the
                # next agent waited for it to lapse (`follow_up_lease`, 565 s with the
                # defaults); sent again with its Idempotency-Key
                await hand_back()
                raise
            if result.lost:  # another sender took it over in an asked wait: it sends it
                self._follow_up_later(window, env, intent, name, lease)
                return
            if result.left:  # a stop, with nothing of it out: handed back at once
                await hand_back()
                log.info(
                    "follow-up %r of rollback %s: stopping before its next attempt (%d attempt(s)"
                    " made): left pending to the next start, which sends it; nothing of it"
                    " was in flight",
                    name,
                    window.id,
                    before + made,
                    extra={"deploy_id": window.id, "environment": window.environment},
                )
                return
            named_for_a_stop(
                f"the record of follow-up {name!r} of rollback {window.id} (answered: held"
                " until the store takes it, not sent again)"
            )
            attempts = before + result.attempts
            detail = f"HTTP {result.status} after {attempts} attempt(s)"
            alert: Alert | None = None
            if not result.ok:
                detail = f"{result.error} after {attempts} attempt(s)"
                # the outcome is paged and shown failed; the log said nothing, and an
                # on-call reading it could not tell the follow-up never arrived
                log.warning(
                    "follow-up %r of rollback %s (rollback.then to %s) given up: %s; the"
                    " rollback itself was delivered",
                    name,
                    window.id,
                    receiver_of(follow.url),
                    detail,
                    extra={"deploy_id": window.id, "environment": window.environment},
                )
                alert = Alert.for_window(
                    window,
                    "rollback_failed",
                    reason=f"follow-up {name!r} failed: {detail}",
                    rollback_target="then",
                )
            page = alert_claim(alert, env.alerts.tags, f"alert:{key}") if alert else None
            at = self.clock()
            claimed = await self._record_follow_up(
                window, key, "delivered" if result.ok else "failed", detail, page, at
            )
            if alert is not None and claimed:
                self.s.spawn(
                    self.s.alerts.send_claimed(
                        window, alert, env.alerts.tags, claimed_at=at, key=f"alert:{key}"
                    )
                )
        finally:
            self._busy.discard(mark)

    async def _record_follow_up(
        self,
        window: DeployWindow,
        key: str,
        result: str,
        detail: str,
        page: AlertClaim | None = None,
        at: float = 0.0,
    ) -> bool:
        """A follow-up's outcome, held until the store takes it (as the rollback's own,
        `RollbackDelivery._finish`): a 2xx left unstored when the store did not answer for
        a moment was sent again once the claim lapsed (`follow_up_lease`), by a restart
        or another replica, though the receiver had taken it (`held_until_stored`).

        `page` (a failed one's alert) is claimed at `at` before the outcome is stored, in
        the same held write: the alert was a task started beside it, which a stop could
        cut before its claim while the outcome was stored, and the page was lost for good
        (the follow-up done). Stored, the claim is sent by the caller, or by the next
        start (`WindowAlerts.recover`, once its claim lapses) if a stop cuts it now; cut
        before, neither is stored and the follow-up goes out again. True if this call
        claimed the page."""
        claimed = False

        async def write() -> None:
            nonlocal claimed
            if page is not None:
                claimed = (
                    await self.s.store.claim_alert(window.id, page.event, at, payload=page.payload)
                    or claimed
                )
            await self.s.store.record_alert(window.id, key, result, detail)

        def outage_begins(exc: Exception) -> None:
            log.warning(
                "follow-up %s of %s %s (%s); %s (%s):"
                " recording it once the store takes it, not sending it again",
                key.removeprefix("then:"),
                window.id,
                result,
                detail,
                not_taken(exc),
                self.redact(str(exc)),
                extra={"deploy_id": window.id, "environment": window.environment},
            )

        _, waited = await held_until_stored(write, outage_begins, stop=self.s.stop)
        if waited:
            log.info(
                "follow-up %s of %s: its outcome is stored",
                key.removeprefix("then:"),
                window.id,
                extra={"deploy_id": window.id, "environment": window.environment},
            )
        return claimed

    def _follow_up_later(
        self,
        window: DeployWindow,
        env: EnvironmentSettings,
        intent: RollbackIntent,
        name: str,
        lease: float,
    ) -> None:
        """Try the follow-up again (one try at a time) after `FOLLOW_UP_LOOK_S`: its claim
        may lapse any time within `lease` (a wait its receiver asked for, kept in it)."""
        mark = (window.id, f"then:{name}")
        if mark in self._following:
            return
        self._following.add(mark)

        async def later() -> None:
            try:
                await asyncio.sleep(min(lease, FOLLOW_UP_LOOK_S))
            finally:
                self._following.discard(mark)
            await self._follow_up(window, env, intent, name)
            await self._followed_up(window, env)

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _resume_after_rollbacks(self) -> None:
        """A restart between a delivered rollback and its follow-ups finishes them: the
        rollbacks whose `FOLLOW_UPS` mark has no outcome, however old (it read the 50
        newest windows, and missed one with more registered since)."""
        owed = await self.s.store.claims_without_outcome(FOLLOW_UPS, limit=None)
        for window in await self.s.store.get_windows(owed):
            intent = await self.s.store.get_rollback(window.id)
            if intent is not None and intent.state == "delivered":
                self.s.spawn(self._after_rollback_owed(window, intent))

    async def _after_rollback_owed(self, window: DeployWindow, intent: RollbackIntent) -> None:
        """`after_rollback` for follow-ups found owed; the store failing in it leaves them
        owed again for the next turn (`follow_ups_owed`), where its task ended on it and
        they waited for the next start."""
        try:
            await self.after_rollback(window, intent)
        except Exception as exc:
            if not store_outage(exc):
                raise
            self._follow_ups_outage.failed(exc, {"deploy_id": window.id})
            self.follow_ups_owed()
            return
        self._follow_ups_outage.answered()

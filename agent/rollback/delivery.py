"""The rollback webhook's crash-safe delivery (contract §3); the body and signature are
`agent.rollback.contract`.

What it must not do: send a rollback that is not in the store, send one while
another sender holds it, or lose track of an attempt. The intent is stored before
any attempt, leased to one sender (owner, epoch, expiry) like a window; each
attempt's number is allocated and stored *before* it goes out and its outcome
after, and every step is refused once the lease is another's. A sender killed at
any instant leaves a pending intent whose lease lapses, and any replica's sweep
(`Store.take_rollback`) resumes it where it stopped, counting the attempts
already made (after `takeover_wait_s` if the last one's outcome is unknown).
Receivers dedupe by `Idempotency-Key` (the deploy id); every attempt carries the same
body bytes, with a fresh timestamp and signature.

Deciding *whether* to roll back (and `dry_run`) belongs to the caller; a rollback
still owed when a newer deploy of its environment takes effect is given up, since
rolling back then would undo that deploy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random as _random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp.http_parser import RawResponseMessage
from yarl import URL

from agent import __version__
from agent.integrations.targets import (
    LeftAsking,
    Look,
    LookUpDeferred,
    PreparedRequest,
    RollbackTargets,
    github_rate_limit_wait,
    vercel_rate_limit_wait,
)
from agent.metrics import Metrics
from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    RollbackIntent,
    replaced_words,
    sent_before,
)
from agent.rollback.contract import sign
from agent.settings import RollbackSettings
from agent.stopping import StopBudget
from agent.store.base import IN_FLIGHT, AlertClaim, Store, StoreError
from agent.store.outages import (
    HELD_RETRY_S,
    handed_back,
    held_until_stored,
    held_waits,
    not_taken,
    store_outage,
)
from alerting.events import sent_words
from common.answers import error_said, read_answer
from common.durations import format_duration
from common.redaction import Redactor, address_redactor
from common.retry_after import (
    NOT_AN_HTTP_STATUS,
    is_http_status,
    retry_after_seconds,
    worth_retrying,
)
from common.sleeps import sleep_unless
from common.times import rfc3339
from common.tracebacks import without_tracebacks
from common.woken import LATE_S, WOKEN_LOOK_S

log = logging.getLogger("postflight.rollback")

USER_AGENT = f"postflight/{__version__}"
"""Plus every 5xx. Any other non-2xx answer is final: retrying will not change it."""
_ERROR_SNIPPET = 200
_API_ERROR_BYTES = 64 * 1024
"""The most of Vercel's or GitHub's error answer read, for the message in it."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]
T = TypeVar("T")
SettleClaims = Callable[[RollbackIntent], Sequence[AlertClaim]]
"""The alerts a rollback's outcome calls for, claimed in the transaction that stores it
(`Store.settle_rollback`): a crash just after that commit cannot lose them."""
AttemptResult = Literal["delivered", "retryable", "rejected"]


async def answered_within(work: Awaitable[T], seconds: float) -> T:
    """`work`'s result, or `TimeoutError` after `seconds` (the loop's clock).

    A deadline found `LATE_S` late gives `work` `WOKEN_LOOK_S` more, once: a sender
    stopped while its attempt was out resumed with the timeout due and the receiver's 2xx
    read into its socket meanwhile, and the timeout, run first, took it for no answer:
    the rollback was sent again, and accepted twice (`tests/rollback/
    test_rollback_paused_answer.py`; `bench/ha_faults.py`'s pauses)."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    deadline = loop.time() + seconds
    looked = False
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            if done:
                return task.result()
            if looked or loop.time() - deadline < LATE_S:
                raise TimeoutError
            looked, deadline = True, loop.time() + WOKEN_LOOK_S
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # the request's connection let go before going on


TAKEOVER_GRACE_S = 3 * HELD_RETRY_S[-1]
"""How long a sender that takes over another's rollback, whose last attempt has no
recorded outcome, waits before sending it again. That sender may be alive, its 2xx held
(`RollbackDelivery._finish`) through a store outage longer than its lease: it records
it within `HELD_RETRY_S[-1]` of the store's return, and this wait lets it, where a
replica that took the lapsed lease at once sent a second rollback. A sender that died
costs its rollback this much more than the lease and `takeover_wait_s`'s timeout."""


def takeover_wait_s(settings: RollbackSettings) -> float:
    """How long a sender that takes over an attempt with no recorded outcome waits before
    sending again, on its own monotonic clock: the attempt's `timeout` (it went out before
    the take, so its answer comes within that), then `TAKEOVER_GRACE_S` for its sender to
    record it. The lapse of the attempt's lease is read on the taker's wall clock: one
    ahead of the sender's by less than the lease (what the README asks) took it over with
    the request still out to a slow receiver, and sent it again after the grace alone,
    both answered 2xx (`tests/e2e/test_chaos.py`'s clock ahead). A sender that died costs
    its rollback this much more than the attempt's lease (`bench/ha_chaos.py`'s
    sender_killed case: picked up within one lease + the timeout + 10 s)."""
    return settings.timeout + TAKEOVER_GRACE_S


NEWER_LOOK_S = 1.0
"""How often a rollback waiting to retry looks for a newer deploy of its environment
(`RollbackDelivery._newer_comes`), which gives it up at once."""


RETRY_AFTER_MAX_S = 600.0
"""The longest `Retry-After` waited out as asked. A receiver that asks for more (an hour
of rate limit) is asked again after ten minutes: a rollback must not sit out the hour.
`max_backoff` caps only our own exponential guess, so a `Retry-After` is never cut
short by it (contract section 3: honouring `Retry-After`)."""


FOUND_DONE = {
    "github": "GitHub lists a run of the rollback workflow for this deploy",
    "vercel": "Vercel's production is already the deployment rolled back to",
}
FOUND_NOT_DONE = {
    "github": "GitHub lists no run of the rollback workflow for this deploy",
    "vercel": "Vercel's production is not the deployment rolled back to",
}
FOUND_UNKNOWN = {
    "github": "GitHub could not say whether it took the dispatch",
    "vercel": "Vercel could not say whether it took the rollback",
}
"""What the already-done check (`RollbackTargets.already_done`) found after a last attempt
that got no answer, by `rollback.target`: said in the log, and in a failed rollback's
`last_error` (a webhook's receiver dedupes: nothing is asked)."""


@dataclass(frozen=True, slots=True)
class _Looked:
    """What `RollbackDelivery._looked_for` found, after how many looks over how long."""

    look: Look
    looks: int
    waited: float


FINAL_LOOKS = 4
"""How many more times the already-done check asks, after a first look at once, when the
last attempt got no answer: GitHub lists a dispatched run only seconds after it took the
dispatch (Vercel's production may switch as late), and one look at once reported
ROLLBACK FAILED for a rollback that ran. Nothing is sent again meanwhile."""


def final_look_waits(settings: RollbackSettings) -> list[float]:
    """The waits before each further look: the backoff schedule from its start
    (`backoff`, doubling, capped by `max_backoff`; no jitter), so with the defaults
    1 + 2 + 4 + 8 = 15 s in all."""
    return [min(settings.max_backoff, settings.backoff * 2.0**k) for k in range(FINAL_LOOKS)]


def backoff_delay(
    attempt: int,
    settings: RollbackSettings,
    *,
    retry_after: float | None = None,
    random: Callable[[], float] = _random.random,
) -> float:
    """The wait after failed attempt number `attempt` (1-based).

    Exponential with full jitter (uniform in [0, backoff·2^(attempt-1)]), capped by
    `max_backoff`, so that many agents retrying one receiver spread out; a
    `Retry-After` from the receiver wins over our guess, up to `RETRY_AFTER_MAX_S`.
    """
    cap = settings.max_backoff
    if retry_after is not None:
        return min(RETRY_AFTER_MAX_S, retry_after)
    ceiling = min(cap, settings.backoff * 2.0 ** min(attempt - 1, 60))
    return max(0.0, random() * ceiling)


def _claimed(claims: SettleClaims | None, final: RollbackIntent) -> Sequence[AlertClaim]:
    """The outcome's alerts; a bug in wording them must not keep the outcome unstored (a
    delivered rollback would be sent again): they are then left to the caller's send."""
    if claims is None:
        return ()
    try:
        return claims(final)
    except Exception:
        log.exception("rollback for %s: its alert could not be claimed", final.window_id)
        return ()


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: AttemptResult
    status: int | None
    error: str | None
    retry_after: float | None
    duration_s: float


class _LeftAtStop(BaseException):
    """A stop met the rollback in a wait (`RollbackDelivery.leave_waits`): handed back as
    stored. A BaseException, as a cancellation is, so the handlers of a failure mid-way
    (a bug, the store's outage) let it through to `deliver`."""

    def __init__(self, intent: RollbackIntent, store_away: bool = False, asking: str = "") -> None:
        super().__init__(intent.window_id)
        self.intent = intent
        self.store_away = store_away
        """Met waiting for the store (`_retake`): nothing could be handed back."""
        self.asking = asking
        """What it was asking the target when met, let go of (`LeftAsking`), if it was."""


class RollbackDelivery:
    """Delivers stored rollback intents to their webhooks, resuming after restarts.

    One per process; owns one `aiohttp.ClientSession` (created lazily inside the
    running loop, closed by `aclose`). `clock`, `sleep` and `random` are injectable
    so tests can drive backoff without waiting.
    """

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        user_agent: str = USER_AGENT,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        redact: Callable[[str], str] | None = None,
        owner: str = "local",
        lease_s: float = 30.0,
        targets: RollbackTargets | None = None,
        stop: StopBudget | None = None,
    ) -> None:
        self._targets = targets
        """Vercel and GitHub targets (§7); without it only the webhook is known."""
        self.stop = stop
        """The daemon's stop: a 2xx held for the store is waited for within it."""
        self._store = store
        self.owner = owner
        self.lease_s = lease_s
        self._metrics = metrics
        self._user_agent = user_agent
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._random = random
        self._redact = redact or Redactor()
        self._session: aiohttp.ClientSession | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._leaving = asyncio.Event()

    def leave_waits(self) -> None:
        """A stop: each rollback waiting to retry (a `Retry-After`, a backoff, a take-over's
        grace, a look before failing) or asking Vercel which deployment to roll back to
        (`RollbackTargets.look_up`, let go of) is handed back at once as stored, its wait
        with it, and none waits or sends again in this process: the next start or another replica
        takes it (`Store.take_rollback`, one sender) when its wait is over. An attempt
        out finishes within the stop's grace. The stop waited out its grace for a
        rollback between retries, sent the next attempt inside it when the wait was
        shorter, and logged that it cut off one that had nothing out."""
        self._leaving.set()

    async def aclose(self) -> None:
        """Close the HTTP session. In-flight `deliver` calls should be cancelled first."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self._user_agent},
                # Per-attempt timeouts are set on each request from the settings.
                timeout=aiohttp.ClientTimeout(total=None),
                # any 2xx is delivered, with whatever headers a gateway adds to it: a
                # 12 KB Content-Security-Policy line past aiohttp's 8190 bytes made a 204
                # no answer, sent again and paged ROLLBACK FAILED
                max_line_size=ANSWER_LINE_BYTES,
                max_field_size=ANSWER_LINE_BYTES,
            )
        return self._session

    async def deliver(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        claims: SettleClaims | None = None,
    ) -> RollbackIntent:
        """Deliver `intent` (already stored) until it is delivered or has failed.

        Returns the final intent: `delivered`, `failed`, or still `pending` if the
        store could not be written (nothing is sent without its attempt stored
        first). Never raises except `CancelledError`; a cancelled or killed
        delivery stays `pending` in the store and resumes on the next call.
        Concurrent calls for one deploy run one after the other, so the second
        finds the first's result in the store instead of sending again. `claims`:
        the alerts of the outcome, claimed with it.
        """
        key = intent.window_id
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            # A second caller waits, then finds the intent finished in the store.
            async with lock:
                try:
                    return await self._deliver(intent, settings, environment, claims)
                except _LeftAtStop as left:
                    return self._left(left.intent, environment, left.store_away, left.asking)
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    async def _deliver(
        self,
        given: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        claims: SettleClaims | None,
    ) -> RollbackIntent:
        context = {"deploy_id": given.window_id, "environment": environment}
        now = self._clock()
        held = given.fence if given.lease_owner else None
        try:
            taken = await self._store.take_rollback(
                given.window_id, self.owner, now, now + self.lease_s, held
            )
            stored = taken or await self._store.get_rollback(given.window_id)
        except Exception as exc:
            log.error(
                "rollback for %s not attempted: the store cannot be read (%s)",
                given.window_id,
                self._redact(str(exc)),
                extra=context,
            )
            return given
        if stored is None:
            log.error(
                "rollback for %s not sent: its intent is not in the store (store it with"
                " the verdict before delivering)",
                given.window_id,
                extra=context,
            )
            return given
        if taken is None:
            return stored  # ended, or another sender holds it: not ours to send
        try:
            unsettled = _unsettled_from_another(
                given, taken, self.owner
            ) or await self._grace_cut_short(taken)
            if unsettled:
                log.info(
                    "rollback for %s: attempt %d has no recorded outcome (taken over from %s);"
                    " waiting %s for it to be recorded before sending again",
                    taken.window_id,
                    taken.attempts,
                    given.lease_owner,
                    format_duration(takeover_wait_s(settings)),
                    extra=context,
                )
                if not await self._hold(taken, takeover_wait_s(settings)):
                    return await self._lost(taken, context)
        except Exception as exc:  # resumed once this lease lapses, its wait long over
            log.warning(
                "rollback for %s left pending: %s (%s)",
                taken.window_id,
                not_taken(exc),
                self._redact(str(exc)),
                extra=context,
            )
            return given
        if unsettled:
            taken.next_attempt_at = None  # waited out here, not again in `_attempts`
        intent: RollbackIntent | None = dataclasses.replace(taken)
        while intent is not None:
            try:
                return await self._attempts(intent, settings, environment, context, claims)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not store_outage(exc):  # a bug mid-way: stay pending, resumed later
                    log.error(
                        "rollback for %s interrupted after %d attempt(s), left pending: %s",
                        intent.window_id,
                        intent.attempts,
                        self._redact(str(exc)),
                        extra=context,
                    )
                    return intent
                log.warning(
                    "rollback for %s: %s after %d attempt(s) (%s);"
                    " going on once the store takes it",
                    intent.window_id,
                    not_taken(exc),
                    intent.attempts,
                    self._redact(str(exc)),
                    extra=context,
                )
                try:
                    intent = await self._retake(intent)
                    # a grace cut short by the outage (this sender's, if it took the
                    # rollback over) is waited again: the attempt's sender records on
                    # the store's return too
                    if intent is not None and await self._grace_cut_short(intent):
                        if not await self._hold(intent, takeover_wait_s(settings)):
                            return await self._lost(intent, context)
                        intent.next_attempt_at = None
                except Exception:
                    log.exception("rollback for %s left pending", given.window_id, extra=context)
                    return given
        return await self._lost(given, context)

    async def _grace_cut_short(self, taken: RollbackIntent) -> bool:
        """Whether a sender that took this rollback over stored its grace (`_hold`, a
        wait and no outcome) for an attempt that still has none, and let its lease lapse
        (it died in the grace, or the store went away again): the wait stored looks like
        a backoff's, and the next taker sent at once, while the attempt's sender, alive,
        held its 2xx through the store's outage and records it on its return."""
        if not taken.attempts or taken.next_attempt_at is None:
            return False
        attempts = await self._store.deliveries(taken.window_id)
        last = attempts[-1] if attempts else None
        return last is not None and last.status is None and last.error == IN_FLIGHT

    async def _last_recorded(self, intent: RollbackIntent) -> bool:
        """Whether the outcome of the rollback's last attempt is stored (not in flight)."""
        if not intent.attempts:
            return False
        attempts = await self._store.deliveries(intent.window_id)
        last = attempts[-1] if attempts else None
        return (
            last is not None
            and last.attempt == intent.attempts
            and not (last.status is None and last.error == IN_FLIGHT)
        )

    async def _retake(self, intent: RollbackIntent) -> RollbackIntent | None:
        """The rollback again, as stored, once the store answers: still this sender's
        (or lapsed, and nobody took it), else None. A delivery the store interrupted was
        left pending until its lease lapsed and a sweep resumed it: a PostgreSQL restart
        of a few seconds held a rollback in its retries back by a whole lease (30 s).
        A stop leaves at once (`_LeftAtStop`), where it waited out its grace for the
        store, then cut the rollback off."""
        waits = held_waits()
        while True:
            if await self._wait_unless_leaving(next(waits)):
                raise _LeftAtStop(intent, store_away=True)
            now = self._clock()
            try:
                return await self._store.take_rollback(
                    intent.window_id, self.owner, now, now + self.lease_s, intent.fence
                )
            except Exception as exc:
                if not store_outage(exc):
                    raise

    async def _attempts(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
    ) -> RollbackIntent:
        body = intent.body.encode()
        if self._targets is not None:
            ended = await self._look_up_previous(intent, settings, environment, context, claims)
            if ended is not None:
                return ended
        recorded = await self._last_recorded(intent)
        if intent.attempts and recorded and self._conflict_look_owed(intent, settings):
            # its last attempt met a 409 and a stop (or a kill) cut the look at whether the
            # rollback took effect: the restart looks, as the 409's own look does, where it
            # read the 409 as a 5xx's answer and sent the rollback again (another 409).
            # Asked first: on the last allowed attempt the 409 is an answer, not the lost
            # one the look before failing is for (asked 5 times, its error "asked ...")
            return await self._conflict_looked(intent, settings, environment, context, claims)
        if intent.attempts >= settings.max_attempts and recorded:
            # stopped while it looked whether its last attempt, unanswered, took effect:
            # it looks again, and sends nothing more
            return await self._look_before_failing(
                intent, settings, environment, context, claims, None
            )
        looked: _Looked | None = None
        if intent.attempts and not recorded:
            # its last attempt went out, or was about to, and no answer was recorded: GitHub
            # lists the run of a dispatch it took only seconds later, so one look at once
            # after a quick restart dispatched the workflow again
            looked = await self._looked_for(intent, settings, environment)
        elif intent.attempts and intent.last_status is None:  # its last attempt unanswered
            looked = await self._looked_for(intent, settings, environment, until_told=True)
        elif intent.attempts:  # answered (a 5xx): a look that cannot tell is "not done"
            answered = await self._took_effect(intent, settings, environment)
            looked = _Looked(Look(answered.done is True), 1, 0.0)
        if intent.attempts and looked is None:
            return await self._lost(intent, context)
        if looked is not None and looked.look.done is None:
            return await self._unknown(intent, settings, environment, context, claims, looked)
        if looked is not None and looked.look.done:
            log.info(
                "rollback for %s already took effect before the restart; not sent again",
                intent.window_id,
                extra=context,
            )
            return await self._finish(intent, "delivered", environment, context, claims=claims)
        # A resumed intent's last attempt went out (or was about to) and its answer was
        # never recorded: an answered failure is recorded as `failed` at once. So even
        # the last allowed attempt is sent once more, with the same key and body: a
        # receiver that accepted it says so again, and the rollback is not reported
        # failed while the pipeline did roll back. That resend's own answer lost too,
        # and not found done by a target that is asked (above): failed, unknown.
        if intent.attempts > settings.max_attempts:
            unknown = "the last attempt's outcome is unknown (agent restarted)"
            intent.last_error = self._not_found(unknown, settings)
            intent.last_status = None
            return await self._finish(intent, "failed", environment, context, claims=claims)
        # A resumed delivery keeps its schedule: wait out what is left of the backoff.
        if intent.next_attempt_at is not None:
            longest = max(settings.max_backoff, RETRY_AFTER_MAX_S)  # a clock that jumped
            wait = min(longest, intent.next_attempt_at - self._clock())
            # not waited for a newer deploy that already took effect (a rollback taken over
            # to be given up for it): given up below at once
            replaced = wait > 0 and await self._replaced_by(intent) is not None
            if wait > 0 and not replaced and not await self._hold(intent, wait, watching=True):
                return await self._lost(intent, context)
        while True:
            newer = await self._replaced_by(intent)
            if newer is not None:
                return await self._given_up_for(
                    newer, intent, settings, environment, context, claims
                )
            request = self._prepare(body, intent, settings, environment)
            if request.problem is not None:
                problem = request.problem
                return await self._unsendable(intent, problem, environment, context, claims)
            now, read_at = self._clock(), self._monotonic()
            # stored before it goes out, and only while the lease is still ours: a
            # sender that wakes from a pause finds it taken and stops here. The lease
            # outlasts the request's timeout, so a live sender is never replaced mid-way.
            until = now + max(self.lease_s, settings.timeout + 1.0)
            number = await self._store.begin_attempt(intent.window_id, intent.fence, now, until)
            if number is None:  # another's, or a newer deploy registered since the look
                newer = await self._replaced_by(intent)
                if newer is not None:
                    return await self._given_up_for(
                        newer, intent, settings, environment, context, claims
                    )
                return await self._lost(intent, context)
            intent.attempts, intent.next_attempt_at = number, None
            if not await self._lease_outlasts_the_request(intent, settings, now, until, read_at):
                return await self._lost(intent, context)
            outcome = await self._attempt(request, settings)
            intent.last_status = outcome.status
            intent.last_error = outcome.error
            self._metrics.rollback_attempts_total.labels(
                environment=environment, result=outcome.result
            ).inc()
            attempt = DeliveryAttempt(
                window_id=intent.window_id,
                attempt=number,
                at=now,
                status=outcome.status,
                error=outcome.error,
                duration_s=outcome.duration_s,
            )
            what = f"HTTP {outcome.status}" if outcome.status is not None else outcome.error
            if outcome.result == "delivered":
                # recorded first, said after: a crash between the receiver's 2xx and this
                # commit is the one instant a restart sends again (same key and body)
                intent.last_error = None
                final = await self._finish(
                    intent, "delivered", environment, context, attempt, claims
                )
                log.info(
                    "rollback for %s delivered on attempt %d (%s)",
                    intent.window_id,
                    intent.attempts,
                    what,
                    extra=context,
                )
                return final
            if outcome.result == "rejected" and outcome.status == 409:
                # a conflict with the target's state: the state rolled back to already
                # (an earlier attempt's answer lost, a rollback by hand), not a refusal.
                # Stored before the look, so that a kill in it leaves the look owed to
                # the restart (`_conflict_look_owed`), where it found the attempt's answer
                # unrecorded and, the look not finding it taken, sent the rollback again.
                # Stored under the lease as `begin_attempt` stored it (or taken again since)
                intent.lease_until = max(until, intent.lease_until or 0.0)
                if not await self._held_settle(intent, attempt, "answered 409", context):
                    return await self._lost(intent, context)
                return await self._conflict_looked(intent, settings, environment, context, claims)
            if outcome.result == "rejected":
                log.error(
                    "rollback for %s refused on attempt %d (%s); not retried",
                    intent.window_id,
                    intent.attempts,
                    what,
                    extra=context,
                )
                return await self._finish(intent, "failed", environment, context, attempt, claims)
            if intent.attempts >= settings.max_attempts:
                if outcome.status is None:
                    return await self._look_before_failing(
                        intent, settings, environment, context, claims, attempt
                    )
                log.error(
                    "rollback for %s failed: %d attempt(s), the last %s",
                    intent.window_id,
                    intent.attempts,
                    what,
                    extra=context,
                )
                return await self._finish(intent, "failed", environment, context, attempt, claims)
            delay = backoff_delay(
                intent.attempts, settings, retry_after=outcome.retry_after, random=self._random
            )
            log.warning(
                "rollback attempt %d for %s failed (%s); retrying in %s",
                intent.attempts,
                intent.window_id,
                what,
                format_duration(delay),
                extra=context,
            )
            if not await self._hold(intent, delay, attempt, watching=True):
                return await self._lost(intent, context)
            if outcome.status is None:  # it may have been taken: a look that cannot tell
                # is asked again, and never taken for "not done" (a second dispatch)
                looked = await self._looked_for(intent, settings, environment, until_told=True)
                if looked is None:
                    return await self._lost(intent, context)
                if looked.look.done is None:
                    return await self._unknown(
                        intent, settings, environment, context, claims, looked
                    )
            if outcome.status is None and looked is not None and looked.look.done:
                log.info(
                    "rollback for %s took effect though attempt %d got no answer; not sent again",
                    intent.window_id,
                    intent.attempts,
                    extra=context,
                )
                intent.last_error = None
                return await self._finish(intent, "delivered", environment, context, claims=claims)

    async def _look_up_previous(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
    ) -> RollbackIntent | None:
        """A Vercel deploy that names no previous deployment: Vercel is asked which one
        it replaced, before anything is looked for or sent. None once known (or nothing
        to ask); the rollback as it ended otherwise. Vercel unable to answer now (a rate
        limit whose reset is past the look-up's own wait, a 5xx: `LookUpDeferred`) is a
        failed try of the rollback: the wait is stored and held (`_hold`, as a backoff's:
        a restart waits what is left of it) and Vercel asked again, up to `max_attempts`
        asks, where the rollback failed at once, "nothing to roll back to", a bad deploy
        left live for a 429. The asks are counted in the store before each goes out
        (`RollbackIntent.look_ups`): a restart continues the count, where each process
        began at zero and a kill -9 between asks gave the rollback `max_attempts` more."""
        assert self._targets is not None
        while True:
            if await self._replaced_by(intent) is not None:
                # Vercel's answer no longer matters: given up by the caller at once (not
                # after a wait, not after an ask)
                return None
            if not intent.attempts and intent.next_attempt_at is not None:
                # a look-up's wait stored before a restart (or a stop): what is left of it
                # is waited before asking, not inside the rate limit's window; a newer
                # deploy is looked for in it, and again at the top after it
                wait = min(RETRY_AFTER_MAX_S, intent.next_attempt_at - self._clock())
                if wait > 0 and not await self._hold(intent, wait, watching=True):
                    return await self._lost(intent, context)
                intent.next_attempt_at = None
                if wait > 0:
                    continue
            if not self._targets.asks(intent, settings, environment):
                return None
            window = await self._store.get_window(intent.window_id)
            known = (window.labels if window is not None else {}).get("vercel.previous")
            if known:  # found by an earlier ask (a process killed before sending), or at
                # the window's open after the verdict: not asked again, not spent again
                self._targets.remember(intent.window_id, known)
                return None
            if intent.look_ups >= settings.max_attempts:  # the last ask's answer died with
                # the process that asked it
                problem = (
                    f"Vercel could not say which production deployment to roll back to"
                    f" (asked {intent.look_ups} times, the last answer lost to a restart)"
                )
                return await self._unsendable(intent, problem, environment, context, claims)
            now = self._clock()
            counted = await self._store.count_look_up(
                intent.window_id, intent.fence, now, now + self.lease_s
            )
            if counted is None:
                return await self._lost(intent, context)
            intent.look_ups, intent.lease_until = counted, now + self.lease_s
            try:
                previous = await self._targets.look_up(
                    self._client(), intent, settings, environment, self._redact, self._leaving
                )
            except LeftAsking:
                # a stop met it asking (the look-up let go of at once): nothing of it is
                # out, so it is handed back as stored, asked again by the next start or
                # another replica, where the stop waited for Vercel's answer and sent the
                # rollback inside its grace; the ask let go of is not spent (a rollback
                # allowed one would fail at the restart unasked)
                await self._not_spent(intent)
                await self._hand_back(intent)
                asking = "Vercel which deployment to roll back to"
                raise _LeftAtStop(intent, asking=asking) from None
            except LookUpDeferred as deferred:
                if intent.look_ups >= settings.max_attempts:
                    problem = (
                        f"Vercel could not say which production deployment to roll back to"
                        f" (asked {intent.look_ups} times, the last answer {deferred.why})"
                    )
                    return await self._unsendable(intent, problem, environment, context, claims)
                delay = backoff_delay(
                    intent.look_ups, settings, retry_after=deferred.retry_after, random=self._random
                )
                log.warning(
                    "rollback for %s: Vercel could not say which deployment to roll back to"
                    " (%s); asking again in %s",
                    intent.window_id,
                    self._redact(deferred.why),
                    format_duration(delay),
                    extra=context,
                )
                if not await self._hold(intent, delay, watching=True):
                    return await self._lost(intent, context)
                if not intent.attempts:
                    intent.next_attempt_at = None  # waited out here
                continue
            if previous is not None:  # on the window's labels too, as if its event named it
                try:
                    await self._store.add_labels(intent.window_id, {"vercel.previous": previous})
                except Exception as exc:  # the rollback goes on; only the label is missing
                    log.warning("vercel.previous of %s not stored: %s", intent.window_id, exc)
            return None

    def _conflict_look_owed(self, intent: RollbackIntent, settings: RollbackSettings) -> bool:
        """Whether the rollback's last attempt, recorded, met a 409 at a target that is
        asked whether it took effect: pending still, its look is owed (a 409 is otherwise
        ended at once: delivered or failed)."""
        asked = self._targets is not None and settings.target in FOUND_NOT_DONE
        return asked and intent.last_status == 409

    async def _conflict_looked(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
    ) -> RollbackIntent:
        """A 409's outcome, the attempt stored: a look at whether the rollback took effect
        (the target already in the state rolled back to), delivered if so; a look that
        cannot tell is asked again, and then said, not read as either; not there, failed
        as the target's refusal. Nothing is sent again."""
        conflict = await self._looked_for(intent, settings, environment, until_told=True)
        if conflict is None:
            return await self._lost(intent, context)
        if conflict.look.done is None:
            return await self._unknown(intent, settings, environment, context, claims, conflict)
        if conflict.look.done:
            log.info(
                "rollback for %s: the target answered HTTP 409, and %s; delivered",
                intent.window_id,
                FOUND_DONE.get(settings.target, "it took effect"),
                extra=context,
            )
            intent.last_error = None
            return await self._finish(intent, "delivered", environment, context, claims=claims)
        log.error(
            "rollback for %s refused on attempt %d (HTTP %s); not retried",
            intent.window_id,
            intent.attempts,
            intent.last_status,
            extra=context,
        )
        return await self._finish(intent, "failed", environment, context, claims=claims)

    def _not_found(
        self, error: str | None, settings: RollbackSettings, looked: str = ""
    ) -> str | None:
        """`error` and, for a target `_took_effect` asked, that it found nothing."""
        found = FOUND_NOT_DONE.get(settings.target) if self._targets is not None else None
        return f"{error}; {found}{looked}" if found else error

    async def _look_before_failing(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
        attempt: DeliveryAttempt | None,
    ) -> RollbackIntent:
        """The last allowed attempt got no answer (`attempt`, None when it was recorded
        before a restart): did the rollback take effect all the same? Asked at once, then
        again after each of `final_look_waits` (the attempt's outcome stored with the
        lease held through each wait), for a target that does not dedupe: delivered if
        it did, else failed, saying what was looked for. Nothing is sent again: a run
        GitHub lists late was dispatched twice by a retry."""
        error = intent.last_error
        looked = await self._looked_for(intent, settings, environment, attempt)
        if looked is None:
            return await self._lost(intent, context)
        looks, waited = looked.looks, looked.waited
        if looks > 1:
            attempt = None  # stored with the first wait
        if looked.look.done is None:
            return await self._unknown(
                intent, settings, environment, context, claims, looked, attempt
            )
        if looked.look.done:
            log.info(
                "rollback for %s took effect though its last attempt (%d) got no answer: %s",
                intent.window_id,
                intent.attempts,
                FOUND_DONE.get(settings.target, "it took effect"),
                extra=context,
            )
            intent.last_error = None
            return await self._finish(intent, "delivered", environment, context, attempt, claims)
        asked = f" (asked {looks} times over {format_duration(waited)})" if looks > 1 else ""
        intent.last_error = self._not_found(error, settings, asked)
        log.error(
            "rollback for %s failed: %d attempt(s), the last %s",
            intent.window_id,
            intent.attempts,
            intent.last_error,
            extra=context,
        )
        return await self._finish(intent, "failed", environment, context, attempt, claims)

    async def _looked_for(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        attempt: DeliveryAttempt | None = None,
        *,
        until_told: bool = False,
    ) -> _Looked | None:
        """Whether an attempt that got no answer took effect all the same (`_took_effect`):
        asked at once, then again after each of `final_look_waits` (a wait the target asked
        for honoured, up to `RETRY_AFTER_MAX_S`) while the target could not tell, and, but
        with `until_told`, while not found, for a target that is asked, with the lease held
        through each wait (`_hold`, which stores `attempt`'s outcome with the first). None
        when the lease was lost in a wait.

        Not asked again once a newer deploy of the environment took effect (a wait ends
        for it, `_newer_comes`): the rollback is then given up (or said done, or unknown,
        as the last look found), and no wait is stored for it, in which another replica's
        sweep would take it over to give it up (`Store.take_replaced_rollback`), then a
        third from that one, for as long as the target could not tell. So a sender killed
        in a wait after an unanswered attempt or a 409 is given up by the sweep within
        seconds of the newer deploy, where its lease (the wait and `store.lease` more) was
        waited out: 51 s after the fix's registration (`tests/e2e/
        test_rollback_unanswered_killed.py`)."""
        looks, waited = 1, 0.0
        look = await self._took_effect(intent, settings, environment, attempt)
        asked = self._targets is not None and settings.target in FOUND_NOT_DONE
        for wait in final_look_waits(settings) if asked else []:
            if look.done or (look.done is False and until_told):
                break
            if await self._replaced_by(intent) is not None:
                break
            if look.retry_after is not None:
                wait = min(RETRY_AFTER_MAX_S, max(wait, look.retry_after))
            if not await self._hold(intent, wait, attempt, watching=True):
                return None
            attempt = None
            looks, waited = looks + 1, waited + wait
            look = await self._took_effect(intent, settings, environment)
        if looks > 1:
            intent.next_attempt_at = None  # waited out here: not again before the next attempt
        return _Looked(look, looks, waited)

    async def _unknown(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
        looked: _Looked,
        attempt: DeliveryAttempt | None = None,
    ) -> RollbackIntent:
        """An attempt the target may have taken, and the target could not say whether it
        did through all of `_looked_for`'s looks: failed, its page saying so and where to
        look by hand. Sending again could roll back twice (a second workflow run, a second
        Vercel rollback): the house's first promise is one rollback at the receiver."""
        where = self._targets.where_to_look(settings, environment) if self._targets else ""
        asked = f"asked {looked.looks} times over {format_duration(looked.waited)}"
        said = f", the last answer {looked.look.why}" if looked.look.why else ""
        unknown = (
            f"{FOUND_UNKNOWN.get(settings.target, 'the target could not say whether it took it')}"
            f" ({asked}{said})"
        )
        newer = await self._replaced_by(intent)
        if newer is not None:
            # its looks stopped for it (`_looked_for`): given up for it, in the words its
            # alert and page use (`replaced_words`), where "check by hand" named none
            at = f" at {where}" if where else ""
            return await self._given_up_for(
                newer, intent, settings, environment, context, claims, attempt, f"{unknown}{at}"
            )
        intent.last_error = (
            f"{intent.last_error or 'no answer'}; {unknown}: not sent again, as that could"
            " roll back twice. Whether it went out is unknown: check by hand"
            + (f" at {where}" if where else "")
        )
        log.error(
            "rollback for %s failed: %d attempt(s), %s",
            intent.window_id,
            intent.attempts,
            intent.last_error,
            extra=context,
        )
        return await self._finish(intent, "failed", environment, context, attempt, claims)

    async def _took_effect(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        attempt: DeliveryAttempt | None = None,
    ) -> Look:
        """Whether a rollback whose last attempt may have gone through unanswered (a
        restart, a timeout, a connection cut) already took effect at a target that does
        not dedupe (Vercel, a GitHub workflow run: `RollbackTargets.already_done`), or
        could not tell (`Look.done` None). A GitHub dispatch whose 204 came after the
        timeout was dispatched again on the retry: a second rollback run. A webhook's
        receiver dedupes by Idempotency-Key. A stop before or while it looks lets the look
        go and hands the rollback back (with `attempt`'s outcome, not yet stored): nothing
        of it is out, and the next start or another replica looks again, where the stop
        waited for the answer (up to the rollback's timeout) inside its grace."""
        if self._targets is None:
            return Look(False)
        try:
            return await self._targets.already_done(
                self._client(), intent, settings, environment, self._leaving
            )
        except LeftAsking:
            await self._hand_back(intent, attempt)
            who = {"github": "GitHub", "vercel": "Vercel"}.get(settings.target, "the target")
            raise _LeftAtStop(intent, asking=f"{who} whether it took effect") from None

    async def _lease_outlasts_the_request(
        self,
        intent: RollbackIntent,
        settings: RollbackSettings,
        now: float,
        until: float,
        read_at: float,
    ) -> bool:
        """Whether the lease, as `begin_attempt` stored it (to `until`), still covers the
        whole request; if not (this process was paused, or the store slow, between the
        clock read and the commit's answer), it is taken again first, under a new epoch,
        and False if another sender took it meanwhile and began an attempt of its own, or
        ended the rollback. Sending anyway, a sender paused past its lease right after
        storing its attempt sent it on waking, after a survivor had taken the lapsed
        lease, waited its grace and delivered: the receiver took the rollback twice."""
        while self._lease_left(now, until, read_at) < settings.timeout:
            now, read_at = self._clock(), self._monotonic()
            until = now + max(self.lease_s, settings.timeout + 1.0)
            taken = await self._store.take_rollback(
                intent.window_id, self.owner, now, until, intent.fence
            )
            if taken is None or taken.attempts != intent.attempts:
                return False
            intent.lease_epoch, intent.lease_until = taken.lease_epoch, taken.lease_until
        return True

    def _lease_left(self, now: float, until: float, read_at: float) -> float:
        """What is left of a lease asked for at `now` until `until` (wall clock, as the
        store and the other replicas compare it), `read_at` on this process's monotonic
        clock: the less of what each clock says. By the wall clock alone, one stepped back
        (NTP) while this process was paused or the store slow made a lapsed lease look
        held, and the attempt went out after a survivor had delivered."""
        return min(until - self._clock(), until - now - (self._monotonic() - read_at))

    async def _replaced_by(self, intent: RollbackIntent) -> DeployWindow | None:
        """A newer deploy of the environment that took effect after this rollback was
        requested (`Store.newer_deploy`): a rollback still owed stops here."""
        return await self._store.newer_deploy(intent.window_id, self._clock())

    async def _deployed_meanwhile(
        self, intent: RollbackIntent, context: dict[str, Any]
    ) -> DeployWindow | None:
        """For a rollback delivered: a newer deploy of its environment that took effect
        while its attempt was out (`begin_attempt` sends none after one), which the
        receiver may have rolled back too; its alert names it. The store away: None, said
        in the log (the 2xx is recorded all the same, `_held_settle`)."""
        try:
            return await self._replaced_by(intent)
        except Exception as exc:
            if not store_outage(exc):
                raise
            log.warning(
                "rollback for %s delivered; whether a newer deploy took effect meanwhile is"
                " not known: %s (%s)",
                intent.window_id,
                not_taken(exc),
                self._redact(str(exc)),
                extra=context,
            )
            return None

    async def _given_up_for(
        self,
        newer: DeployWindow,
        intent: RollbackIntent,
        settings: RollbackSettings,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
        attempt: DeliveryAttempt | None = None,
        unknown: str = "",
    ) -> RollbackIntent:
        """Failed, not sent again, naming `newer`: sending it would roll `newer` back too.
        What went out before is said as it is (`sent_before`): an attempt whose answer
        never came may have been acted on, where "not sent" said none went out. `attempt`:
        one not yet stored, stored with the outcome; `unknown`: the target could not say
        whether it took one (`_unknown`), and where to look."""
        stored = await self._store.deliveries(intent.window_id)
        sent = sent_before([*stored, attempt] if attempt is not None else stored)
        target = settings.target if self._targets is not None else "webhook"
        intent.last_error = (
            f"{replaced_words(newer)} at {rfc3339(newer.deployed_at)}, after this rollback"
            " was requested:"
            " rolling back now would undo it"
            + (f"; given up after {sent_words(sent, target)}" if sent.sent else "")
            + (f"; {unknown}" if unknown else "")
        )
        intent.replaced_by, intent.sent_before = newer, sent
        log.error(
            "rollback for %s given up after %d attempt(s): %s",
            intent.window_id,
            intent.attempts,
            intent.last_error,
            extra=context,
        )
        return await self._finish(intent, "failed", environment, context, attempt, claims)

    async def _hold(
        self,
        intent: RollbackIntent,
        delay: float,
        attempt: DeliveryAttempt | None = None,
        *,
        watching: bool = False,
    ) -> bool:
        """Store the next attempt's time (and `attempt`'s outcome) with the lease held
        through the wait, then wait; False if the lease is no longer ours. A stop in the
        wait (or before it) hands it back and raises `_LeftAtStop`. `watching`: the
        wait also ends once a newer deploy of the environment took effect
        (`_newer_comes`), for the caller to give the rollback up at once."""
        intent.next_attempt_at = self._clock() + delay
        intent.lease_until = intent.next_attempt_at + self.lease_s
        if not await self._store.settle_rollback(intent, attempt):
            return False
        newer = self._newer_comes(intent) if watching else None
        try:
            left = await self._wait_unless_leaving(delay, newer)
        except asyncio.CancelledError:
            await self._hand_back(intent)
            raise
        if left:
            await self._hand_back(intent)
            raise _LeftAtStop(intent)
        return True

    async def _wait_unless_leaving(
        self, delay: float, until: Coroutine[Any, Any, None] | None = None
    ) -> bool:
        """Wait `delay` seconds; True, at once, if a stop (`leave_waits`) comes first;
        False, at once, if `until` returns first (it is let go of otherwise)."""
        waiting = sleep_unless(self._leaving, delay, sleep=self._sleep)
        if until is None:
            return await waiting
        over, cut = asyncio.ensure_future(waiting), asyncio.ensure_future(until)
        try:
            await asyncio.wait({over, cut}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (over, cut):
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
        if cut.done() and not cut.cancelled():
            cut.result()  # a bug in looking is raised, as the caller's own look raises it
            return False
        return over.result()

    async def _newer_comes(self, intent: RollbackIntent) -> None:
        """Returns once a newer deploy of its environment took effect (`_replaced_by`),
        looked for every `NEWER_LOOK_S` on the loop's clock, in whichever replica it was
        registered: a rollback waiting out a `Retry-After` (up to `RETRY_AFTER_MAX_S`) or
        its backoff read `pending` and paged nothing that long after the fix registered,
        then was given up. A store that does not answer is asked again at the next look."""
        while True:
            await asyncio.sleep(NEWER_LOOK_S)
            try:
                if await self._replaced_by(intent) is not None:
                    return
            except Exception as exc:
                if not store_outage(exc):
                    raise

    def _left(
        self,
        intent: RollbackIntent,
        environment: str,
        store_away: bool = False,
        asking: str = "",
    ) -> RollbackIntent:
        """Say what a stop did with a rollback it met in a wait (`leave_waits`)."""
        if asking:
            log.info(
                "rollback for %s: stopping while it asks %s (%d attempt(s) made): left"
                " pending to the next start or another replica, which ask again; nothing"
                " of it was in flight",
                intent.window_id,
                asking,
                intent.attempts,
                extra={"deploy_id": intent.window_id, "environment": environment},
            )
            return intent
        if store_away:
            log.info(
                "rollback for %s: stopping while the store does not answer (%d attempt(s)"
                " made): left pending to the next start or another replica, which resume it"
                " once its lease lapses",
                intent.window_id,
                intent.attempts,
                extra={"deploy_id": intent.window_id, "environment": environment},
            )
            return intent
        due = (intent.next_attempt_at or self._clock()) - self._clock()
        log.info(
            "rollback for %s: stopping while it waits (%d attempt(s) made, the next due in"
            " %s): left pending to the next start or another replica, which send it"
            " when the wait is over; nothing of it was in flight",
            intent.window_id,
            intent.attempts,
            format_duration(max(0.0, due)),
            extra={"deploy_id": intent.window_id, "environment": environment},
        )
        return intent

    async def _not_spent(self, intent: RollbackIntent) -> None:
        """Take back the count of an ask a stop let go of (`count_look_up` by -1); one the
        store does not take stays spent."""
        try:
            left = await self._store.count_look_up(
                intent.window_id, intent.fence, self._clock(), intent.lease_until or 0.0, -1
            )
        except StoreError as exc:
            log.warning(
                "rollback for %s: its ask let go of stays counted (%s)", intent.window_id, exc
            )
            return
        if left is not None:
            intent.look_ups = left

    async def _hand_back(
        self, intent: RollbackIntent, attempt: DeliveryAttempt | None = None
    ) -> None:
        """A stop in a wait (a backoff, a take-over's grace): nothing of this sender's is
        out, so its lease is handed back, the wait left as stored. The next agent under
        another replica id (a new pod) takes the rollback at its first sweep and waits
        what is left of it (a grace for an attempt without an outcome is waited again,
        `_grace_cut_short`), where it waited for the lease, held through the wait and
        `lease_s` more; one under this id took it at its start already. One the store
        does not take lapses as before. `attempt`: an answered attempt's outcome not yet
        stored, stored with it."""
        released = dataclasses.replace(intent, lease_until=self._clock())
        await handed_back(lambda: self._store.settle_rollback(released, attempt), self.stop)

    async def _unsendable(
        self,
        intent: RollbackIntent,
        problem: str,
        environment: str,
        context: dict[str, Any],
        claims: SettleClaims | None,
    ) -> RollbackIntent:
        """Failed before any request: no attempt is stored, so none is reported (it said
        "1 attempt(s)" when nothing had gone out)."""
        log.error("rollback for %s not sent: %s", intent.window_id, problem, extra=context)
        intent.last_error, intent.last_status = problem, None
        return await self._finish(intent, "failed", environment, context, claims=claims)

    async def _lost(self, intent: RollbackIntent, context: dict[str, Any]) -> RollbackIntent:
        """What the store says of a rollback this sender no longer holds."""
        stored = await self._store.get_rollback(intent.window_id)
        if stored is not None and stored.state != "pending":
            log.info(
                "rollback for %s already ended %s under another sender; not sent again",
                intent.window_id,
                stored.state,
                extra=context,
            )
            return stored
        log.warning(
            "rollback for %s is no longer this sender's (its lease lapsed and another"
            " took it); stopping without sending again",
            intent.window_id,
            extra=context,
        )
        return stored or intent

    async def _finish(
        self,
        intent: RollbackIntent,
        state: Literal["delivered", "failed"],
        environment: str,
        context: dict[str, Any],
        attempt: DeliveryAttempt | None = None,
        claims: SettleClaims | None = None,
    ) -> RollbackIntent:
        """Store the outcome, with the alerts it calls for (`claims`) in one transaction.

        The outcome of an answered `attempt` is held here until the store takes it
        (`held_until_stored`): a 2xx left unstored when the store did not answer for a
        moment (a PostgreSQL restart) was sent again once it came back, by this very
        process or a replica, though nothing had crashed."""
        if state == "delivered":
            intent.replaced_by = await self._deployed_meanwhile(intent, context)
        final = dataclasses.replace(
            intent, state=state, next_attempt_at=None, finished_at=self._clock(), lease_until=None
        )
        alerts = _claimed(claims, final)
        if attempt is None:
            settled = await self._store.settle_rollback(final, None, alerts)
        else:
            said = "accepted" if state == "delivered" else "answered"
            settled = await self._held_settle(final, attempt, said, context, alerts)
        if not settled:
            return await self._lost(intent, context)
        self._metrics.rollbacks_total.labels(environment=environment, result=state).inc()
        return final

    async def _held_settle(
        self,
        intent: RollbackIntent,
        attempt: DeliveryAttempt,
        said: str,
        context: dict[str, Any],
        alerts: Sequence[AlertClaim] = (),
    ) -> bool:
        """`settle_rollback(intent, attempt, alerts)` held until the store takes it
        (`held_until_stored`): an answered attempt's outcome, which `said` names."""

        def outage_begins(exc: Exception) -> None:
            log.warning(
                "rollback for %s %s on attempt %d; %s (%s):"
                " recording it once the store takes it, not sending it again",
                intent.window_id,
                said,
                attempt.attempt,
                not_taken(exc),
                self._redact(str(exc)),
                extra=context,
            )

        settled, waited = await held_until_stored(
            lambda: self._store.settle_rollback(intent, attempt, alerts),
            outage_begins,
            self._sleep,
            self.stop,
        )
        if waited:
            log.info("rollback for %s: its outcome is stored", intent.window_id, extra=context)
        return settled

    def _prepare(
        self, body: bytes, intent: RollbackIntent, settings: RollbackSettings, environment: str
    ) -> PreparedRequest:
        timestamp = int(self._clock())
        secret = settings.secret.get_secret_value() if settings.secret is not None else ""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "Idempotency-Key": intent.window_id,
            "X-Postflight-Event": "rollback",
            "X-Postflight-Timestamp": str(timestamp),
            "X-Postflight-Signature": sign(secret, timestamp, body),
        }
        if self._targets is None:
            assert settings.url is not None
            return PreparedRequest(settings.url, headers, body, "the webhook")
        return self._targets.prepare(intent, settings, environment, headers)

    async def _attempt(self, request: PreparedRequest, settings: RollbackSettings) -> _Outcome:
        """One POST under the per-attempt timeout (`answered_within`); classifies the
        answer, never raises (except CancelledError)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await answered_within(self._exchange(request), settings.timeout)
        except TimeoutError as exc:
            without_tracebacks(exc)
            return _Outcome(
                "retryable",
                None,
                f"timed out after {settings.timeout:g}s",
                None,
                loop.time() - started,
            )
        except Exception as exc:  # refused, reset; a bug or an odd URL: keep trying
            # kept as words only: aiohttp's exceptions sit in frames their own tracebacks
            # hold, a cycle per refused attempt left for the rare collection otherwise
            without_tracebacks(exc)
            error = self._redact(_of_the_address(request, _unanswered(exc)))[:_ERROR_SNIPPET]
            return _Outcome("retryable", None, error, None, loop.time() - started)
        status, text, retry_after, rate_limited = answer
        if 200 <= status < 300:
            return _Outcome("delivered", status, None, None, loop.time() - started)
        duration = loop.time() - started
        if request.who == "the webhook":  # the receiver's own words, whatever their shape
            snippet = _of_the_address(request, " ".join(text.split()))
        else:  # Vercel's or GitHub's error message, not its JSON
            snippet = error_said(text, self._redact)
        error = self._redact(
            ("" if request.who == "the webhook" else f"{request.who} answered ")
            + f"HTTP {status}"
            + (f": {snippet}" if snippet else "")
        )
        if not is_http_status(status):
            # RFC 9110 §15: an invalid status is processed as a 5xx, which is retried
            error += NOT_AN_HTTP_STATUS
        if worth_retrying(status) or rate_limited:
            return _Outcome("retryable", status, error, retry_after, duration)
        if 300 <= status < 400:
            error = (
                f"HTTP {status}: redirects are not followed (a signed POST must not be"
                " replayed elsewhere); set rollback.url to the final address"
            )
        return _Outcome("rejected", status, error, None, duration)

    async def _exchange(self, request: PreparedRequest) -> tuple[int, str, float | None, bool]:
        """The POST and its answer: status, the start of a non-2xx body, the wait it asks
        for, and whether it says rate limited. No timeout of its own (the caller's)."""
        async with self._client().post(
            _as_written(request.url),
            data=request.body,
            headers=request.headers,
            # no body (Vercel's rollback): no content type, as curl sends it, where
            # aiohttp made one up (octet-stream) for a POST without one
            skip_auto_headers=() if request.body else ("Content-Type",),
            allow_redirects=False,
        ) as response:
            status = response.status
            if 200 <= status < 300:
                # delivered on the status line: its body is not waited for, so the
                # record of it follows the receiver's 2xx as closely as it can
                return status, "", None, False
            # a webhook's answer is quoted from its start; Vercel's or GitHub's is read
            # whole, to quote the message in it (`error_said`)
            most = _ERROR_SNIPPET if request.who == "the webhook" else _API_ERROR_BYTES
            raw, unread, _ = await read_answer(response, most)
            text = unread or raw.decode("utf-8", "replace")
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
            rate_limit = RATE_LIMITS.get(request.who)
            if rate_limit is not None:  # GitHub's are 403s as often as 429s
                limited = rate_limit(status, response.headers, text, self._clock())
                if limited is not None:
                    return status, text, limited, True
            return status, text, retry_after, False


ANSWER_LINE_BYTES = 64 * 1024
"""The longest status or header line of an answer read (aiohttp's default: 8190)."""


RATE_LIMITS = {"GitHub": github_rate_limit_wait, "Vercel": vercel_rate_limit_wait}
"""How each provider target says it is rate limited, and for how long."""


_URL_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)
"""What a URL already percent-encoded holds (RFC 3986): anything else must be quoted."""


def _as_written(url: str) -> URL | str:
    """The URL to POST to, byte for byte when it is already encoded (the configuration's
    URLs are): aiohttp's requoting turned a query's `%2F` into `/`, which a receiver that
    checks a pre-signed URL (a SAS or trigger token) refuses."""
    if set(url) <= _URL_CHARS:
        return URL(url, encoded=True)
    return url


def _unsettled_from_another(given: RollbackIntent, taken: RollbackIntent, owner: str) -> bool:
    """Taken over from another sender (`given` is how the sweep found it) while its last
    attempt went out, or was about to, and no outcome followed: no wait is stored
    (`_hold` stores one with every outcome but the last). Found under this owner's own
    lapsed lease, it was another's all the same if the epoch moved on more than this take
    did: another sender took it between the read and the take (and let it lapse, maybe
    holding a 2xx through a store outage); without the grace this one sent at once."""
    previous = given.lease_owner
    handed_on = (previous is not None and previous != owner) or (
        taken.lease_epoch > given.lease_epoch + 1
    )
    return handed_on and taken.attempts > 0 and taken.next_attempt_at is None


def _of_the_address(request: PreparedRequest, text: str) -> str:
    """`text` (a webhook's answer, an error) without the token-like pieces of the
    webhook's own URL, which a refusal often quotes back: a hook whose token is in its
    path (`common.redaction.address_redactor`). Other targets' URLs are the agent's own
    (Vercel's, GitHub's API), with no secret in them."""
    if request.who != "the webhook":
        return text
    return address_redactor(str(request.url))(text)


def _unanswered(exc: BaseException) -> str:
    """An attempt that got no answer, in words on-call acts on: aiohttp's own text for a
    refused connection (`Cannot connect to host 127.0.0.1:9 ssl:default [Connect call
    failed ('127.0.0.1', 9)]`) names TLS settings of a plain-http URL. A TLS failure
    keeps aiohttp's words (the certificate's fault is in them)."""
    if type(exc) is aiohttp.ClientConnectorDNSError:  # a typo in the host, or DNS down
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot resolve {exc.host} ({reason})"
    if type(exc) is aiohttp.ClientConnectorError:
        # asyncio words it "Connect call failed (host, port)": the errno says why
        code = exc.os_error.errno
        reason = os.strerror(code) if code else type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port} ({reason})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        if isinstance(exc.message, RawResponseMessage):
            # a head cut off before its empty line (aiohttp's C parser keeps what came):
            # incomplete, even after a 2xx status line (RFC 9112 §8: the client may
            # repeat the request), retried with the same Idempotency-Key
            return (
                "the receiver closed the connection in its answer's head, after its status"
                f" line HTTP {exc.message.code} (incomplete: retried as no answer)"
            )
        return "the receiver closed the connection without answering"
    if type(exc) is aiohttp.ClientResponseError:
        # no status is raised for (raise_for_status is not used): the answer's head did
        # not parse, and aiohttp words that as a 400 (`ClientResponseError: 400,
        # message="Bad status line: …"`), an HTTP 400 to on-call
        return f"the answer is not readable HTTP: {' '.join(exc.message.split())}"
    return f"{type(exc).__name__}: {exc}"

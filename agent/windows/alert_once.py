"""One notification per deploy and event, across rounds, restarts and replicas.

`WindowAlerts` puts the store's alert claims in front of the `Notifier`: a breach
that persists for ten rounds pages once, a restarted agent does not page again,
and a resolve is sent only for a breach that was.

A crash mid-send must not lose the page (an SMTP server takes seconds; "ROLLBACK
FAILED" may be the one that was in flight), and a live sender must not be doubled.
So the claim is a lease, not a final mark: it is stored with the alert and its tags
(the payload) before sending, each channel that takes the alert is noted as it does,
and the outcome is stored last. A claim still without an outcome after `lease_s` (more
than the notifier's worst case, so never a live sender's) belongs to a dead sender:
`recover` (run every few seconds by every replica, `run`) takes it over through
`Store.take_alert`, which one caller wins, and sends the stored alert to the channels
not noted, with a fresh deploy-page link. A claim whose claimer the store proves dead
(the replica's previous process, killed: `orphaned`) is taken over at once, where the
restart waited out the lease as if another live replica might hold it. A process's own
scans leave alone what it is sending itself (`_in_flight`): stopped past the lease
(SIGSTOP), it is not dead. Alerts
are thus at least once, and a duplicate needs the process to die between a channel
accepting the alert and that being noted (milliseconds), or to be stopped past the lease
while another replica takes it over; a window cancelled or superseded meanwhile drops it.
A window's taken-over alerts go out one at a time in the order they were raised
(`raised_order`): a breach before its resolve and the rollback it called for, a rollback's
request before its outcome, as the live sends keep them.

A channel that fails an alert is retried (`ALERT_RETRY_DELAYS_S`), to the failed
channels only, by the same means: the outcome is stored with when the next retry is
due, `run` takes due retries (`Store.take_alert_retry`, one taker, a lease) and sends
the stored alert to the channels not noted. So a retry owed at a stop or a crash is
sent by the restarted agent or any replica, a retry cut off mid-send is taken over
once its lease lapses, and a window cancelled or superseded meanwhile drops it.
An alert on-call reads after an earlier one (`_follows`) first catches up a channel
still owed the earlier one's retry (`_catch_up`): the earlier one goes there once, then
the later one, where the earlier one's retry reached the channel after the later one and
its newest alert misled. Delivered, the earlier one is settled (held through a store
outage with the later one's outcome, `CaughtUp`); refused again, it keeps its retry (one
notification per deploy and event: a channel down throughout gets each once when it is
back), and the later one is held on that channel for its own retry, as on a channel
whose earlier alert another replica is retrying right then: sent there, it went first.
The retries a pass takes of one window go out in the order raised (`_in_raised_order`):
a later one's waits for the earlier one's.

A breach's result is stored only once its slowest channel has answered, so a
resolve first waits for this process's sends of that breach (a settled rollback's alert
likewise waits for its request's, `SETTLED_ROLLBACK_EVENTS`): a breach that clears
within those seconds still gets its resolve. One that reached no channel gets no
resolve, even if a retry delivers it later.

A round's new breaches are one alert, not a page per rule (`emit_group`; its resolves
likewise): every rule's key is claimed with it, all or none, the first carrying the
alert (sent, retried and taken over as any other), the rest marks that take its
outcome. So each rule is still told once a window, by one replica, and none twice.

What it must not do: raise into a round, or make a rollback wait. `emit` never
raises (but `CancelledError`); the window runs it through `WatchServices.spawn`
(`agent.windows.lifecycle`), off the round's hot path, and the watcher's `drain`
finishes it on shutdown within a bound. Retries run the same way, spawned by `run`,
never awaited by a round, a rollback or another alert. Only a window's end waits, and
only for the claims of the alerts spawned before it (`emit`'s `claimed`): once the end is
stored no round re-emits them, so a claim made after it could be lost to a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

from agent.records import DeployWindow, Fence
from agent.stopping import StopBudget, named_for_a_stop
from agent.store.base import AlertClaim, AlertRetry, OwedRetry, Store, UnsettledAlert
from agent.store.outages import (
    StoreOutageLog,
    handed_back,
    held_until_stored,
    not_taken,
    store_outage,
)
from alerting.events import Alert, breach_key
from alerting.notifier import Notifier, NotifyOutcome
from common.durations import format_duration

log = logging.getLogger("postflight.alerting")
T = TypeVar("T")

DELIVERED_RESULTS = frozenset({"sent", "partial"})
"""Stored results meaning someone was told (a resolve is owed for such a breach)."""

DROPPED_STATES = frozenset({"cancelled", "superseded"})
"""A window in these states "fires nothing more": a cut-off alert of it is not re-sent,
nor a failed one retried."""

ALERT_RETRY_DELAYS_S: tuple[float, ...] = (5.0, 30.0, 120.0)
"""When a channel that failed an alert is tried again, counted from the failure before:
5 s rides out a receiver's restart or a blip, 30 s a service being redeployed, 2 min a
short outage. About 3 minutes in all (and three notifier timeouts): past that, news of
a deploy window (minutes long) is stale, and the failure has been counted
(`postflight_alerts_total{result="failed"}`, which the shipped alert rule watches)."""

MIN_PAUSE_S = 0.05
"""The least `run` waits between two looks, whatever is due (no busy loop)."""

RETRIES_IN_FLIGHT = 2
"""Alerts one agent retries at once: a hung channel's retries hold at most these of
apprise's worker threads (a few on a small machine), never all of them, so a new alert
is never kept waiting behind old ones."""


def alert_lease(notifier: Notifier) -> float:
    """How long a claim stays its sender's: twice the notifier's worst case and a second,
    for the store writes around the send and some clock skew between replicas."""
    return 2 * notifier.worst_case_s + 1.0


def dump_payload(alert: Alert, tags: Sequence[str], also: Sequence[str] = ()) -> str:
    """An alert and its tags as stored with its claim, and the keys claimed with it
    (`grouped_with`)."""
    data: dict[str, Any] = {"alert": dataclasses.asdict(alert), "tags": list(tags)}
    if also:
        data["also"] = list(also)
    return json.dumps(data, default=str)


def grouped_with(text: str) -> list[str]:
    """The keys a stored alert was claimed with (`WindowAlerts.emit_group`): they take
    its outcome, and a resolve of one waits while it is being sent."""
    return [str(k) for k in json.loads(text).get("also") or ()]


def alert_claim(alert: Alert, tags: Sequence[str], key: str | None = None) -> AlertClaim:
    """`alert` as a claim to store with the change that calls for it (`send_claimed`)."""
    return AlertClaim(key or alert.event, dump_payload(alert, tags))


NO_WINDOW = "no-window:"
"""What a once-mark about no window (`WindowAlerts.notify`) stands under in the place of a
deploy id: the store's alert claims are keyed by one, and no window has this prefix."""


def _stand_in(mark: str, alert: Alert) -> DeployWindow:
    """The window a claim about none is sent, noted, retried and taken over as: its mark
    for the id, the alert's environment, version and commit; no deploy page to link."""
    return DeployWindow(
        id=mark,
        environment=alert.environment,
        version=alert.version,
        previous_version=None,
        commit=alert.commit,
        labels={},
        state="inconclusive",
        deployed_at=0.0,
        ends_at=0.0,
        created_at=0.0,
    )


def load_payload(text: str) -> tuple[Alert, list[str]]:
    """`dump_payload`'s inverse; fields this version does not know are left out."""
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(Alert)}
    fields = {k: v for k, v in data["alert"].items() if k in known}
    fields["rules"] = tuple(fields.get("rules") or ())
    return Alert(**fields), [str(t) for t in data.get("tags") or ()]


class CaughtUp:
    """What a later alert's catch-up (`WindowAlerts._catch_up`) leaves it."""

    def __init__(self) -> None:
        self.held: dict[str, str] = {}
        """Channel key → the earlier alert still owed there: the later one is held there."""
        self.flights = contextlib.ExitStack()
        """The caught-up alerts whose outcome the store has yet to take: in flight
        meanwhile (`WindowAlerts._flights`), so this process's own scans leave them."""
        self._unstored: list[Callable[[], Awaitable[None]]] = []

    async def stored_now(
        self, write: Callable[[], Awaitable[None]], flight: contextlib.ExitStack
    ) -> bool:
        """`write()` tried once; one the store does not take (`store_outage`) is kept, to
        be stored with the later alert's outcome (`stored`), its `flight` kept open till
        then. Whether it was stored."""
        try:
            await write()
        except Exception as exc:
            if not store_outage(exc):
                raise
            self._unstored.append(write)
            self.flights.enter_context(flight.pop_all())
            return False
        return True

    async def stored(self) -> None:
        """Store what the store did not take (`stored_now`); raises as the store does,
        within the later alert's held outcome (`WindowAlerts._hold`)."""
        while self._unstored:
            await self._unstored[0]()
            self._unstored.pop(0)

    async def sent_after(
        self, send: Awaitable[NotifyOutcome], stop: StopBudget | None
    ) -> NotifyOutcome:
        """The later alert's `send`; a cancellation (a stop) cuts it after one more try
        of what is unstored (`handed_back`): left so, the caught-up alert goes out again."""
        try:
            return await send
        except asyncio.CancelledError:
            await handed_back(self.stored, stop)
            raise


class WindowAlerts:
    """Deduplicated alerts for deploy windows; safe to share between windows."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        *,
        clock: Callable[[], float] = time.time,
        link: Callable[[DeployWindow], str | None] | None = None,
        lease_s: float | None = None,
        retry_delays: Sequence[float] = ALERT_RETRY_DELAYS_S,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        stop: StopBudget | None = None,
    ) -> None:
        self._store = store
        self.stop = stop
        """The daemon's stop: an outcome held for the store is waited for within it."""
        self._notifier = notifier
        self._clock = clock
        self._sleep = sleep
        """The wait between tries to store a held outcome (`_hold`)."""
        self._link = link
        """The deploy's page, for every alert body (`agent.web.links.deploy_page_url`)."""
        self.lease_s = alert_lease(notifier) if lease_s is None else lease_s
        """After this long, a claim without an outcome is a dead sender's (`recover`)."""
        self._sending: dict[tuple[str, str], list[asyncio.Event]] = {}
        """This process's emits in flight, by (deploy, key): what a resolve waits for."""
        self.retry_delays = tuple(retry_delays)
        """The wait before each retry of a channel that failed (`ALERT_RETRY_DELAYS_S`)."""
        self._resending: dict[str, list[tuple[UnsettledAlert, float]]] = {}
        """Claims `recover` took over and has yet to send, by window, in the order they
        were raised: each window's are sent one at a time (`_resend_in_order`)."""
        self._retrying = 0
        self._wake = asyncio.Event()
        """Set when this process owes a retry or finished one: `run` looks again."""

    async def emit(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        *,
        key: str | None = None,
        fence: Fence | None = None,
        claimed: asyncio.Future[None] | None = None,
    ) -> bool:
        """Send `alert` unless this deploy already had it; True if this call sent it
        to at least one channel.

        `key` defaults to the event (`passed`, `rollback_requested`…). Per-rule events
        use `breach:<rule>` and `resolved:<rule>` (see `alerting.events.breach_key`);
        a `resolved:<rule>` goes out only if `breach:<rule>` reached a channel.
        With `fence` (a window's watch), only while that lease still holds the window.
        `claimed` is resolved once the claim is stored (or not made), before the send:
        what a window's end waits for (`WindowWatch.round_claims`).
        Never raises, except `CancelledError`.
        """
        key = key or alert.event
        _named_unclaimed(window, [key])
        with self._flight(window.id, key), _telling(claimed):
            return await self._emit(window, alert, tags, key, fence, claimed)

    async def emit_group(
        self,
        window: DeployWindow,
        keys: Sequence[str],
        make: Callable[[list[str]], Alert],
        tags: Sequence[str],
        *,
        fence: Fence | None = None,
        claimed: asyncio.Future[None] | None = None,
    ) -> bool:
        """One alert, `make(owed)`, for those of `keys` this deploy has not had yet: a
        round's new breaches (`breach:<rule>`), or its resolves (`resolved:<rule>`, each
        owed only if its breach reached a channel), told at once, not a page per rule.
        Every key is claimed with the alert, all or none, so each still goes out once
        across rounds, replicas and restarts; the alert's retries and take-overs are
        the first key's, and the others take its outcome. A key claimed meanwhile (an
        overlapping round, another replica) is left out and the rest claimed again.
        `claimed` as `emit`'s. True if this call sent it to at least one channel. Never
        raises, except `CancelledError`."""
        keys = list(dict.fromkeys(keys))
        _named_unclaimed(window, keys)
        with self._flights(window.id, keys), _telling(claimed):
            try:
                return await self._emit_group(window, keys, make, tags, fence, claimed)
            except asyncio.CancelledError:
                raise
            except Exception:
                context = {"deploy_id": window.id, "environment": window.environment}
                log.exception("alert %s for %s not sent", ", ".join(keys), window.id, extra=context)
                return False

    async def _emit_group(
        self,
        window: DeployWindow,
        keys: list[str],
        make: Callable[[list[str]], Alert],
        tags: Sequence[str],
        fence: Fence | None,
        claimed: asyncio.Future[None] | None,
    ) -> bool:
        # a resolve a window's end waits for (`claimed`) is claimed before its breach's
        # send here is done, and sent once it is: the end cannot wait on that send (a
        # hung channel would hold it and its rollback), and a resolve left unclaimed
        # behind it was lost to a kill just after the end was stored
        if claimed is None:
            for key in keys:
                if key.startswith("resolved:"):
                    await self._breach_sent(window.id, key)
        owed, tried = keys, False
        while True:
            events = await self._store.alert_events(window.id)
            sending = self._breach_sending(window.id, owed)
            left = [k for k in owed if k not in events and (_owed(k, events) or k in sending)]
            if not left or (tried and len(left) == len(owed)):
                return False  # all had theirs, or the fence no longer holds
            owed, tried = left, True
            alert = make(owed)
            lead, *also = owed
            payload = dump_payload(alert, tags, also)
            now = self._clock()
            if await self._store.claim_alert(window.id, lead, now, fence, payload, also=also):
                _tell(claimed)
                if sending.intersection(owed) and not await self._breach_told(
                    window, lead, also, now
                ):
                    return False
                return await self._send(window, alert, tags, lead, also=also)

    def _breach_sending(self, window_id: str, keys: Sequence[str]) -> set[str]:
        """The `resolved:<rule>` keys of `keys` whose breach this process is still sending:
        claimed before that send is done, `_breach_told` decides once it is."""
        return {
            key
            for key in keys
            if key.startswith("resolved:") and self._in_flight(window_id, _breach_of(key))
        }

    async def _breach_told(
        self, window: DeployWindow, lead: str, also: Sequence[str], claimed_at: float
    ) -> bool:
        """For resolves claimed at `claimed_at` before their breaches' sends here were done
        (`_emit_group`): True, the claim still this caller's, once those sends are done
        and one of the breaches reached a channel (the alert names them all, as claimed);
        else False, the claim closed unsent (a resolve only for a breach someone got), or
        left to whoever took it over as it outlived its lease."""
        for key in (lead, *also):
            if key.startswith("resolved:"):
                await self._breach_sent(window.id, key)
        # a take-over stamps the claim with a time past `claimed_at + lease_s`
        lapsed_before = claimed_at + self.lease_s
        if not await self._store.take_alert(window.id, lead, self._clock(), lapsed_before):
            return False
        return not await self._closed_unowed(window.id, lead, also)

    async def _closed_unowed(self, window_id: str, lead: str, also: Sequence[str]) -> bool:
        """Whether the claim of resolves `lead` and `also` was closed unsent (`dropped`):
        none of their breaches reached a channel (a resolve only for a breach someone got).
        A claim of other events is never closed here."""
        resolves = [key for key in (lead, *also) if key.startswith("resolved:")]
        if not resolves:
            return False
        events = await self._store.alert_events(window_id)
        if any(_owed(key, events) for key in resolves):
            return False
        detail = "not sent: its breach reached no channel"
        await self._store.record_alert(window_id, lead, "dropped", detail, also=also)
        return True

    async def send_claimed(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        *,
        claimed_at: float,
        key: str | None = None,
    ) -> bool:
        """Send an alert this process claimed `claimed_at` in the transaction that called
        for it (`alert_claim`: a window's end, a settled rollback), so that a crash
        between that commit and the send cannot lose it. The claim is this caller's:
        it is renewed and sent at once, unless `recover` took it over meanwhile (it
        outlived its lease), so the alert still goes out once. Never raises, except
        `CancelledError`."""
        key = key or alert.event
        with self._flight(window.id, key):
            try:
                if key in SETTLED_ROLLBACK_EVENTS:  # told after its request, not before
                    await self._sends_done(window.id, ROLLBACK_REQUESTED)
                now = self._clock()
                # a take-over stamps the claim with a time past `claimed_at + lease_s`
                lapsed_before = claimed_at + self.lease_s
                if not await self._store.take_alert(window.id, key, now, lapsed_before):
                    return False
                return await self._send(window, alert, tags, key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                context = {"deploy_id": window.id, "environment": window.environment}
                if store_outage(exc):  # the claim is stored: `recover` takes it over
                    log.warning(
                        "alert %s for %s waits: %s (%s); the alert"
                        " recovery sends it once the store answers and its claim lapses",
                        key,
                        window.id,
                        not_taken(exc),
                        exc,
                        extra=context,
                    )
                    return False
                log.exception("alert %s for %s not sent", key, window.id, extra=context)
                return False

    async def notify(self, mark: str, alert: Alert, tags: Sequence[str]) -> bool:
        """Send an alert about no window (a gate given up with none to answer from) once
        per `mark`: claimed with its payload under `NO_WINDOW + mark`, each channel noted
        as it takes it, retried and taken over as a window's alerts are. Its caller's
        record (the gate's answer) came after the page: a kill between the two paged
        again when the gate was answered again. Never raises, except `CancelledError`."""
        stand_in = _stand_in(NO_WINDOW + mark, alert)
        return await self.emit(stand_in, alert, tags)

    def _flight(self, window_id: str, key: str) -> contextlib.AbstractContextManager[None]:
        return self._flights(window_id, [key])

    @contextlib.contextmanager
    def _flights(self, window_id: str, keys: Sequence[str]) -> Iterator[None]:
        """Registers a send (of one alert under all its `keys`), before its first await:
        a resolve spawned a round later finds it and waits."""
        done = asyncio.Event()
        slots = [(window_id, key) for key in keys]
        for slot in slots:
            self._sending.setdefault(slot, []).append(done)
        try:
            yield
        finally:
            done.set()
            for slot in slots:
                flights = self._sending[slot]
                flights.remove(done)
                if not flights:
                    del self._sending[slot]

    async def _emit(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        key: str,
        fence: Fence | None,
        claimed: asyncio.Future[None] | None,
    ) -> bool:
        context = {"deploy_id": window.id, "environment": window.environment, "event": key}
        try:
            if key.startswith("resolved:") and not await self._breach_reached(window.id, key):
                return False
            payload = dump_payload(alert, tags)
            if not await self._store.claim_alert(window.id, key, self._clock(), fence, payload):
                return False
            _tell(claimed)
            return await self._send(window, alert, tags, key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert %s for %s not sent", key, window.id, extra=context)
            return False

    async def _breach_reached(self, window_id: str, resolved: str) -> bool:
        """Whether the breach a `resolved:<rule>` key answers reached a channel."""
        await self._breach_sent(window_id, resolved)
        return _owed(resolved, await self._store.alert_events(window_id))

    async def _breach_sent(self, window_id: str, resolved: str) -> None:
        """Until this process's sends of the breach a `resolved:<rule>` answers are done."""
        await self._sends_done(window_id, _breach_of(resolved))

    async def _sends_done(self, window_id: str, key: str) -> None:
        """Until this process's sends of `key` of the window are done (each is bounded by
        the notifier's timeout, so this wait is too)."""
        for sending in list(self._sending.get((window_id, key), ())):
            await sending.wait()

    async def _send(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        key: str,
        sent_to: Collection[str] = (),
        also: Sequence[str] = (),
    ) -> bool:
        """Send a claimed alert (but to `sent_to`), noting each channel that takes it,
        then store the outcome (its `also` keys' too), with when to retry the channels
        that failed. An outcome (or a channel's note) the store could not take is held
        and stored once it answers (`_hold`)."""
        named_for_a_stop(
            f"alert {_keys(key, also)} of {window.id} (claimed: the next start sends it once"
            f" the claim lapses, {format_duration(self.lease_s)} after it was made, to the"
            " channels that have not taken it, unless the deploy is cancelled or superseded"
            " first)",
            ALERTS,
        )
        hold = bool(self.retry_delays)  # held on a channel only for a retry to come
        async with self._sent_in_order(
            window, alert, tags, key, also, sent_to, retry=0, hold=hold
        ) as sent:
            outcome, noted = sent
            detail, retry_at = outcome.describe(), None
            if outcome.failed and self.retry_delays:
                retry_at = self._clock() + self.retry_delays[0]
                detail += f"; retrying in {format_duration(self.retry_delays[0])}"

            async def record() -> None:
                await noted()
                await self._store.record_alert(
                    window.id, key, outcome.result, detail, retry_at=retry_at, also=also
                )

            await self._hold(window, key, record)
        if retry_at is not None:
            self._wake.set()
        return outcome.delivered

    @contextlib.asynccontextmanager
    async def _sent_in_order(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        key: str,
        also: Sequence[str],
        skip: Collection[str],
        *,
        retry: int,
        hold: bool,
    ) -> AsyncIterator[tuple[NotifyOutcome, Callable[[], Awaitable[None]]]]:
        """`alert` sent (but to `skip`; `retry`: its Nth retry) once the earlier alerts it
        follows are caught up (`_catch_up`), held on a channel still owed one (`hold`):
        its outcome, and what stores the channels that took it and the catch-ups' outcomes
        the store did not take, to be written with its outcome inside this block (the
        caught-up alerts stay in flight till then)."""
        caught = await self._catch_up(window, key, also, tags, hold=hold)
        with caught.flights:
            unnoted: list[str] = []
            outcome = await caught.sent_after(
                self._notifier.send(
                    self._linked(window, alert),
                    tags,
                    skip=skip,
                    on_sent=self._noter(window, key, unnoted),
                    retry=retry,
                    held=caught.held,
                ),
                self.stop,
            )

            async def noted() -> None:
                await caught.stored()
                await self._note(window.id, key, unnoted)

            yield outcome, noted

    async def _note(self, window_id: str, key: str, unnoted: list[str]) -> None:
        """The channels that took the alert as the store did not answer (`_noter`),
        stored first: a retry or a take-over skips who took it."""
        while unnoted:
            await self._store.note_alert_channel(window_id, key, unnoted[0])
            unnoted.pop(0)

    async def _hold(self, window: DeployWindow, key: str, record: Callable[[], Awaitable[T]]) -> T:
        """Store what a send or a retry did, held while the store does not answer
        (`held_until_stored`): the sender knows the channels took it, and a claim (or a
        retry's lease) left without its outcome is taken over once its lease lapses and
        sent again, where a live sender gave up at once ("not sent") and a replica resent
        it (the sink got "deploy passed" twice; `bench/ha_faults.py` seed 704). The send
        stays in flight meanwhile, so this process's own scans leave it alone; a stop's
        drain bounds it. Only a store that comes back past the lease, after a replica took
        the claim over, or not before the stop ends, leaves a duplicate."""
        context = {"deploy_id": window.id, "environment": window.environment, "event": key}

        def outage_begins(exc: Exception) -> None:
            log.warning(
                "alert %s for %s: sent, but %s (%s): its outcome is held until the store takes it",
                key,
                window.id,
                not_taken(exc),
                exc,
                extra=context,
            )

        stored, waited = await held_until_stored(record, outage_begins, self._sleep, self.stop)
        if waited:
            log.info("alert %s for %s: its outcome recorded", key, window.id, extra=context)
        return stored

    def _linked(self, window: DeployWindow, alert: Alert) -> Alert:
        if alert.link is None and self._link is not None and not window.id.startswith(NO_WINDOW):
            return dataclasses.replace(alert, link=self._link(window))
        return alert

    def _noter(
        self, window: DeployWindow, key: str, unnoted: list[str]
    ) -> Callable[[str], Awaitable[None]]:
        """What notes that a channel took the alert; one the store could not take goes to
        `unnoted`, stored with the outcome (`_send`, `_retry_once`)."""

        async def note(channel: str) -> None:
            try:
                await self._store.note_alert_channel(window.id, key, channel)
            except Exception as exc:  # only a duplicate after a crash is at stake: send on
                if store_outage(exc):
                    unnoted.append(channel)
                    return
                log.warning(
                    "alert %s for %s: could not note that %s took it",
                    key,
                    window.id,
                    channel,
                    exc_info=True,
                    extra={"deploy_id": window.id, "event": key},
                )

        return note

    # a dead sender's alerts ---------------------------------------------------

    async def run(self, spawn: Callable[[Any], object], interval: float) -> None:
        """`recover` and `retry` every `interval` seconds, and as a retry falls due, for
        good; a failed scan is retried."""
        outage = StoreOutageLog(log, "alerts: looking for alerts to send again")
        while True:
            try:
                await self.recover(spawn)
                await self.retry(spawn)
                outage.answered()
                await self._pause(interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(exc)
                await asyncio.sleep(interval)

    async def _pause(self, interval: float) -> None:
        """Until `interval` has passed, the soonest retry (this process's or another's)
        is due, or this process owes a new one or has a free slot again."""
        self._wake.clear()
        delay = interval
        soonest = await self._store.next_alert_retry()
        if soonest is not None and self._retrying < RETRIES_IN_FLIGHT:
            delay = min(delay, max(MIN_PAUSE_S, soonest - self._clock()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def recover(self, spawn: Callable[[Any], object] | None = None) -> int:
        """Send the alerts whose sender died mid-send (claims without an outcome older than
        the lease, or at once when the store proves their claimer dead: this replica's
        previous process); with `spawn`, in the background. How many were taken over."""
        now = self._clock()
        # `orphaned`: a claim its own previous process left (kill -9) is taken at once,
        # where a restart waited out the lease as if a live replica might hold it
        lapsed = now - self.lease_s
        taken: dict[str, list[tuple[UnsettledAlert, float]]] = {}
        for claim in await self._store.unsettled_alerts(claimed_before=lapsed, orphaned=True):
            if self._in_flight(claim.window_id, claim.event):
                continue  # this process's own send, its lease lapsed while it was stopped
            if not await self._store.take_alert(
                claim.window_id, claim.event, now, lapsed_before=lapsed, orphaned=True
            ):
                continue  # another replica took it a moment ago
            taken.setdefault(claim.window_id, []).append((claim, now))
        for window_id, claims in taken.items():
            queued = self._resending.get(window_id)
            if queued is not None:  # this window's resends are under way: in their order
                queued.extend(claims)
                queued[:] = raised_order(queued)
                continue
            self._resending[window_id] = raised_order(claims)
            await _start(self._resend_in_order(window_id), spawn)
        return sum(len(claims) for claims in taken.values())

    async def _resend_in_order(self, window_id: str) -> None:
        """A window's taken-over claims, one after another in the order they were raised
        (`raised_order`): sent side by side, a crash's "rollback requested" and its
        outcome, or a breach and its resolve, reached a channel in either order, and the
        newest alert misled on-call. Each after the first is its taker's still, or skipped
        (`send_claimed`'s test): it waited for the sends before it, bounded by the
        notifier's timeout each, and may have outlived the lease taken with it."""
        queue = self._resending[window_id]
        try:
            first = True
            while queue:
                claim, taken_at = queue.pop(0)
                if not first and not await self._store.take_alert(
                    window_id, claim.event, self._clock(), taken_at + self.lease_s
                ):
                    continue  # outlived its lease while it waited: another replica's now
                first = False
                await self._resend(claim)
        finally:
            del self._resending[window_id]

    def _in_flight(self, window_id: str, key: str) -> bool:
        """Whether this process is sending `key` of the window right now. Its claim (or a
        retry's lease) looks a dead sender's once the process was stopped past the lease
        (SIGSTOP, a frozen VM): on waking, its own scan took it over and sent the alert
        again while the send it was in the middle of delivered it."""
        if any(claim.event == key for claim, _ in self._resending.get(window_id, ())):
            return True  # taken over and waiting its turn (`_resend_in_order`)
        return bool(self._sending.get((window_id, key)))

    async def _window(self, window_id: str, payload: str) -> DeployWindow | None:
        """The window a stored alert is about, or the stand-in of an alert about none."""
        if window_id.startswith(NO_WINDOW):
            return _stand_in(window_id, load_payload(payload)[0])
        return await self._store.get_window(window_id)

    async def _resend(self, claim: UnsettledAlert) -> None:
        """A taken-over claim: its stored alert to the channels that did not take it."""
        context = {"deploy_id": claim.window_id, "event": claim.event}
        also = grouped_with(claim.payload)
        with self._flights(claim.window_id, [claim.event, *also]):
            try:
                window = await self._window(claim.window_id, claim.payload)
                if window is None or window.state in DROPPED_STATES:
                    state = window.state if window else "gone"
                    await self._store.record_alert(
                        claim.window_id,
                        claim.event,
                        "dropped",
                        f"cut off; window {state}",
                        also=also,
                    )
                    return
                # a resolve claimed before its breach's send was done (`_breach_told`)
                if await self._closed_unowed(claim.window_id, claim.event, also):
                    return
                alert, tags = load_payload(claim.payload)
                log.warning(
                    "alert %s for %s was cut off (its sender stopped mid-send): sending it",
                    claim.event,
                    claim.window_id,
                    extra={**context, "environment": window.environment},
                )
                await self._send(window, alert, tags, claim.event, claim.sent_to, also)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "alert %s for %s not sent again", claim.event, claim.window_id, extra=context
                )

    # a channel that failed ------------------------------------------------------

    async def retry(self, spawn: Callable[[Any], object] | None = None) -> int:
        """Send the retries now due (this process's, another replica's, a previous run's),
        as many as may run at once; with `spawn`, in the background. How many were taken."""
        free = RETRIES_IN_FLIGHT - self._retrying
        if free <= 0:
            return 0
        now = self._clock()
        taken: list[AlertRetry] = []
        # `orphaned`: a retry its own previous process was sending (kill -9), at once
        for window_id, event in await self._store.alert_retries_due(now, free, orphaned=True):
            if self._in_flight(window_id, event):
                continue  # this process's own retry, its lease lapsed while it was stopped
            retry = await self._store.take_alert_retry(
                window_id, event, now, now + self.lease_s, orphaned=True
            )
            if retry is None:
                continue  # another replica took it a moment ago
            taken.append(retry)
        # each registers its send before its first wait (`_flights`), so a later one's
        # catch-up (`_catch_up`) finds the earlier one under way and waits for it
        for retry in _in_raised_order(taken):
            await _start(self._retry(retry), spawn)
        return len(taken)

    async def _retry(self, retry: AlertRetry) -> None:
        """A taken retry: its stored alert to the channels that have not taken it."""
        context = {"deploy_id": retry.window_id, "event": retry.event}
        self._retrying += 1
        try:
            also = grouped_with(retry.payload)
            with self._flights(retry.window_id, [retry.event, *also]):
                await self._retry_once(retry, context, also)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "alert %s for %s: retry %d not sent",
                retry.event,
                retry.window_id,
                retry.retries,
                extra=context,
            )
        finally:
            self._retrying -= 1
            self._wake.set()

    async def _retry_once(
        self, retry: AlertRetry, context: dict[str, Any], also: Sequence[str]
    ) -> None:
        window = await self._window(retry.window_id, retry.payload)
        if window is None or window.state in DROPPED_STATES:
            state = window.state if window else "gone"
            log.info(
                "alert %s for %s not retried: window %s", retry.event, retry.window_id, state,
                extra=context,
            )  # fmt: skip
            await self._store.settle_alert_retry(
                retry, retry.result, f"{retry.detail}; not retried: window {state}", None, also
            )
            return
        n = retry.retries
        if n > len(self.retry_delays):  # takers died mid-retry: their attempts count
            self._gave_up(retry, n - 1, context)
            await self._store.settle_alert_retry(
                retry, retry.result, f"{retry.detail}; gave up after {n - 1} retries", None, also
            )
            return
        alert, tags = load_payload(retry.payload)
        named_for_a_stop(
            f"retry {n} of alert {_keys(retry.event, also)} of {window.id} (the next start"
            f" takes it again once its lease lapses, {format_duration(self.lease_s)} after it"
            " was taken, to the channels that have not taken it)",
            ALERTS,
        )
        hold = n < len(self.retry_delays)  # its last retry waits on no earlier alert
        key = retry.event
        async with self._sent_in_order(
            window, alert, tags, key, also, retry.sent_to, retry=n, hold=hold
        ) as sent:
            outcome, noted = sent
            detail, next_at = self._after_retry(retry, outcome, context)

            async def settle() -> bool:
                await noted()
                return await self._store.settle_alert_retry(
                    retry, outcome.result, detail, next_at, also
                )

            stored = await self._hold(window, key, settle)
        if not stored:
            log.warning(
                "alert %s for %s: retry %d outlived its lease; another agent has taken it",
                retry.event,
                retry.window_id,
                n,
                extra=context,
            )
        elif next_at is not None:
            self._wake.set()

    async def _catch_up(
        self,
        window: DeployWindow,
        key: str,
        also: Sequence[str],
        tags: Sequence[str],
        *,
        hold: bool,
    ) -> CaughtUp:
        """Before `key` goes out: each earlier alert on-call must read before it
        (`_follows`) whose failed channels are still owed a retry is sent to them now,
        once: its retry reached a channel after the later alert did (a breach after its
        resolve, "rollback requested" after "ROLLBACK FAILED"), and the channel's newest
        alert misled. Delivered, it is settled; refused again, it keeps its retry as it
        was (`_caught_up`). One taker across replicas and restarts (`take_alert_retry`,
        at the time it was due); one this process is sending is waited for first (bounded
        by the notifier's timeout) and that is its one send; one another replica is
        sending is left to it. With `hold` (`key` has a retry left), `key` is held on each
        channel still owed an earlier alert after that (`CaughtUp.held`): sent there on
        its own retry, after the earlier one's, where it went first and the earlier one's
        retry, or another replica's send under way, reached the channel after it. Never
        raises but `CancelledError`: a later alert, a rollback's above all, is never held
        by it on a channel that owes nothing, nor by a store that does not answer."""
        caught = CaughtUp()
        try:
            owed = await self._owed_before(window.id, key, also, tags)
            waited = {o.event for o in owed if self._in_flight(window.id, o.event)}
            if waited:
                for event in waited:  # this process's own retry of it: let it end, then look
                    await self._sends_done(window.id, event)
                owed = await self._owed_before(window.id, key, also, tags)
            now = self._clock()
            for earlier in owed:
                # a retry just waited for was its one send (failed again, it keeps its next);
                # one under way here or at another replica (its lease live) is left to it
                busy = self._in_flight(window.id, earlier.event) or (
                    earlier.taken and earlier.retry_at > now
                )
                if earlier.event in waited or busy:
                    still: Collection[str] = self._owed_on(earlier.payload, earlier.sent_to)
                else:
                    still = await self._caught_up(window, earlier, key, caught)
                for channel in still:
                    caught.held.setdefault(channel, earlier.event)
        except asyncio.CancelledError:
            await handed_back(caught.stored, self.stop)
            caught.flights.close()
            raise
        except Exception as exc:
            context = {"deploy_id": window.id, "environment": window.environment, "event": key}
            said = f"{not_taken(exc)} ({exc})" if store_outage(exc) else None
            log.warning(
                "alert %s for %s: the earlier alerts it follows not caught up%s",
                key, window.id, f": {said}" if said else "", exc_info=said is None, extra=context,
            )  # fmt: skip
            caught.held.clear()  # what is owed is not known: sent as before
        if not hold:
            caught.held.clear()
        return caught

    def _owed_on(self, payload: str, taken: Collection[str]) -> list[str]:
        """The channels a stored alert is still owed on: routed to it, and not `taken`."""
        routed_to = self._notifier.channel_keys(load_payload(payload)[1])
        return [c for c in routed_to if c not in taken]

    async def _owed_before(
        self, window_id: str, key: str, also: Sequence[str], tags: Sequence[str]
    ) -> list[OwedRetry]:
        """The window's alerts `key` follows that still owe a retry on some of the
        channels `key` goes to, in the order raised."""
        route = set(self._notifier.route(tags))
        owed = [
            o
            for o in await self._store.alert_retries_of(window_id)
            if o.event != key
            and _follows(key, also, {o.event, *grouped_with(o.payload)})
            and set(self._notifier.route(load_payload(o.payload)[1])) <= route
        ]
        return sorted(owed, key=lambda o: _rank(o.event))

    async def _caught_up(
        self, window: DeployWindow, earlier: OwedRetry, key: str, caught: CaughtUp
    ) -> list[str]:
        """`earlier` (owed a retry) to the channels it failed, once, before `key`: settled
        if they all take it; else its retry is kept as it was (when due, how many taken:
        this send is `key`'s, not one of its retries), where it was dropped there and a
        channel down throughout got only the newest alert once back. What the store does
        not take of it is left to `caught` (`CaughtUp.stored`), tried again with `key`'s
        outcome: given up, the retry's lease lapsed and it went to the channel again,
        after `key`. The channels still owed it."""
        retry = await self._store.take_alert_retry(
            window.id, earlier.event, earlier.retry_at, self._clock() + self.lease_s
        )
        if retry is None:
            # taken a moment ago (another replica's retry): left to it
            return self._owed_on(earlier.payload, earlier.sent_to)
        also = grouped_with(retry.payload)
        with contextlib.ExitStack() as flight:
            flight.enter_context(self._flights(window.id, [retry.event, *also]))
            alert, tags = load_payload(retry.payload)
            unnoted: list[str] = []
            outcome = await self._notifier.send(
                self._linked(window, alert),
                tags,
                skip=retry.sent_to,
                on_sent=self._noter(window, retry.event, unnoted),
                retry=retry.retries,
                ahead_of=key,
            )
            result: str = outcome.result
            if not outcome.failed:
                detail = f"{outcome.describe()} (caught up before {key})"
                retry_at, retries = None, None
            else:
                detail = f"{outcome.describe()} (caught up before {key}; retried when due)"
                result = "partial" if outcome.sent else retry.result
                retry_at, retries = earlier.retry_at, retry.retries - 1

            async def settle() -> None:
                await self._note(window.id, retry.event, unnoted)
                await self._store.settle_alert_retry(
                    retry, result, detail, retry_at, also, retries=retries
                )

            if not await caught.stored_now(settle, flight):
                log.warning(
                    "alert %s for %s: caught up before %s, but the store did not take it:"
                    " held until it does",
                    retry.event, window.id, key,
                    extra={"deploy_id": window.id, "event": retry.event},
                )  # fmt: skip
        return self._owed_on(retry.payload, {*retry.sent_to, *outcome.taken_by})

    def _after_retry(
        self, retry: AlertRetry, outcome: NotifyOutcome, context: dict[str, Any]
    ) -> tuple[str, float | None]:
        """The stored detail after a retry, and when the next is due (None: no more)."""
        n = retry.retries
        if not outcome.channels or not outcome.failed:
            note = "" if not outcome.channels else f" (delivered on retry {n})"
            return outcome.describe() + note, None
        if n < len(self.retry_delays):
            delay = self.retry_delays[n]
            detail = f"{outcome.describe()}; retry {n} failed, next in {format_duration(delay)}"
            return detail, self._clock() + delay
        self._gave_up(retry, n, context, outcome)
        return f"{outcome.describe()}; gave up after {n} retries", None

    def _gave_up(
        self,
        retry: AlertRetry,
        retries: int,
        context: dict[str, Any],
        outcome: NotifyOutcome | None = None,
    ) -> None:
        failed = [c.url for c in outcome.channels if not c.sent] if outcome else []
        log.error(
            "alert %s for %s not delivered to %s after %d retries; giving up",
            retry.event,
            retry.window_id,
            ", ".join(failed) or "its failed channels",
            retries,
            extra=context,
        )


ALERTS = "alerts"
"""The part that names the tasks it runs alone (`named_for_a_stop`)."""


def _keys(lead: str, also: Sequence[str]) -> str:
    """An alert's keys as a stop's warning names them: the first, and how many more."""
    return lead + (f" (+{len(also)})" if also else "")


def _named_unclaimed(window: DeployWindow, keys: Sequence[str]) -> None:
    """An alert's task as a stop cuts it before its claim: nothing of it is stored."""
    named_for_a_stop(
        f"alert {_keys(keys[0], keys[1:])} of {window.id} (cut before it was claimed: not"
        " sent, and sent by the next agent only if the deploy calls for it again)",
        ALERTS,
    )


ROLLBACK_REQUESTED = "rollback_requested"
SETTLED_ROLLBACK_EVENTS = frozenset({"rollback_delivered", "rollback_failed", "rollback_skipped"})
"""A settled rollback's alerts: each waits for this process's send of the window's
`rollback_requested` (`send_claimed`), so no channel takes the outcome before the
request. Both were spawned at once, and a webhook answering at once (or a slow channel
taking the request) had "ROLLBACK FAILED" reach chat first and "rollback requested"
last: the newest alert said a rollback was under way that had failed."""


def raised_order(
    claims: Sequence[tuple[UnsettledAlert, float]],
) -> list[tuple[UnsettledAlert, float]]:
    """A window's taken-over claims in the order they were raised: by when each was
    claimed, and an alert after those on-call reads it after (`_comes_after`) whatever
    the clocks said (replicas' may be off by a little; two claims may share a stamp)."""
    return _read_order(
        sorted(claims, key=lambda c: c[0].claimed_at), lambda c, d: _comes_after(c[0], d[0])
    )


def _in_raised_order(retries: Sequence[AlertRetry]) -> list[AlertRetry]:
    """Retries taken together, a window's in the order on-call must read them
    (`_follows`), each else as it came (by when it was due)."""
    return _read_order(
        retries,
        lambda r, d: (
            d.window_id == r.window_id
            and _follows(r.event, grouped_with(r.payload), {d.event, *grouped_with(d.payload)})
        ),
    )


def _read_order(items: Sequence[T], after: Callable[[T, T], bool]) -> list[T]:
    """`items` in their order but each after those `after(it, other)` says on-call reads
    it after: the first item no other must precede, again and again."""
    left, ordered = list(items), []
    while left:
        ready = next(
            (i for i in left if not any(after(i, d) for d in left if d is not i)),
            left[0],  # never a cycle (`_follows` is a partial order): a safe fallback
        )
        left.remove(ready)
        ordered.append(ready)
    return ordered


def _comes_after(claim: UnsettledAlert, other: UnsettledAlert) -> bool:
    """Whether on-call must read `claim` after `other` (`_follows`)."""
    return _follows(
        claim.event, grouped_with(claim.payload), {other.event, *grouped_with(other.payload)}
    )


def _follows(event: str, also: Sequence[str], keys: Collection[str]) -> bool:
    """Whether on-call must read the alert claimed under `event` (and `also`) after the
    one claimed under `keys`: a resolve after its breach, a rollback's request after the
    breaches that called for it, its outcome after it."""
    breached = any(k.startswith("breach:") for k in keys)
    if event == ROLLBACK_REQUESTED:
        return breached
    if event in SETTLED_ROLLBACK_EVENTS:
        return breached or ROLLBACK_REQUESTED in keys
    resolved = [k for k in (event, *also) if k.startswith("resolved:")]
    return any(_breach_of(k) in keys for k in resolved)


def _rank(event: str) -> int:
    """Where an alert a later one follows comes among those (`_catch_up`): the breaches,
    then the rollback's request."""
    return 1 if event == ROLLBACK_REQUESTED else 0


def _breach_of(resolved: str) -> str:
    """The breach key a `resolved:<rule>` key answers."""
    return breach_key(resolved.removeprefix("resolved:"))


def _owed(key: str, events: Mapping[str, str]) -> bool:
    """Whether `key` may go out as far as its breach goes: a `resolved:<rule>` only
    after its breach reached a channel, any other key always."""
    return not key.startswith("resolved:") or events.get(_breach_of(key)) in DELIVERED_RESULTS


async def _start(work: Coroutine[Any, Any, None], spawn: Callable[[Any], object] | None) -> None:
    """Run `work` now, or hand it to `spawn` to run in the background (`recover`, `retry`)."""
    if spawn is None:
        await work
    else:
        spawn(work)


def _tell(claimed: asyncio.Future[None] | None) -> None:
    """That an emit's claim is stored, or will not be made (`emit`'s `claimed`)."""
    if claimed is not None and not claimed.done():
        claimed.set_result(None)


@contextlib.contextmanager
def _telling(claimed: asyncio.Future[None] | None) -> Iterator[None]:
    """`_tell` however an emit ends: a claim not made (had already, a store error, a
    fence lost) must not keep a window's end waiting."""
    try:
        yield
    finally:
        _tell(claimed)

"""One sender per rollback: a sender whose lease another replica took never sends again.

Two `RollbackDelivery`s on one store play two replicas; the clock is the test's, so "a
pause longer than the lease" is a jump of the clock while the first sender waits. The
receiver is the judge: it counts every 2xx it answered, duplicates included.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.records import DeliveryAttempt, DeployWindow, Fence, RollbackIntent
from agent.rollback.delivery import RollbackDelivery
from agent.settings import EnvironmentSettings
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WatchServices, deliver_rollback
from alerting.notifier import Notifier
from tests.receivers import RollbackAttempt, RollbackReceiver
from tests.rollback.support import SECRET, make_window, settings, stored_intent
from tests.store.peek import deliveries
from tests.test_store_outage_logs import Restarting

LEASE_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sender(store: SqliteStore, owner: str, clock: Clock, sleep: Any = None) -> RollbackDelivery:
    async def no_wait(seconds: float) -> None:
        return None

    return RollbackDelivery(
        store, Metrics(), clock=clock, sleep=sleep or no_wait, owner=owner, lease_s=LEASE_S
    )


async def records_its_2xx(store: Any, intent: RollbackIntent, sent_at: float, now: float) -> None:
    """The first sender, alive, records the 2xx its attempt 1 got (held through an outage)."""
    intent.attempts = 1
    done = dataclasses.replace(intent, state="delivered", finished_at=now)
    accepted = DeliveryAttempt("dep_01JDTEST", 1, sent_at, 200, None, 0.1)
    assert await store.settle_rollback(done, accepted)


async def sent_by_a_whose_lease_lapsed(
    store: SqliteStore, clock: Clock
) -> tuple[RollbackIntent, float]:
    """The stored rollback, taken by "a", which began its attempt 1 (the 2xx it gets is
    not recorded yet) and whose lease then lapsed: what "a" took, and when it sent."""
    await stored_intent(store)
    first = await store.take_rollback("dep_01JDTEST", "a", clock.now, clock.now + LEASE_S)
    assert first is not None
    fence = Fence("a", first.lease_epoch)
    assert await store.begin_attempt("dep_01JDTEST", fence, clock.now, clock.now + LEASE_S) == 1
    sent_at = clock.now
    clock.now += LEASE_S + 1
    return first, sent_at


async def test_a_sender_that_wakes_after_a_takeover_does_not_retry(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    clock = Clock()
    conf = settings(receiver.url)
    survivor = sender(store, "b", clock)

    async def paused(seconds: float) -> None:
        # "a" waits out its backoff and is paused far past its lease meanwhile: "b"'s
        # sweep finds the lease lapsed and delivers
        clock.now += seconds + LEASE_S + 60
        [pending] = await store.pending_rollbacks()
        taken = await survivor.deliver(pending, conf, "production")
        assert taken.state == "delivered"

    first = sender(store, "a", clock, sleep=paused)
    try:
        done = await first.deliver(await stored_intent(store), conf, "production")
    finally:
        await first.aclose()
        await survivor.aclose()

    assert done.state == "delivered"  # what the store says: "a" stopped, "b" delivered
    assert [(a.status, a.accepted) for a in receiver.attempts] == [(503, False), (200, True)]
    rows = await deliveries(store, "dep_01JDTEST")
    assert [(r.attempt, r.status) for r in rows] == [(1, 503), (2, 200)]
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and (stored.state, stored.attempts) == ("delivered", 2)


HUNG_TIMEOUT = 2.0
"""The hung attempt's timeout: how long "b"'s whole delivery, run as the receiver holds
"a"'s attempt, has before "a" goes on. At 0.3 s a loaded machine's slower delivery let
"a" time out first, and the test failed on its own premise (no takeover yet), not on the
sender; ~10 ms measured here, so only the order decides. The test waits it out once."""


async def test_a_timeout_after_a_pause_does_not_resend_while_another_holds_the_lease(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    clock = Clock()
    survivor = sender(store, "b", clock)
    conf = settings("http://unused", timeout=HUNG_TIMEOUT)
    results = []

    async def during_the_first(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:  # "a"'s request hangs; "a" is paused past its lease
            clock.now += LEASE_S + conf.timeout + 60
            [pending] = await store.pending_rollbacks()
            results.append(await survivor.deliver(pending, conf, "production"))

    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("hang", 200), on_attempt=during_the_first
    )
    conf = settings(receiver.url, timeout=HUNG_TIMEOUT)
    first = sender(store, "a", clock)
    try:
        done = await first.deliver(await stored_intent(store), conf, "production")
    finally:
        await first.aclose()
        await survivor.aclose()

    assert [r.state for r in results] == ["delivered"]
    assert done.state == "delivered"  # what the store says: "a" did not send again
    assert len(receiver.attempts) == 2
    assert sum(a.accepted for a in receiver.attempts) == 1
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.attempts == 2


def replica(
    store: SqliteStore, sender: RollbackDelivery, metrics: Metrics, clock: Clock
) -> tuple[WatchServices, list[str]]:
    """A replica's watch services, recording each `after_rollback` it runs."""
    ran: list[str] = []

    async def after_rollback(window: DeployWindow, intent: RollbackIntent) -> None:
        ran.append(f"{sender.owner}:{window.id}")

    notifier = Notifier([], timeout=1.0, redact=str, metrics=metrics)
    services = WatchServices(
        store=store,
        metrics=metrics,
        alerts=WindowAlerts(store, notifier, clock=clock),
        delivery=sender,
        providers={},
        owner=sender.owner,
        lease_s=LEASE_S,
        clock=clock,
        after_rollback=after_rollback,
    )
    return services, ran


async def test_a_sender_that_lost_its_lease_neither_counts_nor_follows_up_the_rollback(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    """ "a" loses its lease mid-backoff and "b" delivers: the window is counted once (by
    "b", which settled it) and `after_rollback` runs once, not again when "a" wakes."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    clock = Clock()
    conf = settings(receiver.url)
    env = EnvironmentSettings(base_url="http://127.0.0.1:9", rollback=conf)
    window = make_window()
    metrics_a, metrics_b = Metrics(), Metrics()
    survivor = sender(store, "b", clock)
    services_b, ran_b = replica(store, survivor, metrics_b, clock)

    async def paused(seconds: float) -> None:
        clock.now += seconds + LEASE_S + 60
        [pending] = await store.pending_rollbacks()
        await deliver_rollback(window, pending, env, services_b)

    first = sender(store, "a", clock, sleep=paused)
    services_a, ran_a = replica(store, first, metrics_a, clock)
    try:
        await deliver_rollback(window, await stored_intent(store), env, services_a)
    finally:
        await first.aclose()
        await survivor.aclose()

    def counted(metrics: Metrics, outcome: str) -> float:
        labels = {"environment": "production", "outcome": outcome}
        return metrics.registry.get_sample_value("postflight_windows_total", labels) or 0.0

    assert sum(a.accepted for a in receiver.attempts) == 1
    assert (counted(metrics_a, "rolled_back"), counted(metrics_b, "rolled_back")) == (0.0, 1.0)
    assert ran_a == [] and ran_b == ["b:dep_01JDTEST"]
    # a second delivery call on the settling replica (its resume sweep) follows up nothing
    stored = await store.get_rollback(window.id)
    assert stored is not None
    await deliver_rollback(window, stored, env, services_b)
    assert ran_b == ["b:dep_01JDTEST"] and counted(metrics_b, "rolled_back") == 1.0


class PausedInBeginAttempt(SqliteStore):
    """Sender "a" is paused (SIGSTOP) while its attempt's number is being stored: the
    commit lands, then the clock runs past the lease before "a" goes on; `meanwhile`
    plays the survivor's sweep."""

    paused_owner = "a"
    meanwhile: Any = None

    async def begin_attempt(self, window_id: str, fence: Any, now: float, until: float) -> Any:
        number = await super().begin_attempt(window_id, fence, now, until)
        if fence.owner == self.paused_owner and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return number


async def woken_after_the_survivor_delivered(
    store: SqliteStore,
    first: RollbackDelivery,
    survivor: RollbackDelivery,
    conf: Any,
    results: list[RollbackIntent],
) -> None:
    """ "a" (`first`) delivers a stored intent; paused as it stored its attempt, it wakes
    after "b" (`survivor`) took the lapsed lease over and delivered: both end delivered."""
    try:
        done = await first.deliver(await stored_intent(store), conf, "production")
    finally:
        await first.aclose()
        await survivor.aclose()
        await store.close()
    assert [r.state for r in results] == ["delivered"]
    assert done.state == "delivered"


async def test_a_sender_paused_as_its_attempt_is_stored_does_not_send_it_after_a_takeover(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """The attempt is stored and the lease lapses before it goes out (a pause between
    the commit and the request): "b" takes over, waits its grace and delivers; "a" wakes
    and must not send the attempt it had stored, or the receiver takes it twice."""
    store = PausedInBeginAttempt(tmp_path / "paused.db")
    await store.open()
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(200, 200))
    clock = Clock()
    conf = settings(receiver.url)
    survivor = sender(store, "b", clock)
    results: list[RollbackIntent] = []

    async def survivor_delivers() -> None:
        clock.now += LEASE_S + conf.timeout + 60
        [pending] = await store.pending_rollbacks()
        results.append(await survivor.deliver(pending, conf, "production"))

    store.meanwhile = survivor_delivers
    first = sender(store, "a", clock)
    await woken_after_the_survivor_delivered(store, first, survivor, conf, results)
    assert sum(a.accepted for a in receiver.attempts) == 1


async def test_a_sender_whose_wall_clock_was_stepped_back_in_a_pause_does_not_send_after_a_takeover(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """As above, but "a"'s wall clock was stepped back (NTP, on its host only) by as much as
    it was paused: by that clock its lease still covered the request, and it sent it after
    "b" had delivered, twice at the receiver. Its monotonic clock saw the pause."""
    store = PausedInBeginAttempt(tmp_path / "stepped.db")
    await store.open()
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(200, 200))
    wall_a, monotonic_a, wall_b = Clock(), Clock(), Clock()
    conf = settings(receiver.url)
    survivor = sender(store, "b", wall_b)
    results: list[RollbackIntent] = []

    async def paused_and_stepped_back() -> None:
        pause = LEASE_S + conf.timeout + 60
        wall_b.now += pause
        monotonic_a.now += pause  # "a"'s wall clock reads as before the pause
        [pending] = await store.pending_rollbacks()
        results.append(await survivor.deliver(pending, conf, "production"))

    store.meanwhile = paused_and_stepped_back
    first = RollbackDelivery(
        store, Metrics(), clock=wall_a, monotonic=monotonic_a, owner="a", lease_s=LEASE_S
    )
    await woken_after_the_survivor_delivered(store, first, survivor, conf, results)
    assert sum(a.accepted for a in receiver.attempts) == 1


async def test_a_sweep_that_read_its_own_lapsed_lease_waits_the_grace_if_another_took_it_since(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    """Sender "a"'s sweep read the rollback under its own (lapsed) lease; before it takes it,
    "b" took it, sent an attempt and, its 2xx held through a store outage, let its lease
    lapse too. The read says "a's own", but the epoch moved on twice: "a" waits the
    grace as for any takeover, "b" records its 2xx meanwhile, and "a" sends nothing
    (it sent at once: the receiver took the rollback twice)."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(200,))
    clock = Clock()
    conf = settings(receiver.url)
    await stored_intent(store)
    read = await store.take_rollback("dep_01JDTEST", "a", clock.now, clock.now + LEASE_S)
    assert read is not None
    clock.now += LEASE_S + 1
    taken = await store.take_rollback("dep_01JDTEST", "b", clock.now, clock.now + LEASE_S)
    assert taken is not None
    fence = Fence("b", taken.lease_epoch)
    number = await store.begin_attempt("dep_01JDTEST", fence, clock.now, clock.now + LEASE_S)
    assert number == 1
    sent_at = clock.now
    clock.now += LEASE_S + 1
    waits: list[float] = []

    async def b_records_its_2xx(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            await records_its_2xx(store, taken, sent_at, clock.now)

    first = sender(store, "a", clock, sleep=b_records_its_2xx)
    try:
        done = await first.deliver(read, conf, "production")
    finally:
        await first.aclose()

    assert waits  # the grace was waited
    assert done.state == "delivered"
    assert receiver.attempts == []  # b's 2xx was the one; "a" sent nothing


async def test_a_third_sender_waits_the_grace_a_taker_that_died_in_it_stored(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    """ "a" sent attempt 1 and holds its 2xx through a store outage; "b" took the lapsed
    lease and stored its grace as the next attempt's time, then died in it. "c", taking
    "b"'s lapsed lease, read that as a backoff already waited out and sent at once, just
    as "a" recorded its 2xx on the store's return: the receiver took the rollback twice.
    The grace stored for an attempt still without an outcome is waited again."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(200,))
    clock = Clock()
    conf = settings(receiver.url)
    first, sent_at = await sent_by_a_whose_lease_lapsed(store, clock)

    async def dies_in_its_grace(seconds: float) -> None:
        raise asyncio.CancelledError  # killed as it waits

    [pending] = await store.pending_rollbacks()
    second = sender(store, "b", clock, sleep=dies_in_its_grace)
    try:
        with pytest.raises(asyncio.CancelledError):
            await second.deliver(pending, conf, "production")
    finally:
        await second.aclose()
    held = await store.get_rollback("dep_01JDTEST")
    assert held is not None and held.lease_owner == "b" and held.next_attempt_at is not None
    clock.now = (held.lease_until or clock.now) + 1  # "b"'s lease lapsed too
    waits: list[float] = []

    async def a_records_its_2xx(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            await records_its_2xx(store, first, sent_at, clock.now)

    [pending] = await store.pending_rollbacks()
    third = sender(store, "c", clock, sleep=a_records_its_2xx)
    try:
        done = await third.deliver(pending, conf, "production")
    finally:
        await third.aclose()

    assert waits  # the grace was waited
    assert done.state == "delivered"
    assert receiver.attempts == []  # "a"'s 2xx was the one; "c" sent nothing


async def test_a_taker_whose_grace_the_store_cut_short_waits_it_again_once_the_store_answers(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """ "b" took over "a"'s attempt without an outcome and waited its grace, but the store
    went away as it ended; "a" holds its 2xx meanwhile. "b", going on as soon as the store
    answered, sent at once, just as "a" recorded its 2xx there: twice at the receiver."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(200,))
    store = Restarting(tmp_path / "postflight.db")
    await store.open()
    clock = Clock()
    conf = settings(receiver.url)
    first, sent_at = await sent_by_a_whose_lease_lapsed(store, clock)
    waits: list[float] = []

    async def the_store_flaps(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        if len(waits) == 1:  # "b"'s grace ends as the store goes away
            store.down = True
        elif len(waits) == 2:  # "b" asks again: the store is back
            store.down = False
        elif len(waits) == 3:  # "a" records its 2xx on its return
            await records_its_2xx(store, first, sent_at, clock.now)

    [pending] = await store.pending_rollbacks()
    second = sender(store, "b", clock, sleep=the_store_flaps)
    try:
        done = await second.deliver(pending, conf, "production")
    finally:
        await second.aclose()
        await store.close()

    assert done.state == "delivered"
    assert receiver.attempts == []  # "a"'s 2xx was the one; "b" sent nothing

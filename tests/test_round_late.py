"""What held a round past its slot (`agent.windows.late`): each part measured as the
watch marks the round's steps, the loop's stall the host's, the largest the cause."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest

from agent.metrics import OVERRUN_CAUSES
from agent.windows import late
from agent.windows.late import CAUSES, RoundTimer, RoundWaits, cpu_waited_s, timed_wait
from checks.lag import LoopLag


def timed(
    *,
    due: float = 100.0,
    at: float = 100.0,
    finished_at: float | None = None,
    settled_at: float | None = None,
    lease_s: float = 0.0,
    given: float = 0.9,
    checks_s: float | None = None,
    providers_s: float = 0.0,
) -> RoundWaits:
    """A round marked with these pace times, back to back on this loop (no stall of its
    own beyond what the machine makes in microseconds); the checks take the time they
    were given unless `checks_s` says otherwise. With `settled_at`, a round before it
    finished at `finished_at` and its write was done then."""
    checks_s = given if checks_s is None else checks_s
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    if finished_at is not None:
        timer.ready(finished_at)
    if settled_at is not None:
        assert finished_at is not None
        timer.start(lag, loop.time(), finished_at - 0.3, finished_at - 0.3)
        timer.finish(loop.time(), finished_at)
        timer.settled(settled_at)
    timer.start(lag, loop.time(), at, due)
    timer.leased(at + lease_s)
    timer.checked(at + lease_s + checks_s, given)
    timer.fetched(at + lease_s + checks_s + providers_s)
    return timer.finish(loop.time(), at + lease_s + checks_s + providers_s)


def in_room(lag: LoopLag | None = None) -> RoundTimer:
    """A round's timer on this loop (reading `lag`, when the test reads it too), started
    on time at 100.0 and its lease held at once: the checks' room begins."""
    loop = asyncio.get_running_loop()
    timer = RoundTimer()
    timer.start(lag or LoopLag(loop), loop.time(), 100.0, 100.0)
    timer.leased(100.0)
    return timer


async def test_checks_past_the_time_they_were_given_are_the_checks_cause() -> None:
    waits = timed(given=0.27, checks_s=1.47)
    assert waits.checks_s == pytest.approx(1.2, abs=0.05)
    assert waits.cause() == "checks"


async def test_a_wait_for_provider_answers_is_the_providers_cause() -> None:
    # the checks kept to their time, the providers were waited for until near the slot's
    # end, and the round's own work then ran past it: without that wait it would have fit
    waits = timed(given=0.9, checks_s=0.9, providers_s=0.5)
    assert waits.providers_s == pytest.approx(0.5, abs=0.05)
    assert waits.checks_s == pytest.approx(0.0, abs=1e-9)
    assert waits.cause() == "providers"


async def test_a_first_round_late_for_its_provider_baselines_names_the_providers() -> None:
    """The watch began at the deploy (due 100.0) and waited 0.15 s of a 0.3 s slot for a
    slow provider's baselines: its first round started late, its probes kept their room
    (`EnvironmentProbe.longest_round`) and it overran. The baselines' wait is the cause."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    timer.began(lag, 100.0)
    timer.ready(100.17, baselines_s=0.15)  # 0.02 s of the store's reads and writes
    timer.start(lag, loop.time(), 100.17, 100.0)
    timer.leased(100.17)
    timer.checked(100.32, 0.15)  # the probes' room, past the 0.1 s the slot left
    timer.fetched(100.32)
    waits = timer.finish(loop.time(), 100.33)
    assert waits.providers_s == pytest.approx(0.15, abs=0.01), waits
    assert waits.store_s == pytest.approx(0.02, abs=0.01), waits
    assert waits.checks_s == 0.0
    assert waits.cause() == "providers"
    # the next round owes nothing to the setting up
    timer.settled(100.33)
    timer.start(lag, loop.time(), 100.33, 100.3)
    assert timer.waits.providers_s == 0.0 and timer.waits.store_s == 0.0


async def test_a_stall_in_a_baseline_wait_its_timer_ended_leaves_the_wait_the_providers() -> None:
    """The watch began at the deploy (due 100.0) and waited for a slow provider's
    baselines until its 1 s timeout cut the wait, the loop blocked 0.3 s meanwhile (a busy
    machine's stalls, in one): the timer still fired at 1 s, so the wait was the
    provider's, all of it, and that stall held nothing: not the host's. Before, the stall
    was taken off the providers' 1 s and given to the host (a starved host then named for
    a provider that held the round: `timed_wait`)."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    timer.began(lag, 100.0)
    before = lag.total()
    time.sleep(0.3)  # noqa: ASYNC251 (the stall, mid-wait, on purpose)
    idle = timed_wait(1.0, lag.total() - before, 1.0)  # the timer fired on time
    assert idle >= 0.2, idle
    timer.ready(101.0, baselines_s=1.0, idle_stall_s=idle)
    timer.start(lag, loop.time(), 101.0, 100.0)
    timer.leased(101.0)
    timer.checked(101.15, 0.15)
    timer.fetched(101.15)
    waits = timer.finish(loop.time(), 101.16)
    assert waits.providers_s == pytest.approx(1.0, abs=0.01), waits
    assert waits.stalled_s < 0.05, waits
    assert waits.cause() == "providers"


async def test_a_stall_in_the_checks_room_their_timer_ended_is_not_the_hosts() -> None:
    """A slow target's probes ran the checks' whole room (0.6 s), cut on time by the
    round's timer, the loop blocked 0.3 s meanwhile; the providers then held the round
    0.2 s. The stall lengthened nothing (the probes were cut when due): the providers held
    it. Before, all of the stall was the host's (0.3 s), named over the providers'."""
    loop = asyncio.get_running_loop()
    timer = in_room()
    time.sleep(0.3)  # noqa: ASYNC251 (the stall, mid-room, on purpose)
    timer.checked(100.6, 0.6)  # the timer fired on time
    timer.fetched(100.8)
    waits = timer.finish(loop.time(), 100.81)
    assert waits.providers_s == pytest.approx(0.2, abs=0.01), waits
    assert waits.stalled_s < 0.05, waits
    assert waits.cause() == "providers"


async def test_a_stall_that_made_the_checks_end_late_is_the_hosts_by_that_lateness() -> None:
    """The same stall (0.3 s) at the room's end: the round's timer fired 0.1 s late, which
    is the host's; the stall before it was due lengthened nothing."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = in_room(lag)
    before = lag.total()
    time.sleep(0.3)  # noqa: ASYNC251 (the stall, on purpose)
    stalled = lag.total() - before
    assert stalled >= 0.25, stalled
    timer.checked(100.7, 0.6)
    timer.fetched(100.75)
    waits = timer.finish(loop.time(), 100.76)
    assert waits.stalled_s == pytest.approx(0.1, abs=0.01), waits
    assert waits.checks_s == 0.0
    assert waits.cause() == "host"


async def test_a_cpu_wait_in_the_checks_room_their_timer_ended_is_not_the_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel kept the loop thread 0.3 s from a CPU during the checks' room (a busy
    machine), the round's timer still cut the probes on time: that wait lengthened
    nothing, the providers' 0.2 s held the round. Before, the round's CPU wait (0.3 s, read
    at its start and end only) was the host's. The kernel's figures are scripted here (by
    loop time): a machine's CPU wait is not made to order."""
    kernel = {"waited": 1.0}
    monkeypatch.setattr(late, "cpu_waited_s", lambda now: kernel["waited"])
    loop = asyncio.get_running_loop()
    timer = in_room()
    kernel["waited"] += 0.3  # in the room, before its timer was due
    timer.checked(100.6, 0.6)
    timer.fetched(100.8)
    waits = timer.finish(loop.time(), 100.81)
    assert waits.cpu_wait_s == pytest.approx(0.0), waits
    assert waits.cause() == "providers", waits


async def test_a_providers_wait_before_the_reserve_is_not_theirs() -> None:
    """The checks were done 0.4 s into a 1 s slot (a fast target), a hung provider was
    waited for until the round's timer (0.95 s: the reserve, 0.1 s, began at 0.9 s), and
    the loop blocked 0.2 s from 0.92 s, so the timer fired 0.17 s late and the round
    overran. What the wait took of the reserve is the providers' (0.05 s); the timer's
    lateness is the host's. Counted whole (less the stall), the wait named the providers
    (0.52 s against the host's 0.2 s)."""
    loop = asyncio.get_running_loop()
    timer = in_room()
    timer.checked(100.4, 0.9)
    time.sleep(0.2)  # noqa: ASYNC251 (the stall, across the timer's due time, on purpose)
    timer.fetched(101.12, reserve_from=100.9, timer_due=100.95)
    waits = timer.finish(loop.time(), 101.13)
    assert waits.providers_s == pytest.approx(0.05, abs=0.02), waits
    assert waits.stalled_s == pytest.approx(0.17, abs=0.02), waits
    assert waits.cause() == "host", waits


async def test_a_stall_before_a_provider_waits_timer_was_due_lengthened_nothing() -> None:
    """The wait's timer fired on time (0.95 s); the loop blocked 0.03 s before: neither
    the host's nor taken off the providers' part of the reserve, as in the checks' room."""
    loop = asyncio.get_running_loop()
    timer = in_room()
    timer.checked(100.9, 0.9)
    time.sleep(0.03)  # noqa: ASYNC251 (the stall, before the timer was due, on purpose)
    timer.fetched(100.95, reserve_from=100.9, timer_due=100.95)
    waits = timer.finish(loop.time(), 100.96)
    assert waits.providers_s == pytest.approx(0.05, abs=0.005), waits
    assert waits.stalled_s < 0.01, waits


async def test_a_cpu_wait_before_a_provider_waits_timer_was_due_is_not_the_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kernel's count, alike: 0.3 s of waiting for a CPU in a hung provider's wait,
    its timer on time, lengthened nothing (scripted, as a machine's is not made to order)."""
    kernel = {"waited": 1.0}
    monkeypatch.setattr(late, "cpu_waited_s", lambda now: kernel["waited"])
    loop = asyncio.get_running_loop()
    timer = in_room()
    timer.checked(100.4, 0.9)
    kernel["waited"] += 0.3  # in the wait, before its timer was due
    timer.fetched(100.95, reserve_from=100.9, timer_due=100.95)
    waits = timer.finish(loop.time(), 100.96)
    assert waits.cpu_wait_s == pytest.approx(0.0), waits


async def test_answers_that_came_before_the_reserve_took_none_of_it() -> None:
    """Every answer in at 0.6 s of a 1 s slot: the round's own work then had the whole
    reserve, and the wait holds no overrun; one that took 0.05 s of it is the providers'."""
    for answered, part in ((100.6, 0.0), (100.95, 0.05)):
        loop = asyncio.get_running_loop()
        timer = in_room()
        timer.checked(100.4, 0.9)
        timer.fetched(answered, reserve_from=100.9)
        waits = timer.finish(loop.time(), answered + 0.01)
        assert waits.providers_s == pytest.approx(part, abs=0.005), (answered, waits)


def test_a_timed_waits_lateness_past_its_timer_is_the_stall_that_lengthened_it() -> None:
    assert timed_wait(1.4, 0.5, 1.0) == pytest.approx(0.1)  # 0.4 of the 0.5 held it
    assert timed_wait(1.4, 0.3, 1.0) == 0.0  # all of it at the end: all lengthened it
    assert timed_wait(1.0, 0.0, 1.0) == 0.0


async def test_setting_up_before_the_round_was_due_is_not_its_lateness() -> None:
    # registered with a deployed_at 5 s back: the watch began at 105.0, in slot 16 (due
    # 104.8): of its 0.2 s setting up, nothing came before that slot was due
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    timer.began(lag, 105.0)
    timer.ready(105.2, baselines_s=0.15)
    timer.start(lag, loop.time(), 105.2, 105.1)
    assert timer.waits.providers_s == pytest.approx(0.075, abs=0.01)  # half of it past due
    assert timer.waits.store_s == pytest.approx(0.025, abs=0.01)


async def test_a_lease_renewal_awaited_is_the_stores_cause() -> None:
    waits = timed(lease_s=0.6, given=0.05, checks_s=0.05)
    assert waits.store_s == pytest.approx(0.6, abs=0.05)
    assert waits.cause() == "store"


async def test_the_previous_rounds_write_holding_the_start_is_the_stores_cause() -> None:
    # the round before was done at 99.95, its write (awaited before this round starts)
    # ended at 100.7, past this round's due time 100.0: held 0.7 s; it started at 100.72
    waits = timed(due=100.0, at=100.72, finished_at=99.95, settled_at=100.7, given=0.05)
    assert waits.store_s == pytest.approx(0.7, abs=0.01)
    assert waits.stalled_s == pytest.approx(0.02, abs=0.01)  # woken late by the loop
    assert waits.cause() == "store"


async def test_a_write_awaited_through_a_blocked_loop_is_the_hosts_not_the_stores() -> None:
    """The round before's write was done, but the loop, blocked, saw it only 0.3 s later:
    the held start is the loop's stall, not the store's."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    timer.ready(99.0)
    timer.start(lag, loop.time(), 99.7, 99.7)
    timer.finish(loop.time(), 99.95)
    time.sleep(0.3)  # noqa: ASYNC251 (the blocking call on the loop, on purpose)
    timer.settled(100.25)
    timer.start(lag, loop.time(), 100.25, 100.0)
    waits = timer.finish(loop.time(), 100.3)
    assert waits.store_s < 0.1, waits
    assert waits.stalled_s >= 0.2, waits
    assert waits.cause() == "host"


class SetLag:
    """A `LoopLag` whose stall so far the test sets (`total`), as a heartbeat counts it."""

    def __init__(self) -> None:
        self.stalled = 0.0

    def total(self) -> float:
        return self.stalled


async def test_a_write_a_busy_thread_delayed_holding_the_next_start_is_the_hosts() -> None:
    """CI's figures (`test_a_blocked_loop_is_the_hosts_cause[busy-thread]`): a thread
    held the GIL through round 2 (the loop stalled 0.32 s of it) while round 1's write
    went on beside it, starved of the GIL as the loop was; it was done 0.041 s after
    round 2 ended, round 3's due time past, the loop on time meanwhile (0.0004 s). Its
    own time held nothing: without the stall it was done before round 2 ended. Named
    the store's (store 0.041 s, host 0.0004 s), the busy thread's overrun counted twice."""
    loop = asyncio.get_running_loop()
    lag = SetLag()
    timer = RoundTimer()
    timer.ready(100.0)
    timer.start(cast(LoopLag, lag), loop.time(), 100.0, 100.0)
    timer.finish(loop.time(), 100.29)
    timer.settled(100.29)  # no write before round 1's
    timer.writing(100.29)  # round 1's
    timer.start(cast(LoopLag, lag), loop.time(), 100.3, 100.3)
    lag.stalled += 0.317  # the busy thread
    timer.finish(loop.time(), 100.974)  # round 2 overran by 0.374 s: the host's
    lag.stalled += 0.0004
    timer.settled(101.015)  # round 1's write, 0.041 s past round 2's end
    timer.writing(101.015)
    timer.start(cast(LoopLag, lag), loop.time(), 101.015, 100.6)
    waits = timer.finish(loop.time(), 101.3)
    assert waits.store_s == pytest.approx(0.0, abs=1e-9), waits
    assert waits.stalled_s == pytest.approx(0.041, abs=1e-6), waits
    assert waits.cause() == "host"


async def test_a_slow_write_through_a_short_stall_is_still_the_stores() -> None:
    """A write on a slow disk (0.7 s) through which the loop stalled 0.05 s: the 0.65 s
    the stall does not explain of its 0.7 s hold is the store's."""
    loop = asyncio.get_running_loop()
    lag = SetLag()
    timer = RoundTimer()
    timer.ready(99.7)
    timer.start(cast(LoopLag, lag), loop.time(), 99.7, 99.7)
    timer.writing(99.72)  # the round before's, stored as this one ran
    lag.stalled += 0.05
    timer.finish(loop.time(), 99.95)
    timer.settled(100.7)
    timer.start(cast(LoopLag, lag), loop.time(), 100.7, 100.0)
    waits = timer.finish(loop.time(), 100.75)
    assert waits.store_s == pytest.approx(0.65, abs=1e-6), waits
    assert waits.cause() == "store"


async def test_lateness_carried_from_the_previous_overrun_is_not_counted_again() -> None:
    # the round before ran to 100.5 (its own overrun, counted there): no part of this one's
    waits = timed(due=100.0, at=100.5, finished_at=100.5, settled_at=100.5, given=0.05)
    assert waits.store_s == 0.0
    assert waits.stalled_s == pytest.approx(0.0, abs=0.01)


async def test_a_blocked_loop_is_the_hosts_cause_not_the_checks() -> None:
    """A blocking call on the loop during the checks: they end late, but by the loop's
    stall, which is the host's (the heartbeat sees it: `checks.lag.LoopLag`)."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    timer = RoundTimer()
    timer.ready(100.0)
    timer.start(lag, loop.time(), 100.0, 100.0)
    timer.leased(100.0)
    time.sleep(0.3)  # noqa: ASYNC251 (the blocking call on the loop, on purpose)
    timer.checked(100.3, 0.05)  # 0.25 s past their time, all of it the loop's
    timer.fetched(100.3)
    waits = timer.finish(loop.time(), 100.3)
    assert waits.stalled_s >= 0.2, waits
    assert waits.checks_s < 0.05, waits
    assert waits.cause() == "host"


def test_nothing_held_it_but_its_own_work_names_the_host() -> None:
    assert RoundWaits().cause() == "host"
    assert RoundWaits(cpu_wait_s=0.3, checks_s=0.2).cause() == "host"


def test_the_words_and_the_stored_summary_name_the_cause_and_every_part() -> None:
    waits = RoundWaits(checks_s=1.2, providers_s=0.01, store_s=0.0, stalled_s=0.1, cpu_wait_s=0.05)
    said = waits.words()
    assert said.startswith("cause checks: they ran 1.200s past"), said
    assert said.endswith("; other parts: host 0.100s, providers 0.010s, store 0.000s"), said
    host = RoundWaits(stalled_s=0.9, cpu_wait_s=0.6).words()
    assert "loop was 0.900s late to run" in host and "waited 0.600s for a CPU" in host, host
    assert "for a CPU" not in RoundWaits(stalled_s=0.9).words()  # not measured
    kept = waits.summary(0.4)
    assert kept["cause"] == "checks" and kept["by_s"] == 0.4
    assert kept["checks_s"] == 1.2 and kept["host_s"] == 0.1 and kept["cpu_wait_s"] == 0.05


def test_the_metrics_causes_are_the_ones_named() -> None:
    assert set(OVERRUN_CAUSES) == set(CAUSES)


def test_the_loop_threads_cpu_wait_is_read_once_per_shared_instant() -> None:
    first = cpu_waited_s(1000.0)
    if first is None:
        pytest.skip("the kernel says nothing of a thread's CPU wait here")
    assert first >= 0.0
    sum(range(200_000))  # a little CPU between: the same instant gives the same reading
    assert cpu_waited_s(1000.001) == first
    later = cpu_waited_s(1001.0)
    assert later is not None and later >= first

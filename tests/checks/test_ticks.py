"""The shared grid of probe starts and deadlines: never early, at most a tick late, one loop
timer for many moments."""

from __future__ import annotations

import asyncio
import time

from checks.ticks import TICK_S, ticks


async def test_callbacks_run_in_time_order_never_early_and_at_most_a_tick_late() -> None:
    loop = asyncio.get_running_loop()
    grid = ticks()
    assert ticks() is grid  # one per loop
    now = loop.time()
    seen: list[tuple[int, float]] = []
    timers: dict[int, float] = {}  # a plain loop timer at each moment: the loop's own lateness
    moments = [now + d for d in (0.03, 0.001, 0.0205, 0.001, 0.05)]
    for i, when in enumerate(moments):
        grid.at(when, lambda i: seen.append((i, loop.time())), i)
        loop.call_at(when, lambda i: timers.setdefault(i, loop.time()), i)
    await asyncio.sleep(0.1)
    assert [i for i, _ in seen] == [1, 3, 2, 0, 4]
    for i, at in seen:
        assert at >= moments[i]
        # a tick past a loop timer at the same moment, and a tick for the turn after: the
        # grid's own lateness, where a fixed 50 ms for the loop's was a loaded machine's bet
        assert at - timers[i] < 2 * TICK_S, (at - moments[i], timers[i] - moments[i])
    assert len(grid) == 0


async def test_a_broken_callback_does_not_starve_the_others() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    seen: list[int] = []

    def broken(_: object) -> None:
        raise RuntimeError("boom")

    now = loop.time()
    ticks().at(now + 0.01, broken, None)
    ticks().at(now + 0.01, seen.append, 2)
    await asyncio.sleep(0.05)
    assert seen == [2] and len(errors) == 1


async def test_starts_a_stall_made_late_keep_their_spacing_and_moments_run_at_once() -> None:
    """Probe starts (`start_at`) that fell due while the loop was stalled run the stall's
    length after their moments, one step apart as planned, not all in the turn that ends
    the stall (a bunch of the agent's own requests queued at the target); a moment (`at`,
    a deadline) due in the stall runs in that turn. Bounds only from below: a callback
    never runs before its (moved) tick, however busy the machine."""
    loop = asyncio.get_running_loop()
    grid = ticks()
    seen: list[tuple[str, float]] = []
    now = loop.time()
    starts = [now + 0.02 + 0.03 * k for k in range(4)]  # all due within the stall
    for k, when in enumerate(starts):
        grid.start_at(when, lambda k: seen.append((f"start{k}", loop.time())), k)
    grid.at(now + 0.06, lambda _: seen.append(("deadline", loop.time())), None)
    time.sleep(0.2)  # noqa: ASYNC251 - the loop stalls: every moment above falls due
    await asyncio.sleep(0.3)
    order = [name for name, _ in seen]
    assert order == ["start0", "deadline", "start1", "start2", "start3"], seen
    ran = dict(seen)
    for k in range(1, 4):
        # spaced as planned (a tick's rounding either side), from the first
        assert ran[f"start{k}"] - ran["start0"] >= starts[k] - starts[0] - 2 * TICK_S, seen
    assert len(grid) == 0


async def test_a_moved_start_late_again_runs_when_its_turn_comes() -> None:
    """A start is moved once at most: stalled again past its new moment, it runs in the
    turn that ends that stall, before a deadline due after its new moment (a loop stalled
    all the time must not keep pushing its probes on). Told by order, not by time."""
    loop = asyncio.get_running_loop()
    grid = ticks()
    seen: list[str] = []
    first = loop.time() + 0.01
    grid.start_at(first, lambda _: seen.append("start0"), None)
    grid.start_at(first + 0.2, lambda _: seen.append("start1"), None)
    time.sleep(0.25)  # noqa: ASYNC251 - both due: the first runs after it, the second moves
    while not seen:  # noqa: ASYNC110 - a turn at a time, until the grid's timer ran
        await asyncio.sleep(0)
    moved = first + 0.2 + (loop.time() - first)  # or a little earlier (read after the fire)
    assert seen == ["start0"] and len(grid) == 1
    grid.at(moved + 0.06, lambda _: seen.append("deadline"), None)
    time.sleep(max(0.0, moved + 0.15 - loop.time()))  # noqa: ASYNC251 - late again, past both
    await asyncio.sleep(0.3)
    assert seen == ["start0", "start1", "deadline"]
    assert len(grid) == 0

"""The shared grid of probe starts and deadlines: never early, at most a tick late, one loop
timer for many moments."""

from __future__ import annotations

import asyncio

from checks.ticks import TICK_S, ticks


async def test_callbacks_run_in_time_order_never_early_and_at_most_a_tick_late() -> None:
    loop = asyncio.get_running_loop()
    grid = ticks()
    assert ticks() is grid  # one per loop
    now = loop.time()
    seen: list[tuple[int, float]] = []
    moments = [now + d for d in (0.03, 0.001, 0.0205, 0.001, 0.05)]
    for i, when in enumerate(moments):
        grid.at(when, lambda i: seen.append((i, loop.time())), i)
    await asyncio.sleep(0.1)
    assert [i for i, _ in seen] == [1, 3, 2, 0, 4]
    for i, at in seen:
        assert at >= moments[i]
        assert at - moments[i] < TICK_S + 0.05  # a tick, plus a busy test machine's lateness
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

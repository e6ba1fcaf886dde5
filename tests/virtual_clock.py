"""A `BackgroundProber`'s own clock (its `sleep` and `monotonic`) for tests: time moves only
when the test says, to the earliest wake-up, so a busy machine's scheduler cannot reorder
runs or stretch the time between them."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import TypeVar

from agent.windows.probing import BackgroundProber, EnvironmentProbe

P = TypeVar("P", bound=BackgroundProber)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    def _wake_next(self, until: float) -> bool:
        """Wake the earliest sleeper if it is due by `until` (its time then `now`)."""
        if not self.sleepers or self.sleepers[0][0] > until:
            return False
        self.now, _, woken = heapq.heappop(self.sleepers)
        woken.set_result(None)
        return True

    async def advance(self, until: float, *, settle: int) -> None:
        """Wake every sleeper due by `until` in the order of its time, each after `settle`
        loop steps let every task run on to its next sleep (no real I/O between)."""
        while True:
            for _ in range(settle):
                await asyncio.sleep(0)
            if not self._wake_next(until):
                return

    async def run_until(self, end: float, tasks: int) -> None:
        """Wake the sleepers in turn until the next wakes after `end`; `tasks`: how many
        wait on the clock between runs (a run's own I/O happens in real time)."""
        while True:
            for _ in range(2000):  # every task on to its next sleep (10 s at most)
                if len(self.sleepers) >= tasks:
                    break
                await asyncio.sleep(0.005)
            else:
                raise AssertionError("a task never slept again")
            if not self._wake_next(end):
                return


def on_clock(prober: type[P], probes: dict[str, EnvironmentProbe], clock: VirtualClock) -> P:
    """A prober of `probes` on `clock`, never busy, with no store (its `probe_once`
    records what it would have run)."""
    return prober(
        probes,
        store=None,  # type: ignore[arg-type]
        busy=lambda _: False,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )

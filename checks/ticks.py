"""One loop timer for many moments: probe starts and probe deadlines on a coarse grid.

No I/O, only the event loop's clock. Why: asyncio keeps its timers in a heap ordered by
a Python `__lt__`, and a cancelled timer stays there until it comes up; thousands of
probes a second, each with a start timer, a request deadline and the registry's safety
net, made that heap the agent's busiest code (and each probe its own loop wake-up).
Here, callbacks due in the same `TICK_S` share a bucket, the loop holds one timer for
the earliest bucket, and probes due together start in one loop iteration.

A callback never runs early, and at most `TICK_S` (plus the loop's own lateness) late.
There is no cancel: a callback checks whether it still has work, which costs less than
cancelling thousands of timers that almost never fire.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Any

from checks.lag import LoopLag

TICK_S = 0.005
"""The grid: a probe starts or times out at most this much after its moment."""
_PER_S = 1 / TICK_S


class Ticks:
    """Callbacks by due tick on one loop (`ticks()` gives the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, list[tuple[Callable[[Any], None], Any]]] = {}
        self._heap: list[int] = []  # due ticks, ints: compared in C
        self._timer: asyncio.TimerHandle | None = None
        self._armed: int | None = None
        self._firing = False
        self.lag = LoopLag(loop)
        """This loop's own lateness (probes read it at their start and end)."""

    def at(self, when: float, callback: Callable[[Any], None], arg: Any) -> None:
        """Call `callback(arg)` once the loop's clock reaches `when` (never before)."""
        tick = math.ceil(when * _PER_S)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = []
            heapq.heappush(self._heap, tick)
            if not self._firing and (self._armed is None or tick < self._armed):
                self._arm(tick)
        bucket.append((callback, arg))

    def __len__(self) -> int:
        """Callbacks waiting (tests, and a bound on what lingers)."""
        return sum(len(b) for b in self._buckets.values())

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed = tick
        self._timer = self._loop.call_at(tick * TICK_S, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed = None
        self._firing = True
        try:
            # the loop may run a timer up to its clock resolution early: round that away
            due = math.floor((self._loop.time() + 1e-6) * _PER_S)
            heap = self._heap
            while heap and heap[0] <= due:
                for callback, arg in self._buckets.pop(heapq.heappop(heap)):
                    try:
                        callback(arg)
                    except Exception as exc:  # one broken callback must not starve the rest
                        self._loop.call_exception_handler(
                            {"message": "tick callback failed", "exception": exc}
                        )
        finally:
            self._firing = False
            if self._heap:
                self._arm(self._heap[0])


_last: tuple[asyncio.AbstractEventLoop, Ticks] | None = None
_by_loop: dict[int, tuple[asyncio.AbstractEventLoop, Ticks]] = {}


def ticks() -> Ticks:
    """The running loop's `Ticks` (one per loop, made on first use)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    found = _by_loop.get(id(loop))
    if found is None or found[0] is not loop:
        for key in [k for k, (other, _) in _by_loop.items() if other.is_closed()]:
            del _by_loop[key]  # loops are few (one per test or `asyncio.run`): swept here
        found = _by_loop[id(loop)] = (loop, Ticks(loop))
    _last = found
    return found[1]

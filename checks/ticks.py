"""One loop timer for many moments: probe starts and probe deadlines on a coarse grid.

No I/O, only the event loop's clock. Why: asyncio keeps its timers in a heap ordered by
a Python `__lt__`, and a cancelled timer stays there until it comes up; thousands of
probes a second, each with a start timer, a request deadline and the registry's safety
net, made that heap the agent's busiest code (and each probe its own loop wake-up).
Here, callbacks due in the same `TICK_S` share a bucket, the loop holds one timer for
the earliest bucket, and probes due together start in one loop iteration.

A callback never runs early, and at most `TICK_S` (plus the loop's own lateness) late;
a probe's start (`start_at`) that a stall of the loop made late runs as late as the stall,
its spacing from the other starts kept (`Ticks.start_at` says why). There is no cancel: a
callback checks whether it still has work, which costs less than cancelling thousands of
timers that almost never fire.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from typing import Any

from checks.lag import SLACK_S, LoopLag

TICK_S = 0.005
"""The grid: a probe starts or times out at most this much after its moment."""
_PER_S = 1 / TICK_S

_MOMENT, _START, _MOVED = 0, 1, 2
"""What a callback is: a moment (a deadline: run as soon as due), a probe's start (moved on
by a stall that made it late, `Ticks.start_at`), or a start moved once already."""


class Ticks:
    """Callbacks by due tick on one loop (`ticks()` gives the running loop's)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, list[tuple[Callable[[Any], None], Any, int]]] = {}
        self._heap: list[int] = []  # due ticks, ints: compared in C
        self._timer: asyncio.TimerHandle | None = None
        self._armed: int | None = None
        self._firing = False
        self.lag = LoopLag(loop)
        """This loop's own lateness (probes read it at their start and end)."""
        self.late_s = 0.0
        """While a start (`start_at`) runs: how long after its moment the grid ran it, the
        moment it was moved to after a stall, or for the first start due in a stall, the
        stall's end (0 otherwise): past `SLACK_S`, it went out in a bunch of the agent's
        own requests, late again after it was moved (`EnvironmentProbe` drops its
        latency). 0 in any other callback."""

    def at(self, when: float, callback: Callable[[Any], None], arg: Any) -> None:
        """Call `callback(arg)` once the loop's clock reaches `when` (never before)."""
        self._put(math.ceil(when * _PER_S), callback, arg, _MOMENT)

    def start_at(self, when: float, callback: Callable[[Any], None], arg: Any) -> None:
        """`at`, for a probe's start: when a stall of the loop (over `SLACK_S`) made it
        late, it runs the stall's length after its moment, so the starts that fell due
        in the stall keep their spacing (the first runs at once, the next a step after
        it, ...) instead of all running in the turn that ends it. Why: a bunch of the
        agent's own requests queues at the target, and each keeps the queue as its
        latency: the target's time, but made by the agent's lateness, where the baseline
        was probed at the schedule's spacing (bench/footprint.py --probe-times, 100
        windows at load >= 8: the probes started 10 ms or more late, written behind up
        to 50 of the agent's own requests, made 67-76% of the latencies over the p95,
        and failed A/A windows' `latency_p95 max_increase`). Moved once at most: a start
        late again (a loop stalled all the time) runs when its turn comes, however late
        (the round's deadline gives it its room from its start), and says so (`late_s`)."""
        self._put(math.ceil(when * _PER_S), callback, arg, _START)

    def _put(self, tick: int, callback: Callable[[Any], None], arg: Any, kind: int) -> None:
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = []
            heapq.heappush(self._heap, tick)
            if not self._firing and (self._armed is None or tick < self._armed):
                self._arm(tick)
        bucket.append((callback, arg, kind))

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
            now = self._loop.time()
            # the loop may run a timer up to its clock resolution early: round that away
            due = math.floor((now + 1e-6) * _PER_S)
            # how late the first start due runs, in ticks: what a stall owes each start
            # due with it (a start's tick is never in the past when it is put)
            shift: int | None = None
            heap = self._heap
            while heap and heap[0] <= due:
                tick = heapq.heappop(heap)
                for callback, arg, kind in self._buckets.pop(tick):
                    if kind == _START:
                        if shift is None:
                            shift = due - tick if now - tick * TICK_S > SLACK_S else 0
                        if tick + shift > due:
                            self._put(tick + shift, callback, arg, _MOVED)  # armed below
                            continue
                        self.late_s = max(0.0, now - (tick + shift) * TICK_S)
                    elif kind == _MOVED:
                        self.late_s = max(0.0, now - tick * TICK_S)
                    try:
                        callback(arg)
                    except Exception as exc:  # one broken callback must not starve the rest
                        self._loop.call_exception_handler(
                            {"message": "tick callback failed", "exception": exc}
                        )
                    finally:
                        self.late_s = 0.0
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

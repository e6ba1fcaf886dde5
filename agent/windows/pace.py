"""The clock a window's rounds are paced by: the wall clock as read when its watch started,
moved on by the monotonic clock since; or the store's, when it has one.

A window's slots are wall-clock instants (`deployed_at + k × interval`, `ends_at`), but
within a watch the time between them is measured, not read: a wall clock stepped
forward (an NTP step) made a watch pass over every slot up to the stepped time and end
the window at once, on a few of the rounds it promised (10 slots, step of 2 s: slots
0, 1, 2, 8, 9), and one stepped back held every round back by the step. Read once a
watch, not once a process: a window registered after a step, by the stepped clock, runs
at once (read once a process, a step of 2 minutes held every new window 2 minutes, and
a resumed VM's by its whole sleep). A watch started again (a restart, a takeover, a
pause past its lease) reads the wall clock again: it cannot tell a step from the time it
was down. With a store that has a clock of its own (PostgreSQL), every watch follows the
store's instead (`anchor`, every few seconds), so every replica judges a window's slots
and end by one clock: a replica whose clock is off, or steps, neither runs a window's
rounds early nor ends it before its time. Leases stay on the wall clock (`store.lease`:
keep the replicas' clocks within it of each other).
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_ROUND_TRIP_S = 0.2
"""A reading of the store's clock is trusted within half its round trip: one slower than
this (a busy pool, a loaded machine) is left out."""
TOLERANCE_S = 0.1
"""How far off the store's clock the pace may be before it follows it: a step is seconds,
and following every reading would move the pace back and forth by its round trip."""


class SteadyClock:
    """`wall()` at construction plus the `monotonic()` seconds since: never steps."""

    def __init__(
        self, wall: Callable[[], float], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self._offset = wall() - monotonic()
        self.anchored = False
        """Whether it follows another clock (`anchor`): watches share it then."""

    def __call__(self) -> float:
        return self._offset + self._monotonic()

    def now_or(self, own: Callable[[], float]) -> float:
        """The time by the store's clock once this one follows it (`anchored`), else by
        `own`, this replica's: what instants are stamped and compared with a window's
        slots by, so a replica whose clock is off agrees with the others all the same."""
        return self() if self.anchored else own()

    def for_a_watch(self, wall: Callable[[], float], monotonic: Callable[[], float]) -> SteadyClock:
        """What a watch starting now paces its rounds by: this clock once it follows the
        store's (`anchored`), else one of the watch's own, `wall` read now."""
        return self if self.anchored else SteadyClock(wall, monotonic)

    def anchor(self, reference: float, sent: float, answered: float) -> bool:
        """Follow `reference`, another clock (the store's) read between the monotonic
        instants `sent` and `answered`, when this one is off it by more than a round trip's
        jitter; a reading whose round trip was slow says too little. True when it moved."""
        if answered - sent > MAX_ROUND_TRIP_S:
            return False
        self.anchored = True
        offset = reference - (sent + answered) / 2
        if abs(offset - self._offset) <= TOLERANCE_S:
            return False
        self._offset = offset
        return True

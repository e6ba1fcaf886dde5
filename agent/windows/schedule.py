"""A window's fixed round schedule: round slot k is due at `deployed_at + k × interval`.

Pure: no I/O and no clock of its own (callers pass the time), so the watcher, a
restarted agent and the tests agree on which slot is due. A late round never makes
the rounds after it late too: each is due on the schedule, not after its predecessor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_ROUND_S = 0.05
"""The shortest a round's probes are spread over (a round that starts at the very end)."""
RESERVE_FRACTION = 0.1
RESERVE_MAX_S = 1.0
"""What the checks leave of a slot for the round's providers, judge and store write:
a tenth of the interval, at most a second."""


def round_reserve(interval: float) -> float:
    """What a round of `interval` leaves for its providers, judge and store write."""
    return min(RESERVE_FRACTION * interval, RESERVE_MAX_S)


@dataclass(frozen=True, slots=True)
class RoundSchedule:
    start: float
    """`deployed_at`: slot 0 is due then."""
    interval: float
    end: float
    """`ends_at`: the last slot is the one due before it."""

    def __post_init__(self) -> None:
        assert self.interval > 0, "an interval is more than 0 s (validated in the settings)"

    @property
    def slots(self) -> int:
        """How many rounds the window holds (at least one)."""
        return max(1, math.ceil((self.end - self.start) / self.interval - 1e-9))

    def due(self, slot: int) -> float:
        return self.start + slot * self.interval

    def slot_at(self, at: float) -> int:
        """The slot whose interval holds `at` (0 before the start)."""
        return max(0, math.floor((at - self.start) / self.interval + 1e-9))

    def next_slot(self, after: int | None, now: float) -> int:
        """The slot to run next: the one after `after` (None: none run yet in this
        process), or, when `now` is already past it (a restart, a round that overran
        a whole interval), the slot `now` falls in. Slots passed over are not run;
        after the window's end, the last slot (the final round, late)."""
        first = 0 if after is None else after + 1
        return max(first, min(self.slot_at(now), self.slots - 1))

    def rounds_from(self, at: float) -> int:
        """The rounds a window registered at `at` runs at most: the slot `at` falls in (run
        late) to the last. One registered after its start passes over the slots already
        past (`next_slot`): half-way into its window, it runs half its rounds."""
        return self.slots - min(self.slot_at(at), self.slots - 1)

    def ends(self, slot: int) -> float:
        """When `slot`'s round must be done: the next slot's due time, or the window's end."""
        return min(self.due(slot + 1), self.end)

    def is_last(self, slot: int) -> bool:
        return slot >= self.slots - 1

    @property
    def reserve(self) -> float:
        return round_reserve(self.interval)

    def length(self, slot: int, now: float) -> float:
        """How long the checks of the round started at `now` have: what is left of its
        slot, less the reserve for judging and storing it."""
        return max(MIN_ROUND_S, self.ends(slot) - now - self.reserve)


def probe_step(length: float, interval: float, room: float, runs: int) -> float:
    """How far apart a round's `runs` probes start, given the `length` its slot has left for
    the checks (`RoundSchedule.length`), its environment's `interval` and each probe's
    `room`: on time, over the part of the round that leaves the last one its room; in a
    round that starts late (a watch resumed mid-slot by a restart or a takeover, a round
    after an overrun), at the on-time step still, as far as it fits in what is left, else
    over all of it (a slow target's last answer may come its room past the slot).

    Why: the step was what was left less the room, so a round left less than its room
    wrote all its probes in one instant, and a target whose accept queue is short
    (`python -m http.server`'s 5, the README's walkthrough's) dropped the connects past
    it: each a timeout charged to the service (a round resumed 0.7 s into a 1 s slot
    after a kill -9: 8 of 40 probes, the kernel's ListenOverflows up by 8). A single run
    cannot bunch: its step (its phase's span) is as it was."""
    plain = max(0.0, length - room) / runs
    if runs <= 1:
        return plain
    reserve = round_reserve(interval)
    on_time = max(0.0, interval - reserve - room) / runs
    return max(plain, min(on_time, length / runs))


def round_timing(
    schedule: RoundSchedule, slot: int, started: float, lag: float, now: float
) -> dict[str, float | int]:
    """What a stored round summary says of its timing: its slot, when it was due, when
    it really started, how late, and how long its work took (up to `now`)."""
    return {
        "slot": slot,
        "due_at": round(schedule.due(slot), 6),
        "started_at": round(started, 6),
        "lag_s": round(lag, 6),
        "duration_s": round(max(0.0, now - started), 6),
    }


def overrun_s(
    schedule: RoundSchedule, slot: int, finished: float, *, started: float | None = None
) -> float:
    """How far past its slot a round finished (0 when it fit). A round `started` after its
    slot had ended (the last one, run by an agent restarted after the window's end) is
    given the shortest round and its reserve from its start: the time before is downtime,
    which was logged as that round overrunning its slot by it."""
    deadline = schedule.ends(slot)
    if started is not None and started > deadline:
        deadline = started + MIN_ROUND_S + schedule.reserve
    return max(0.0, finished - deadline)


def stored_overrun_s(schedule: RoundSchedule, summary: dict[str, Any]) -> float:
    """How far past its slot a stored round finished (`round_timing`'s figures; 0 when
    they are missing): a resumed watch knows whether its window's overrun was logged."""
    slot, started, took = (summary.get(k) for k in ("slot", "started_at", "duration_s"))
    if not isinstance(slot, int) or started is None or took is None or schedule.is_last(slot):
        return 0.0  # the last round may wait past its slot on purpose (`held_last_round`)
    return overrun_s(schedule, slot, float(started) + float(took), started=float(started))

"""What naming an overrun's cause costs a round (`agent.windows.late.RoundTimer`): the
marks every round makes (start, lease, checks, providers, finish, its write), each
reading the loop's stall, and the CPU-wait readings at its start, its checks' start and
end, and its end, over many
rounds back to back on one loop, in this thread's CPU time (`time.thread_time`: a
loaded machine's time slices left out). Prints CPU microseconds per round; against a
round's own work (about a millisecond a window: `bench/footprint.py`'s CPU per
window-round) it should stay a few per cent at most.

    .venv/bin/python bench/round_marks.py [rounds]
"""

from __future__ import annotations

import asyncio
import sys
import time

from agent.windows.late import RoundTimer, cpu_waited_s
from checks.ticks import ticks


async def per_round_us(rounds: int) -> tuple[float, float]:
    """Microseconds a round for the marks, and for the CPU-wait reading alone unshared."""
    loop = asyncio.get_running_loop()
    timer = RoundTimer()
    timer.began(ticks().lag, 0.0)
    timer.ready(0.0)
    started = time.thread_time()
    for k in range(rounds):
        at = float(k)
        timer.start(ticks().lag, loop.time(), at, at)
        timer.leased(at)
        timer.checked(at + 0.9, 0.9)
        timer.fetched(at + 0.95)
        timer.finish(loop.time(), at + 0.96)
        timer.settled(at + 0.96)
    marks = (time.thread_time() - started) / rounds * 1e6
    started = time.thread_time()
    for k in range(rounds):
        cpu_waited_s(float(k))  # a fresh instant each time: a read each time
    read = (time.thread_time() - started) / rounds * 1e6
    return marks, read


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    marks, read = asyncio.run(per_round_us(rounds))
    print(f"marks: {marks:.2f} us a round ({rounds} rounds, schedstat reads shared)")
    print(f"schedstat read alone: {read:.2f} us (the worst case: no round shares one)")


if __name__ == "__main__":
    main()

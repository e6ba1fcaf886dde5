"""What naming an overrun's cause costs a round (`agent.windows.late.RoundTimer`): the
marks every round makes (start, lease, checks, providers, finish, its write), each
reading the loop's stall, and the CPU-wait readings at its start, its checks' start and
end, and its end, and its store's thread's as its write begins (a SQLite writer's), over many
rounds back to back on one loop, in this thread's CPU time (`time.thread_time`: a
loaded machine's time slices left out). Prints CPU microseconds per round; against a
round's own work (about a millisecond a window: `bench/footprint.py`'s CPU per
window-round) it should stay a few per cent at most.

    .venv/bin/python bench/round_marks.py [rounds]
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from agent.windows.late import RoundTimer, cpu_waited_s, store_cpu_waited_s
from checks.ticks import ticks


class _Store:
    """A store whose writes run on a thread of its own, as SQLite's do."""

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread

    def write_thread(self) -> threading.Thread:
        return self.thread


async def per_round_us(rounds: int) -> tuple[float, float]:
    """Microseconds a round for the marks, and for the CPU-wait reading alone unshared."""
    loop = asyncio.get_running_loop()
    done = threading.Event()
    writer = threading.Thread(target=done.wait)
    writer.start()
    store = _Store(writer)
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
        store_cpu = store_cpu_waited_s(store, loop.time())
        timer.settled(at + 0.96, store_cpu)
        timer.writing(at + 0.96, store_cpu)
    marks = (time.thread_time() - started) / rounds * 1e6
    done.set()
    writer.join()
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

"""Why a round overran its slot: its checks, its providers, the store or the host.

An on-call who sees `postflight_round_overruns_total` rise needs to know what to fix: a
slow target, a slow Sentry, a slow disk, or a machine that starves the agent. A round's
time goes to four things the watch measures as it goes (`RoundTimer`):

- `store`: waits on the store: a lease renewal the round had to await, the previous
  round's write still going at this round's due time (written beside the checks, it is
  waited for before the next round starts; less the loop's stall over all of the write,
  which starved the store's thread too, and on Linux that thread's own wait for a CPU
  over it, the host's: `store_cpu_waited_s`), and a first round's reads and writes as its
  watch began;
- `checks`: the checks' time past what the round gave them (probes still in flight at the
  slot are carried to the next round, `agent.windows.carried`; a load check's last
  requests and a check that does not keep to the round are not);
- `providers`: what the wait for provider answers after the checks took of the round's
  reserve (the wait is cut half the reserve before the slot's end: the cause when the
  round's own work then needed that half; before the reserve it took nothing the round
  needed), and a window's first round's wait for their baselines, up to half
  its slot: the probes still get their room (`EnvironmentProbe.longest_round`), so a
  slow target then makes that round overrun;
- `host`: the agent's own loop late to run: its stall by `checks.lag.LoopLag`'s heartbeat
  (a blocking call on the loop, another thread holding the GIL, the loop's other work,
  a machine that gives it no CPU), and on Linux the loop thread's wait for a CPU by the
  kernel's count (`/proc/thread-self/schedstat`'s `run_delay`), whichever is more (a
  thread waiting for the GIL sleeps: only the heartbeat sees it). A stall during a wait
  is the host's, not the waited-for part's, except in a wait its own timer ended (the
  first round's wait for baselines, cut at its timeout, the checks' room, whose probes
  the round's timer cuts, and a round's wait for provider answers its timer cut:
  `timed_wait`), which a stall (or a wait for a CPU)
  before the timer was due lengthened by nothing. A wait for the store's lease renewal
  has no timer: a stall during it stays the host's.

The largest names the cause (the host when none held the round: its own work took it).
No clock of its own (the watch passes its pace's times); its only I/O is one `pread` of
the schedstat file (kept open per thread) at a round's start, its checks' start and end
(the room's CPU wait) and its end, and of the store's thread's as its write begins and is
awaited, shared by the rounds that start or end within `SHARED_S`: no syscall per probe,
a few hundred a second at most (the marks cost some 7 µs of CPU a round:
`bench/round_marks.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal, get_args

from checks.lag import SLACK_S, LoopLag
from checks.ticks import TICK_S

Cause = Literal["checks", "providers", "store", "host"]
CAUSES: tuple[Cause, ...] = get_args(Cause)

ON_TIME_S = TICK_S + SLACK_S
"""How late checks may end and still be on time: their deadlines fire on a 5 ms grid
(`checks.ticks`), read by a loop whose lateness under `SLACK_S` is no stall: a slow
target's probes, carried past the slot's end as designed, are not the checks' few milliseconds
past it when a busy machine makes the round overrun."""

SCHEDSTAT = "/proc/thread-self/schedstat"
SHARED_S = 0.005
"""A CPU-wait reading serves every round read within this much loop time of it (the
rounds of windows registered together start and end in the same loop turn)."""


class _Schedstat:
    """A thread's schedstat file, open (closed with the thread's local data, or with the
    thread object it is kept for)."""

    __slots__ = ("__weakref__", "at", "fd", "value")

    def __init__(self, path: str = SCHEDSTAT) -> None:
        self.at = float("-inf")
        self.value: float | None = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # not Linux, or a kernel without schedstats
            self.fd = -1

    def read(self, now: float) -> float | None:
        if now - self.at < SHARED_S:
            return self.value
        self.at = now
        if self.fd < 0:
            return None
        try:  # "<run ns> <run_delay ns> <timeslices>"
            self.value = int(os.pread(self.fd, 96, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            self.close()
            self.value = None
        return self.value

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at the interpreter's exit too
            self.close()


class _PerThread(threading.local):
    schedstat: _Schedstat | None = None


_here = _PerThread()
_workers: weakref.WeakKeyDictionary[threading.Thread, _Schedstat] = weakref.WeakKeyDictionary()
"""Other threads' files (a store's worker), each kept while its thread object lives."""


def _forked() -> None:
    # a child's thread is another task: its file is its own, and the parent's threads
    # are not in it
    _here.schedstat = None
    _workers.clear()


os.register_at_fork(after_in_child=_forked)


def cpu_waited_s(now: float) -> float | None:
    """Seconds the calling thread has been ready to run but kept waiting for a CPU, by
    the kernel's count (Linux), read at most once per `SHARED_S` of `now` (the loop's
    time); None where the kernel does not say."""
    reader = _here.schedstat
    if reader is None:
        reader = _here.schedstat = _Schedstat()
    return reader.read(now)


def thread_cpu_waited_s(thread: threading.Thread | None, now: float) -> float | None:
    """`cpu_waited_s` of `thread` (None: the calling thread), from the loop's thread: its
    file (`/proc/self/task/<tid>/schedstat`) kept open while the thread object lives,
    read at most once per `SHARED_S` of `now`; None where the kernel does not say, or
    the thread has ended."""
    if thread is None:
        return cpu_waited_s(now)
    reader = _workers.get(thread)
    if reader is None:
        tid = thread.native_id
        if tid is None:  # not started
            return None
        reader = _workers[thread] = _Schedstat(f"/proc/self/task/{tid}/schedstat")
    return reader.read(now)


def store_cpu_waited_s(store: object, now: float) -> float | None:
    """`thread_cpu_waited_s` of the thread that does `store`'s writes: its `write_thread()`
    (SQLite's writer, an aiosqlite thread), else the loop's own (PostgreSQL's, whose I/O
    is on the loop)."""
    write_thread = getattr(store, "write_thread", None)
    return thread_cpu_waited_s(write_thread() if write_thread is not None else None, now)


def _loop_now() -> float:
    """The running loop's time: `cpu_waited_s` shares a reading by it (no figure here)."""
    return asyncio.get_running_loop().time()


def timed_wait(waited_s: float, stalled_s: float, timeout_s: float) -> float:
    """Of a wait its timer ended after `waited_s`, the loop stalled `stalled_s` meanwhile,
    the stall that lengthened nothing: all but the timer's lateness (the wait was the
    waited-for part's up to its timeout, whatever the loop did before it was due).
    Counted as the host's and taken off the providers', that stall named a starved host
    for a provider's baselines that held the first round their full second (host 0.85 s,
    providers 0.68 s, in the slow-baseline e2e under two CPU hogs)."""
    lengthened = min(stalled_s, max(0.0, waited_s - timeout_s))
    return max(0.0, stalled_s - lengthened)


@dataclass(slots=True)
class RoundWaits:
    """What held one round, in seconds (the module's docstring says what each counts)."""

    checks_s: float = 0.0
    providers_s: float = 0.0
    store_s: float = 0.0
    stalled_s: float = 0.0
    """The agent's loop late to run during the round (`LoopLag`), and to start it."""
    cpu_wait_s: float | None = None
    """The loop thread's wait for a CPU during the round (None: not measured here)."""
    store_cpu_wait_s: float = 0.0
    """Of the round before's write that held this round's start, what its store's thread
    (SQLite's writer; PostgreSQL's is the loop's) waited for a CPU, past the loop's stall."""

    @property
    def host_s(self) -> float:
        return max(self.stalled_s, self.cpu_wait_s or 0.0) + self.store_cpu_wait_s

    def parts(self) -> dict[Cause, float]:
        return {
            "host": self.host_s,
            "checks": self.checks_s,
            "providers": self.providers_s,
            "store": self.store_s,
        }

    def cause(self) -> Cause:
        """The largest part; the host when nothing held the round but its own work (a
        judging step too long for the round's reserve is the agent's CPU)."""
        parts = self.parts()
        return max(parts, key=parts.__getitem__)  # the first of equals: the host

    def words(self) -> str:
        """The cause and every part's figure, for the overrun's log line."""
        cause = self.cause()
        cpu = "" if self.cpu_wait_s is None else f" and waited {self.cpu_wait_s:.3f}s for a CPU"
        if self.store_cpu_wait_s:
            cpu += f"; the store's thread waited {self.store_cpu_wait_s:.3f}s for a CPU"
        said = {
            "checks": f"they ran {self.checks_s:.3f}s past the time the round gave them (a"
            " load check's last requests, or a check that does not keep to the round)",
            "providers": f"the round waited {self.providers_s:.3f}s for their answers",
            "store": f"the round waited {self.store_s:.3f}s for it (a lease renewal, or the"
            " previous round's write)",
            "host": f"the agent's loop was {self.stalled_s:.3f}s late to run (a blocking"
            f" call on it, a thread holding the GIL, its other work or a busy machine){cpu}",
        }[cause]
        others = ", ".join(
            f"{name} {seconds:.3f}s" for name, seconds in self.parts().items() if name != cause
        )
        return f"cause {cause}: {said}; other parts: {others}"

    def summary(self, over: float) -> dict[str, Any]:
        """What the stored round keeps of its overrun (`overrun` in its summary)."""
        out: dict[str, Any] = {"by_s": round(over, 6), "cause": self.cause()}
        for name, seconds in self.parts().items():
            out[f"{name}_s"] = round(seconds, 6)
        if self.cpu_wait_s is not None:
            out["cpu_wait_s"] = round(self.cpu_wait_s, 6)
        if self.store_cpu_wait_s:
            out["store_cpu_wait_s"] = round(self.store_cpu_wait_s, 6)
        out["stalled_s"] = round(self.stalled_s, 6)
        return out


class RoundTimer:
    """A round's `RoundWaits`, marked as the watch goes through it: `start`, then
    `leased`, `checked`, `fetched` (each once, in that order, or not at all), then
    `finish`, and `settled` once the round before's store write is done (the watch waits
    for it before the next round). Each mark is the watch's pace time; each also reads the
    loop's stall (`LoopLag.total`: attributes, no syscall), so a stall during a wait is
    the host's."""

    __slots__ = (
        "_at",
        "_began",
        "_cpu",
        "_finished_at",
        "_first_stall",
        "_idle",
        "_idle_cpu",
        "_lag",
        "_room_cpu",
        "_setting_up",
        "_settle_stall",
        "_settled_at",
        "_stall",
        "_wait_cpu",
        "_write_at",
        "_write_began",
        "_write_cpu",
        "_write_cpu_began",
        "_write_stall",
        "waits",
    )

    def __init__(self) -> None:
        self.waits = RoundWaits()
        self._lag: LoopLag | None = None
        self._at = self._stall = self._first_stall = self._settle_stall = self._idle = 0.0
        self._cpu: float | None = None
        self._room_cpu: float | None = None
        self._wait_cpu: float | None = None
        self._idle_cpu = 0.0
        self._began: float | None = None
        self._finished_at: float | None = None
        self._settled_at: float | None = None
        self._setting_up: RoundWaits | None = None
        self._write_at: float | None = None
        self._write_began = 0.0  # the loop's stall (`LoopLag.total`) at `writing`
        self._write_stall = 0.0
        """The loop's stall over the whole of the write `settled` saw done."""
        self._write_cpu_began: float | None = None  # the store's thread's CPU wait at `writing`
        self._write_cpu = 0.0
        """The store's thread's wait for a CPU over the whole of that write."""

    def began(self, lag: LoopLag, at: float) -> None:
        """The watch begins `at` (the window claimed, due or past due): what it does until
        `ready` (its store reads and writes, the providers' baselines) delays its first
        round, past that round's due time, as the round's own waits do."""
        self._lag, self._began, self._at, self._stall = lag, at, at, lag.total()

    def ready(self, at: float, baselines_s: float = 0.0, idle_stall_s: float = 0.0) -> None:
        """The watch is ready for its first round `at`, having waited `baselines_s` of it
        for provider baselines (the rest was the store's, less the loop's stall), of whose
        stall `idle_stall_s` lengthened nothing (`timed_wait`)."""
        self._finished_at = at
        if self._began is None:
            return
        took, stalled = self._step(at)
        stalled = max(0.0, stalled - idle_stall_s)
        providers = max(0.0, baselines_s - stalled)
        store = max(0.0, took - stalled - providers)
        self._setting_up = RoundWaits(providers_s=providers, store_s=store, stalled_s=stalled)

    def start(self, lag: LoopLag, loop_now: float, at: float, due: float) -> None:
        """The round starts `at`, due at `due`. The round before was done at `finish`
        (a lateness carried from its overrun is counted there) and its store write at
        `settled`: the store held this round's start by what that wait ran past both,
        less the loop's stall meanwhile; the rest of its lateness is the loop's, late to
        wake it."""
        self._lag = lag
        self._at = at
        self._stall = self._first_stall = lag.total()
        self._idle = self._idle_cpu = 0.0
        self._room_cpu = self._wait_cpu = None
        self._cpu = cpu_waited_s(loop_now)
        finished = self._finished_at
        ready = due if finished is None else max(due, finished)
        settled = ready if self._settled_at is None else max(ready, min(at, self._settled_at))
        # the write's own time is what held the start past the loop's stall over all of
        # the write, not only over the hold: a thread holding the GIL starves the store's
        # thread as it does the loop, so a write it delayed by that much held nothing of
        # the store's own (0.041 s held, the loop stalled 0.0004 s then and 0.32 s
        # earlier in the write: named the store's in CI, the busy thread's)
        held = settled - ready
        stalled = min(held, max(self._settle_stall, self._write_stall))
        # and a store's thread kept waiting for a CPU held it as long, the loop on time: a
        # starved writer's 5.75 s write, 4.57 s of it waiting, was named the store's (4.77
        # s, host 0.99 s), and its operator tuned the disk, not the machine
        starved = min(held - stalled, max(0.0, self._write_cpu - stalled))
        self.waits = RoundWaits(
            store_s=held - stalled - starved,
            stalled_s=max(0.0, at - settled) + stalled,
            store_cpu_wait_s=starved,
        )
        self._settled_at, self._settle_stall, self._write_stall = None, 0.0, 0.0
        self._write_cpu = 0.0
        if self._setting_up is not None and self._began is not None and finished is not None:
            # the first round: the part of the watch's setting up past its due time, shared
            # out as the setting up's own waits were
            before, self._setting_up = self._setting_up, None
            took = finished - self._began
            late = max(0.0, min(at, finished) - max(due, self._began))
            if took > 0 and late > 0:
                share = min(1.0, late / took)
                self.waits.providers_s += before.providers_s * share
                self.waits.store_s += before.store_s * share
                self.waits.stalled_s += before.stalled_s * share

    def _step(self, at: float) -> tuple[float, float]:
        """Pace time and loop stall since the last mark."""
        assert self._lag is not None, "a round's timer is started first"
        stall = self._lag.total()
        took, stalled = max(0.0, at - self._at), max(0.0, stall - self._stall)
        self._at, self._stall = at, stall
        return took, stalled

    def leased(self, at: float) -> None:
        """The lease is held (a renewal the round awaited is the store's); the checks'
        room begins."""
        took, stalled = self._step(at)
        if self._cpu is not None:
            self._room_cpu = cpu_waited_s(_loop_now())
        self.waits.store_s += max(0.0, took - stalled)

    def checked(self, at: float, given: float) -> None:
        """The checks are done; they were given `given` seconds. Having taken them all,
        they ran until the round's timer cut their probes (an on-time run is over by
        then: `EnvironmentProbe.run_round`): a stall before it was due lengthened nothing
        (`timed_wait`; before, a slow target's room with a busy machine's stalls in it
        named the host over what held the round)."""
        took, stalled = self._step(at)
        self.waits.checks_s = max(0.0, took - given - stalled - ON_TIME_S)
        # also the providers' wait's start (`fetched`)
        cpu = self._wait_cpu = cpu_waited_s(_loop_now()) if self._cpu is not None else None
        if took >= given - ON_TIME_S:  # the room's end, on its 5 ms grid
            self._timed_out(took, stalled, given, self._room_cpu, cpu)

    def fetched(
        self, at: float, reserve_from: float | None = None, timer_due: float | None = None
    ) -> None:
        """The round no longer waits for provider answers (`at`). The providers' part is
        what the wait took of the round's reserve (from `reserve_from`, when the checks'
        share of the slot ended; None: all of it): before it, the round's own work lost
        nothing to the wait, which ends half the reserve before the slot's end. Counted
        whole, a hung provider's wait from the checks' end (0.55 s of a 1 s slot) named the
        providers for the overruns a stalling loop made (4 of 5, each by its stalls).
        `timer_due`: the round's timer ended the wait, due then (an answer still out): a
        stall, or a wait for a CPU, before it was due lengthened nothing (`timed_wait`),
        neither the host's nor taken off the providers'; a wait its answers ended may have
        been held by a stall, the host's."""
        began = self._at
        took, stalled = self._step(at)
        if timer_due is not None:
            before = self._wait_cpu
            cpu = cpu_waited_s(_loop_now()) if before is not None else None
            stalled -= self._timed_out(took, stalled, max(0.0, timer_due - began), before, cpu)
        inside = took if reserve_from is None else max(0.0, at - max(began, reserve_from))
        self.waits.providers_s += max(0.0, inside - stalled)

    def _timed_out(
        self, took: float, stalled: float, due_in: float, cpu_from: float | None, cpu: float | None
    ) -> float:
        """A wait its timer ended, due `due_in` after it began: the loop's stall and the
        kernel's CPU wait (from `cpu_from` to `cpu`, when both were read) that lengthened
        nothing are set aside (`timed_wait`); returns the stall's."""
        idle = timed_wait(took, stalled, due_in)
        self._idle += idle
        if cpu_from is not None and cpu is not None:
            self._idle_cpu += timed_wait(took, max(0.0, cpu - cpu_from), due_in)
        return idle

    def finish(self, loop_now: float, at: float) -> RoundWaits:
        """The round's work is done `at`: its waits, with the loop's stall over all of it."""
        assert self._lag is not None, "a round's timer is started first"
        self._stall = self._lag.total()
        self.waits.stalled_s += max(0.0, self._stall - self._first_stall - self._idle)
        self._finished_at = at
        cpu = cpu_waited_s(loop_now)
        if cpu is not None and self._cpu is not None:
            self.waits.cpu_wait_s = max(0.0, cpu - self._cpu - self._idle_cpu)
        return self.waits

    def writing(self, at: float, store_cpu: float | None = None) -> None:
        """The round's store write begins `at`, beside the next round (which awaits it
        after its `finish`, then `settled`); `store_cpu`: the store's thread's
        `thread_cpu_waited_s` then (None: not measured)."""
        assert self._lag is not None, "a round's timer is started first"
        self._write_at, self._write_began = at, self._lag.total()
        self._write_cpu_began = store_cpu

    def settled(self, at: float, store_cpu: float | None = None) -> None:
        """The round before's store write is done `at` (awaited after `finish`), the
        store's thread's `thread_cpu_waited_s` `store_cpu` then."""
        assert self._lag is not None, "a round's timer is started first"
        self._settled_at = at
        stall = self._lag.total()
        self._settle_stall = max(0.0, stall - self._stall)
        began, self._write_at = self._write_at, None
        self._write_stall = 0.0 if began is None else max(0.0, stall - self._write_began)
        cpu_began, self._write_cpu_began = self._write_cpu_began, None
        if began is not None and cpu_began is not None and store_cpu is not None:
            self._write_cpu = max(0.0, store_cpu - cpu_began)

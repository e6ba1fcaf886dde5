"""A stop's time: `server.shutdown_timeout`, from the signal to the process's exit.

Each step of a stop (the background loops, then the deliveries and alerts in flight, then
the resources, the store last) waits for its tasks within what is left of that budget,
less the shares the steps after it keep. A task still going then is named in one warning
and left, and the stop goes on: a part that swallows its cancellation or hangs in a close
(a bug, a plugin, a library that ignores cancel) never holds the exit past the bound, nor
keeps the store from closing. What a left task was doing is in the store, as after a crash
at that instant: windows and alert retries resume at the next start, and a rollback not
recorded as delivered is sent again with its `Idempotency-Key` (contract §3).

Tasks are waited for with `asyncio.wait(timeout=...)`, never awaited under
`asyncio.timeout`: at the timeout that cancels the awaiting task, which passes the
cancellation on to the awaited one and waits for it again, so a task that swallows its
cancellation held the stop for good.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any

from common.durations import format_duration

log = logging.getLogger("postflight")

# Shares of the budget (seconds of the default 8 s), kept for the steps at a stop's end:
EXIT_SHARE = 1 / 16
"""For the process to exit once the server is down (0.5 s): never given to a step."""
STORE_SHARE = 1 / 16
"""For closing the store, the last step (0.5 s)."""
CLOSING_SHARE = 1 / 8
"""For closing the resources, the store among them (1 s)."""
CUT_SHARE = 1 / 16
"""For work cut off at the end of its grace to end (0.5 s)."""
UNWIND_SHARE = 1 / 64
"""For a task whose held store write the stop cut to end before its step stops waiting
for it (0.125 s; `StopBudget.held_write_left`), counted from the cut (`StopBudget.settle`)."""


CONTRACT_STOP_S = 10.0
"""Contract §1: `run` exits within 10 s of SIGTERM/SIGINT."""
HARD_EXIT_S = 0.25
"""What the hard bound keeps of those 10 s for the process to end once it fires: at
`server.shutdown_timeout: 10s` (its most) a thread held the exit to the bound and the
process ended 10.018 s after the signal."""


class StopBudget:
    """One stop's time budget, started at the signal (or at its first use)."""

    def __init__(self, total: float) -> None:
        self.total = total
        self._deadline: float | None = None
        self._held: set[asyncio.Future[Any]] = set()
        self._cut_at: float | None = None

    def start(self) -> None:
        """The stop begins: every step ends by `total` from now, less the exit's share."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.total * (1 - EXIT_SHARE)

    def left(self, keep: float = 0.0) -> float:
        """Seconds left of the stop, less `keep` (a share of it the later steps keep)."""
        self.start()
        assert self._deadline is not None
        return max(0.0, self._deadline - self.total * keep - time.monotonic())

    def held_write_left(self) -> float | None:
        """How long a store write held through a cancellation (`held_until_stored`: a
        rollback's 2xx, an alert's or a follow-up's outcome) may still take: until the
        drain of deliveries and alerts stops waiting for its task (`CLOSING_SHARE` kept),
        less a moment for the task to end. None before a stop has begun: no bound but
        the write's own (the store's timeouts)."""
        if self._deadline is None:
            return None
        return self.left(CLOSING_SHARE + UNWIND_SHARE)

    def hold(self, write: asyncio.Future[Any]) -> None:
        """`write`, held through a cancellation, waits for `held_write_left`'s end."""
        self._held.add(write)
        write.add_done_callback(self._held.discard)

    def cut(self, write: asyncio.Future[Any]) -> None:
        """Cut a held write at `held_write_left`'s end: its task has `UNWIND_SHARE` from
        now to end (`settle`)."""
        write.cancel()
        self._cut_at = time.monotonic()

    async def _unwound(self, pending: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
        """`pending` once those a held write's cut lets end have: until `UNWIND_SHARE`
        after the last cut; the writes due to be cut and not cut yet are cut now. The cut
        came that share before the step stopped waiting, by its own timer: a loop that
        ran nothing across both (the process not scheduled on a loaded host, a synchronous
        call) had them due in one pass, and the step stopped waiting before the cut task
        had a pass to end, or before the cut: it was left ('… did not stop within 1.7 s')."""
        if not pending:
            return pending
        if self.held_write_left() == 0:
            for write in list(self._held):
                self.cut(write)
        if self._cut_at is None:
            return pending
        unwind = self._cut_at + self.total * UNWIND_SHARE - time.monotonic()
        if unwind > 0:
            _, pending = await asyncio.wait(pending, timeout=unwind)
        return pending

    async def settle(
        self, tasks: Iterable[asyncio.Task[Any]], *, grace: float = 0.0, keep: float = 0.0
    ) -> None:
        """Let `tasks` finish within `grace` seconds, cancel those still going, and wait for
        them; all within what is left less `keep`. One cut off at its grace is named in a
        warning; one still going after its cancellation is named and left. `tasks` a live
        set (the watcher's background work): those it gains in the grace are waited for
        too, where a rollback that a verdict stored in the grace spawned was neither waited
        for nor cancelled, and ran on past the stop."""
        started = time.monotonic()
        given = list(tasks)  # a copy: a task leaves `background` as it ends
        pending = {task for task in given if not task.done()}
        cut: set[asyncio.Task[Any]] = set()
        within = 0.0
        if grace > 0 and pending:
            within = min(grace, self.left(keep + CUT_SHARE))
            until, seen = time.monotonic() + within, set(given)
            while pending:
                _, pending = await asyncio.wait(
                    pending,
                    timeout=max(0.0, until - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if isinstance(tasks, set):
                    new = [task for task in tasks if task not in seen]
                    seen.update(new)
                    given += new
                    pending |= {task for task in new if not task.done()}
                if time.monotonic() >= until:
                    break
            cut = set(pending)
        for task in pending:
            task.cancel()
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.left(keep))
            pending = await self._unwound(pending)
        waited = time.monotonic() - started
        for what in named(pending):
            log.warning(
                "stopping: %s did not stop within %s; leaving it", what, format_duration(waited)
            )
        for what in named(cut - pending):
            log.warning(
                "stopping: %s did not finish within %s; cut off", what, format_duration(within)
            )
        for task in given:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("stopping: %s failed", _name(task), exc_info=task.exception())


_NAMED_BY: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()
"""Which part named a task (`named_for_a_stop`'s `part`)."""


def named_for_a_stop(what: str, part: str | None = None) -> None:
    """Name the running task for a stop that cuts it off (`StopBudget.settle` names it):
    what it was doing, and what of it the next agent does. With `part`, only a task the
    part runs alone (unnamed, or named by that part before): an alert sent inside a
    settled rollback's task leaves that task its name, which says more."""
    task = asyncio.current_task()
    if task is None:
        return
    theirs = not task.get_name().startswith("Task-") and _NAMED_BY.get(task) != part
    if part is not None and theirs:
        return
    task.set_name(what)
    if part is not None:
        _NAMED_BY[task] = part
    else:
        _NAMED_BY.pop(task, None)


def named(tasks: Iterable[asyncio.Task[Any]]) -> list[str]:
    """The tasks by name, one entry per name with how many share it ("×3")."""
    counts = Counter(_name(task) for task in tasks)
    return [what if n == 1 else f"{what} (×{n})" for what, n in sorted(counts.items())]


def _name(task: asyncio.Task[Any]) -> str:
    """A task's name, or its coroutine's when it was given none ("Task-12")."""
    name = task.get_name()
    if name.startswith("Task-"):
        name = getattr(task.get_coro(), "__qualname__", name)
    return name


def exit_if_still_running(bound: float, code: int = 0) -> None:
    """The last resort of the bound, armed at the signal: a daemon thread that ends the
    process `bound` seconds later (at most the contract's 10 s less `HARD_EXIT_S`) if it
    is still there. What `settle` cannot leave holds
    the exit past it: a thread blocked in a call with no timeout (a plugin's synchronous
    client in `asyncio.to_thread`), which the event loop's end and the interpreter's exit
    both join. Ending then is a crash at that instant, which loses nothing (the store has
    every window, alert and rollback intent), and exits `code` as a clean stop does."""
    bound = min(bound, CONTRACT_STOP_S - HARD_EXIT_S)

    def end() -> None:
        main = threading.main_thread()
        held = sorted(
            t.name for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()
        )
        log.warning(
            "stopping: still running %s after the signal (threads: %s); exiting now",
            format_duration(bound),
            ", ".join(held) or "none but the main one",
        )
        for handler in logging.getLogger().handlers + log.handlers:
            handler.flush()
        os._exit(code)

    timer = threading.Timer(bound, end)
    timer.name = "stop-deadline"
    timer.daemon = True
    timer.start()


class StopDeadline:
    """`exit_if_still_running`, armed once: at the stop signal's arrival (a Python-level
    handler, which runs even while the event loop is blocked) or when the loop handles it,
    whichever comes first. Armed by the loop alone, a loop blocked by a synchronous call (a
    plugin's) held the bound's start until it came back: the exit landed past the bound."""

    def __init__(self, bound: float, code: int = 0) -> None:
        self.bound = bound
        self.code = code
        self.armed = False

    def arm(self) -> None:
        if not self.armed:  # the main thread alone arms it: a handler, or the loop's callback
            self.armed = True
            exit_if_still_running(self.bound, self.code)

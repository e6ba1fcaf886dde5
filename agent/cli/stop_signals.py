"""SIGTERM, SIGINT and SIGHUP to `postflight run` outside its event loop: a clean stop,
exit 0; and to `register` and `check`, said and exit 128 + the signal.

The contract (§1) gives `run` one answer to SIGTERM/SIGINT: stop, keep state, exit 0.
SIGHUP gets the same: the agent does not reload its configuration (a supervisor's restart
applies a changed one), and by default SIGHUP killed it (exit 129, nothing said, its
deliveries in flight cut off), the answer to an operator's `kill -HUP` for a reload or a
terminal that closed.
The event loop's own handlers give it while the daemon serves. Before the loop installs
them (the second or two of imports and reading the configuration, which may block on a
slow or FIFO-backed file) and after the loop has closed, nothing is held: no store open,
no port bound, no round in flight. A stop before is simply an exit 0, at once; without
these handlers SIGTERM killed the process (-15, read by supervisors as a crash) and SIGINT
ended it with a traceback or 130. A stop after is ignored: the process is ending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

from agent.cli.exits import EXIT_HUNG_UP, EXIT_INTERRUPTED, EXIT_TERMINATED
from common.stop_words import STOPPED_WORDS

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
T = TypeVar("T")


_STARTING: list[bool] = [False]
"""Whether a stop now is one before the daemon started (said), not after it stopped."""


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # said in the log once it is set up (a slow `--config <(…)`): a stop that ended the
    # process without a line read, to whoever ran it, as a start that never happened
    if _STARTING[0] and logging.getLogger().handlers:
        logging.getLogger("postflight").info(
            "%s: stopping before it started (nothing held yet)", signal.Signals(signum).name
        )
    raise SystemExit(0)


def stop_cleanly_while_nothing_is_held(starting: bool = False) -> None:
    """Make SIGTERM, SIGINT and SIGHUP exit 0 from here on, until the event loop takes them over
    (`loop.add_signal_handler`); once it has stopped, `ignore_stops_from_now`. `starting`: a
    stop from here on is before the daemon started, and says so in the log once the log is
    set up."""
    _STARTING[0] = starting
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_cleanly)


def ignore_stops_from_now(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Ignore SIGTERM, SIGINT and SIGHUP once the daemon has stopped (its loop about to
    close, or closed): the process is already on its way out with its code (0 after a
    stop) and the stop-deadline thread still bounds it. `loop`'s own handlers are taken
    off first, as its close would leave them at their defaults. A Python handler cannot
    cover the end: the interpreter's last steps reset those to the defaults, and there a
    second SIGTERM from a supervisor killed the stopped daemon (-15, read as a crash), or
    raised SystemExit inside an atexit callback (its traceback printed)."""
    for sig in STOP_SIGNALS:
        if loop is not None and not loop.is_closed():
            loop.remove_signal_handler(sig)
        signal.signal(sig, signal.SIG_IGN)


def also_at_arrival(sig: signal.Signals, arrived: Callable[[], None]) -> None:
    """Call `arrived` from `sig`'s Python-level handler, as the signal arrives, and keep the
    handler the event loop set (`add_signal_handler`: the loop learns of the signal from
    its wakeup file, which the interpreter writes whatever the handler). That handler runs
    in the main thread between two steps of its code, a blocking sleep or read included,
    where the loop's callback waits until the loop runs again."""
    previous = signal.getsignal(sig)

    def handler(signum: int, frame: FrameType | None) -> None:
        arrived()
        if callable(previous):
            previous(signum, frame)

    signal.signal(sig, handler)


class Terminated(KeyboardInterrupt):
    """SIGTERM: a pipeline's job cancelled (GitHub Actions, GitLab and Kubernetes send it,
    some after a SIGINT), which ended `register --wait` and `check` silently (-15), their
    logs saying nothing of what was left; SIGHUP, the session closed (a
    `register --wait … >> deploy.log` left running), as silently (-1). Said as CTRL-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


_STOPPED: dict[int, tuple[str, int]] = {
    sig: (STOPPED_WORDS[sig], code)
    for sig, code in (
        (signal.SIGINT, EXIT_INTERRUPTED),
        (signal.SIGTERM, EXIT_TERMINATED),
        (signal.SIGHUP, EXIT_HUNG_UP),
    )
}


def stopped_by(exc: KeyboardInterrupt) -> tuple[str, int]:
    """What a command the signal behind `exc` stopped says ("terminated") and exits with
    (143): CTRL-C's KeyboardInterrupt is SIGINT's."""
    return _STOPPED[exc.signum if isinstance(exc, Terminated) else signal.SIGINT]


@contextlib.contextmanager
def stops_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` while the block runs (the main thread only:
    a handler can be set nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    previous = {
        sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_said_stopped(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, where SIGTERM and SIGHUP while the loop runs cancel `main`, as
    asyncio does CTRL-C, and raise `Terminated` once it has unwound. Raised from the
    handler instead (`stops_as_interrupt`, still there before and after the loop), the
    signal hit whichever task ran at that instant: one of aiohttp's sending a request body
    printed `Task exception was never retrieved` and its traceback after the command's
    one line."""

    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)  # no handler can be set there

    async def cancelled_by_a_signal() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        caught: list[int] = []

        def stop(sig: signal.Signals) -> None:
            if not caught:
                caught.append(sig)
                task.cancel()

        # `remove_signal_handler` leaves the defaults (killed, silent): what was there
        # before (`stops_as_interrupt`'s) is put back for the loop's last steps
        before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
        for sig in before:
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await main
        except asyncio.CancelledError:
            if caught:
                raise Terminated(caught[0]) from None
            raise
        finally:
            for sig, handler in before.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return asyncio.run(cancelled_by_a_signal())


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)

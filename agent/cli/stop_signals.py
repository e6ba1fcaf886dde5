"""SIGTERM, SIGINT and SIGHUP to `postflight run` outside its event loop: a clean stop,
exit 0.

The contract (§1) gives `run` one answer to SIGTERM/SIGINT: stop, keep state, exit 0.
SIGHUP gets the same: the agent does not reload its configuration (a supervisor's restart
applies a changed one), and by default SIGHUP killed it (exit 129, nothing said, its
deliveries in flight cut off), the answer to an operator's `kill -HUP` for a reload or a
terminal that closed.
The event loop's own handlers give it while the daemon serves. Before the loop installs
them (the second or two of imports and reading the configuration, which may block on a
slow or FIFO-backed file) and after the loop has closed, nothing is held: no store open,
no port bound, no round in flight. A stop there is simply an exit 0, at once; without
these handlers SIGTERM killed the process (-15, read by supervisors as a crash) and SIGINT
ended it with a traceback or 130.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def stop_cleanly_while_nothing_is_held() -> None:
    """Make SIGTERM, SIGINT and SIGHUP exit 0 from here on, until the event loop takes them over
    (`loop.add_signal_handler`); call again once the loop has closed, which leaves them
    at their defaults."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_cleanly)

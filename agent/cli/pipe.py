"""A standard output (or error) whose reader may leave early: `postflight status | head -2`.

Python raises `BrokenPipeError` on the next write once the reader has gone, which
would end the command with a traceback and exit 1, a code the contract does not give
these commands. Guarded, the rest of the output is dropped and the command runs to
its end, so its exit code is still the one it documents (`register --wait | head -1`
still exits with the verdict).
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


class PipeGuard:
    """Wraps a text stream; after the first broken pipe, writes go nowhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        """From now on drop the output; the descriptor points at /dev/null, so what the
        stream still buffers (flushed again at exit) cannot fail a second time."""
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no real descriptor (a test's StringIO)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Put `PipeGuard` in front of `sys.stdout` and `sys.stderr` (once each): an error
    whose reader has gone (`… 2>&1 | head -1`) must not turn exit 2 into Python's 1.
    A character stdout's encoding lacks (`…` on `PYTHONIOENCODING=ascii` or a latin-1
    locale) is written `?`, as stderr already escapes it, not a UnicodeEncodeError."""
    if not isinstance(sys.stdout, PipeGuard) and sys.stdout is not None:
        reconfigure = getattr(sys.stdout, "reconfigure", None)  # not on a test's StringIO
        if reconfigure is not None:
            reconfigure(errors="replace")
        sys.stdout = PipeGuard(sys.stdout)
    if not isinstance(sys.stderr, PipeGuard) and sys.stderr is not None:
        sys.stderr = PipeGuard(sys.stderr)

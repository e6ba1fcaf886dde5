"""The system's words for a socket error, whichever client and loop raised it."""

from __future__ import annotations

import os


def os_reason(error: OSError) -> str:
    """ "Connection refused", as the system says it: asyncio words a refused connect
    "Connect call failed ('127.0.0.1', 8787)", uvloop in the system's words. A resolver's
    code is no errno (`os.strerror(-2)` is "Unknown error -2"): its own words then."""
    if isinstance(error.errno, int) and error.errno > 0:
        return os.strerror(error.errno)
    return error.strerror or str(error) or type(error).__name__

"""The pages' clock and how they write a moment. No I/O."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from agent.api.routes import CLOCK
from common.times import rfc3339


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC, whole seconds; `None` stays `None`."""
    return None if ts is None else rfc3339(ts, millis=False)


def request_now(request: web.Request) -> float:
    """The API's clock when a test pins one (`agent.api.routes.CLOCK`), else wall time."""
    clock: Callable[[], float] | None = request.config_dict.get(CLOCK)
    return clock() if clock is not None else time.time()

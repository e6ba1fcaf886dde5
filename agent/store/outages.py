"""How a background loop that polls the store logs a store that does not answer.

A PostgreSQL restart made every loop (windows claimed every second, the integrations'
scan, the alert retries) log an ERROR with a 20-line traceback at each turn: ~160
tracebacks in 40 s, the one line worth reading lost among them. A store that does not
answer is a known condition with nothing to debug in our code: one WARNING when a loop
first meets it, one INFO when the store answers again. Anything else is still logged
with its traceback at every turn, as a bug should be.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from agent.store.base import Conflict, StoreError


def store_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store did not answer (worth a retry), not that a call failed."""
    return isinstance(exc, StoreError) and not isinstance(exc, Conflict)


async def unless_outage(call: Awaitable[None], logger: logging.Logger, what: str) -> None:
    """Await a loop's one-off step (a first look at startup): a store that does not answer
    is raised, for the loop to retry; anything else is logged with its traceback and passed
    over, so a bug there holds none of the loop's turns back."""
    try:
        await call
    except Exception as exc:
        if store_outage(exc):
            raise
        logger.exception("%s failed", what)


class StoreOutageLog:
    """One loop's log of failed turns: `failed()` in its `except`, `answered()` after a
    turn that went through."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._down = False

    def failed(self, exc: BaseException, extra: Mapping[str, Any] | None = None) -> None:
        if store_outage(exc):
            if not self._down:
                self._down = True
                self._log.warning(
                    "%s: the store does not answer (%s); retrying", self._what, exc, extra=extra
                )
            return
        self._log.error("%s failed; retrying", self._what, exc_info=exc, extra=extra)

    def answered(self) -> None:
        if self._down:
            self._down = False
            self._log.info("%s: the store answers again", self._what)

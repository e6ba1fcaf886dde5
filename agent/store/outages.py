"""A store that does not answer: how a background loop that polls it logs it, and how an
outcome that must not be lost is held until it answers (`held_until_stored`).

A PostgreSQL restart made every loop (windows claimed every second, the integrations'
scan, the alert retries) log an ERROR with a 20-line traceback at each turn: ~160
tracebacks in 40 s, the one line worth reading lost among them. A store that does not
answer is a known condition with nothing to debug in our code: one WARNING when a loop
first meets it, one INFO when the store answers again. Anything else is still logged
with its traceback at every turn, as a bug should be.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

from agent.stopping import StopBudget
from agent.store.base import Conflict, StoreBusy, StoreError, StoreHeld

T = TypeVar("T")


def store_outage(exc: BaseException) -> bool:
    """Whether `exc` says the store did not answer (worth a retry), not that a call failed."""
    return isinstance(exc, StoreError) and not isinstance(exc, Conflict)


def store_busy(exc: BaseException) -> bool:
    """Whether `exc` is one transaction the store refused for now (`StoreBusy`): retried as
    an outage is (`store_outage` holds), but the store is up: never said down."""
    return isinstance(exc, StoreBusy)


def store_held(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's file refusing writes for now (`StoreHeld`: held by another
    process, its disk full, read-only): an outage that no other agent can use to take a
    window over, so a watch keeps its rounds."""
    return isinstance(exc, StoreHeld)


def not_taken(exc: BaseException) -> str:
    """Why the store did not take a write, as a log line says it: busy (`store_busy`: one
    transaction refused, the store up) or not answering (an outage)."""
    return "the store is busy" if store_busy(exc) else "the store does not answer"


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
        self._busy = False

    def failed(self, exc: BaseException, extra: Mapping[str, Any] | None = None) -> None:
        if store_busy(exc):  # the store is up: no outage begins, none ends
            if not self._busy:
                self._busy = True
                self._log.warning(
                    "%s: the store is busy, retried (%s)", self._what, exc, extra=extra
                )
            return
        if store_outage(exc):
            if not self._down:
                self._down = True
                self._log.warning(
                    "%s: the store does not answer (%s); retrying", self._what, exc, extra=extra
                )
            return
        self._log.error("%s failed; retrying", self._what, exc_info=exc, extra=extra)

    def answered(self) -> None:
        self._busy = False
        if self._down:
            self._down = False
            self._log.info("%s: the store answers again", self._what)


HELD_RETRY_S = (0.2, 0.5, 1.0)
"""The waits (then the last, again) between tries to store a held outcome
(`held_until_stored`), or to reach the store again in the middle of a rollback's delivery.
At most a second: a replica that takes a rollback over waits three of these for its
sender to record it (`agent.rollback.delivery.TAKEOVER_GRACE_S`), and an alert's outcome
written up to 2 s after the store's return (as its own doubling once did) left that much
longer for a replica's scan to find its lapsed claim and send it again."""


def held_waits() -> Iterator[float]:
    """`HELD_RETRY_S`, then its last wait for good."""
    return itertools.chain(HELD_RETRY_S, itertools.repeat(HELD_RETRY_S[-1]))


async def held_until_stored(
    write: Callable[[], Awaitable[T]],
    outage_begins: Callable[[Exception], None],
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    stop: StopBudget | None = None,
) -> tuple[T, bool]:
    """What an answered send did (a rollback's 2xx, a follow-up's, an alert a channel
    took), written by `write()` until the store takes it, and whether it had to wait: a
    live sender that gave up at the first failure left it unstored, and the restart, or a
    replica once the claim lapsed, sent it again. Tried again after `held_waits` while the
    store does not answer (`store_outage`: a restart, a failover's read-only spell,
    SQLite's locked or read-only file; `outage_begins` at the first such failure).

    A stop's cancellation does not cut a try: it goes on to its end (asyncpg rolls a cut
    transaction back; SQLite's change had not reached the connection), then the
    cancellation goes on. One that comes between tries gets one try more, the store
    having maybe come back during the stop. One the store still does not take is left
    unstored, as a kill leaves it; so is one that has not ended by the end of `stop`
    (`StopBudget.held_write_left`), cut then: with no bound but the write's own (a
    PostgreSQL that stopped answering: its 30 s command timeout), the stop left its task
    running and closed the resources after it with no time left, and a cancellation
    between tries, cancelled again, waited as long once more."""
    waits = held_waits()
    waited = False
    while True:
        try:
            return await _to_its_end(write, stop), waited
        except Exception as exc:
            if not store_outage(exc):
                raise
            if not waited:
                waited = True
                outage_begins(exc)
        try:
            await sleep(next(waits))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # still away, or worse: as a kill
                await _to_its_end(write, stop, cancelled=True)
            raise


async def handed_back(
    write: Callable[[], Awaitable[object]], stop: StopBudget | None = None
) -> None:
    """`write()` (a claim given back as a stop cuts its sender) run to its end, within
    `stop`, however the task is cancelled meanwhile; one that fails is let go: the claim
    lapses, as after a kill."""
    with contextlib.suppress(Exception):
        await _to_its_end(write, stop)


async def _to_its_end(
    write: Callable[[], Awaitable[T]], stop: StopBudget | None = None, *, cancelled: bool = False
) -> T:
    """`write()`'s result; a cancellation meanwhile (or before, `cancelled`) lets it
    finish within what `stop` leaves it, else it is cut, as a kill cuts it, and goes on."""
    attempt = asyncio.ensure_future(write())
    if cancelled:
        await _within(attempt, stop)
        return attempt.result()
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        await _within(attempt, stop)
        if not attempt.cancelled():
            attempt.exception()  # seen: one that failed leaves it unstored, as a kill
        raise


async def _within(attempt: asyncio.Future[T], stop: StopBudget | None) -> None:
    """Until `attempt` ends (not cancelled with the task that waits), or the stop's end
    (`StopBudget.held_write_left`) cuts it."""
    if stop is None:
        await asyncio.wait({attempt})
        return
    stop.hold(attempt)  # cut by the stop's step, if its own wait's end is late (a busy loop)
    done, _ = await asyncio.wait({attempt}, timeout=stop.held_write_left())
    if not done:
        stop.cut(attempt)
        await asyncio.wait({attempt}, timeout=stop.left())

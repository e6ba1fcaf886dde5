"""A watch's writes kept through SQLite's file refusing them for now (`StoreHeld`: held by
another process, an operator's `sqlite3` in `BEGIN EXCLUSIVE`, a backup tool; its disk
full; read-only or failing writes, a remount, a file size limit).

Why: a round the file refused past `busy_timeout` ended the watch, the rounds it had
measured were dropped, and none was measured until the watcher claimed the window again
after the file was let go (a 10 s lock cost 20 of a 40-round window's rounds at 500 ms,
a 20 s lock 27; one near the end ended the window up to 11 s late). No other agent can
take the window meanwhile (one agent per SQLite file), so the watch goes on: each write
is tried again until the file takes it, rounds are stored in order, and nothing a round
calls for (an alert, a rollback) is acted on before it is stored. A PostgreSQL outage is
not this: another replica may take the window over once its lease lapses. A full disk
ended the watch as a lock did (its rounds through a 6 s SQLITE_FULL on a real daemon: 0
of 12 stored, the slots passed over): its watch keeps them now the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent.metrics import Metrics
from agent.store.base import HELD_ELSEWHERE
from agent.store.outages import held_waits, store_held
from common.words import counted

T = TypeVar("T")

log = logging.getLogger("postflight.watcher")

HELD_ROUNDS_MAX = 120
"""Rounds a watch measures ahead of the store while its file is held (two minutes at a
second a round; a few KB each, held in memory: at 500 windows, a few hundred MB at most):
past it, the watch waits for the oldest to be stored, its slots meanwhile passed over."""


class HeldFiles:
    """The agent's watches whose writes wait for the held file, said for all of them: one
    warning when it is first found held (how many windows' rounds wait), one line when the
    last write kept is stored (how long, how many rounds were kept), each window's own at
    DEBUG. Each window said both (a WARNING and an INFO per window): hundreds of lines for
    one lock at hundreds of windows."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.waiting: set[HeldFile] = set()
        """Watches with a write the held file refused and not stored yet."""
        self.windows: set[HeldFile] = set()
        """Watches that waited since the file was said held."""
        self.kept = 0
        """Rounds the watches handed to the store behind a held write since then."""
        self.since = 0.0
        self.cause: BaseException | None = None
        """The first refusal (None: the file is not said held)."""
        self._saying: asyncio.Handle | None = None

    def held(self, watch: HeldFile, exc: BaseException) -> None:
        """`watch` has a write the file refused (`HeldFile.written`)."""
        self.metrics.store_up.set(0)  # writes fail: the dashboards' `PostflightStoreDown`
        self.waiting.add(watch)
        self.windows.add(watch)
        if self.cause is None:
            self.cause = exc
            self.since = time.monotonic()
            # said once every watch refused with it (a batch's rounds fail together) has
            # told it so: their tasks were woken before this one scheduled the line
            self._saying = asyncio.get_running_loop().call_soon(self._say_held)

    def let_go(self, watch: HeldFile, kept: int) -> None:
        """`watch`'s writes are all stored, `kept` rounds of it behind the held one."""
        self.waiting.discard(watch)
        self.kept += kept
        if self.waiting or self.cause is None:
            return
        if self._saying is not None:  # let go before it was said: said first
            self._saying.cancel()
            self._say_held()
        self.metrics.store_up.set(1)
        log.info(
            "the SQLite file takes the windows' writes again after %.1fs: %s of %s"
            " measured meanwhile kept, stored in order",
            time.monotonic() - self.since,
            counted(self.kept, "round"),
            counted(len(self.windows), "window"),
        )
        self.cause, self.kept = None, 0
        self.windows.clear()

    def _say_held(self) -> None:
        self._saying = None
        log.warning(
            "%s rounds wait for the store: %s (%s); rounds go on and are stored in order"
            " once it takes writes again, nothing a round calls for (an alert, a rollback)"
            " is acted on before it is stored",
            _possessive(counted(len(self.waiting), "window")),
            self.cause,
            _why(self.cause),
        )


def _why(exc: BaseException | None) -> str:
    """Why the file refuses writes (`StoreHeld.why`), as a log line says it."""
    return getattr(exc, "why", HELD_ELSEWHERE)


def _possessive(words: str) -> str:
    """`3 windows'`, `1 window's`."""
    return f"{words}'" if words.endswith("s") else f"{words}'s"


class HeldFile:
    """One watch's writes waiting for the file (`written`), and its rounds measured
    ahead of the store meanwhile (`ahead`)."""

    def __init__(
        self,
        log: logging.LoggerAdapter[logging.Logger],
        agent: HeldFiles,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.log = log
        self.agent = agent
        self.sleep = sleep
        self.waiting = 0
        """Writes of this watch refused by the held file and not stored yet."""
        self.ahead = 0
        """Rounds handed to the store while an earlier one waited (see `goes_on`)."""
        self.kept = 0
        """Rounds handed to the store behind a held write since the file was said held."""
        self.since = 0.0
        """When it was said held (`time.monotonic`)."""
        self.said = False
        self._held = asyncio.Event()
        """Set while some write waits for the file (`waiting`)."""

    def goes_on(self, settling: asyncio.Task[bool]) -> bool:
        """Whether the next round may be handed to the store without waiting for
        `settling` (the round before it): while the file holds it, up to
        `HELD_ROUNDS_MAX` rounds ahead."""
        return not settling.done() and self.waiting > 0 and self.ahead < HELD_ROUNDS_MAX

    def chain(self) -> None:
        """A round handed to the store behind `settling` (`goes_on` said yes)."""
        self.ahead += 1
        self.kept += 1

    async def settled_or_held(self, settling: asyncio.Task[bool]) -> None:
        """Until `settling` is done, or the file is found held (`goes_on` may say yes then):
        a round's write finds it held only once `busy_timeout` has passed, and the watch
        waiting for that write measured nothing after it for good."""
        if self.ahead >= HELD_ROUNDS_MAX:
            await asyncio.wait({settling})
            return
        held = asyncio.ensure_future(self._held.wait())
        try:
            await asyncio.wait({settling, held}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            held.cancel()

    async def written(self, write: Callable[[], Awaitable[T]], what: str) -> T:
        """`write()`'s answer, tried again after `held_waits` while the file is held by
        another process; any other failure is raised as it is."""
        waits = held_waits()
        held = False
        try:
            while True:
                try:
                    answer = await write()
                except Exception as exc:
                    if not store_held(exc):
                        raise
                    if not held:
                        held = True
                        self.waiting += 1
                        self._held.set()
                        self._say_held(what, exc)
                    await self.sleep(next(waits))
                    continue
                return answer
        finally:
            if held:
                self.waiting -= 1
                if not self.waiting:
                    self._held.clear()
                    self._say_let_go()

    def _say_held(self, what: str, exc: BaseException) -> None:
        self.agent.held(self, exc)
        if self.said:
            return
        self.said = True
        self.since = time.monotonic()
        self.log.debug(
            "%s waits for the store: %s (%s); rounds go on and are stored in order once it"
            " takes writes again, nothing a round calls for (an alert, a rollback) is acted"
            " on before it is stored",
            what,
            exc,
            _why(exc),
        )

    def _say_let_go(self) -> None:
        if not self.said:
            return
        self.said = False
        self.log.debug(
            "the SQLite file takes this window's writes again after %.1fs: %s measured"
            " meanwhile kept, stored in order",
            time.monotonic() - self.since,
            counted(self.kept, "round"),
        )
        self.agent.let_go(self, self.kept)
        self.kept = 0

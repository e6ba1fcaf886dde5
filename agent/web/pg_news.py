"""News of deploy windows between replicas sharing one PostgreSQL store (LISTEN/NOTIFY).

A replica's own writes wake its event streams through `DeployFeed`; this tells the
other replicas. Each process sends the ids of the windows it changed on one channel,
coalesced (one NOTIFY per `FLUSH_S` at most, however many rounds were stored), and
listens on it, waking its own streams for what the others changed. A stream then reads
the store as always, so a notification only says when to look.

What it must not do: delay or fail a write (sending runs in its own task, on its own
connection) or be needed for correctness: a notification lost while the connection is
down only means the stream's periodic re-read (`agent.web.reader.RECHECK_S`) catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from agent.web.feed import DeployFeed
from common.durations import format_duration

log = logging.getLogger("postflight.web")

CHANNEL = "postflight_deploys"
FLUSH_S = 0.05
"""Changes within this long go out as one notification."""
RETRY_S = 2.0
"""After the listening connection failed, connect again this much later."""
_PAYLOAD_MAX = 7000
"""PostgreSQL refuses a NOTIFY payload of 8000 bytes or more."""


def payloads(origin: str, window_ids: set[str]) -> Iterator[str]:
    """`origin id,id,…` messages, each within PostgreSQL's payload limit."""
    batch: list[str] = []
    size = len(origin)
    for window_id in sorted(window_ids):
        if batch and size + len(window_id) + 1 > _PAYLOAD_MAX:
            yield f"{origin} {','.join(batch)}"
            batch, size = [], len(origin)
        batch.append(window_id)
        size += len(window_id) + 1
    if batch:
        yield f"{origin} {','.join(batch)}"


class PgNews:
    """One per process on a PostgreSQL store: relays `feed`'s local news to the other
    replicas and theirs to `feed` (`run` until cancelled)."""

    def __init__(self, url: str, feed: DeployFeed) -> None:
        self.url = url
        self.feed = feed
        self.origin = uuid.uuid4().hex[:12]
        """Our own notifications come back to us: this tells them apart."""
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._urgent = False
        feed.outbox = self.changed
        self.also: Callable[[str], None] | None = None
        """Also told of each window another replica changed: the watcher, whose background
        runs in flight a window opening there cuts (`agent.windows.in_flight`)."""

    def changed(self, window_id: str) -> None:
        """A write of this process changed `window_id` (called by the feed)."""
        self._pending.add(window_id)
        self._wake.set()

    def at_once(self, window_id: str) -> None:
        """`changed`, sent without waiting `FLUSH_S` for others: a window starting to probe
        (`agent.windows.in_flight`), which another replica's background run in flight
        must hear of before the window's first round (it did 52-55 ms later, with the
        wait; 1-6 ms without)."""
        self._urgent = True
        self.changed(window_id)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, ids = payload.partition(" ")
        if origin == self.origin:
            return
        for window_id in filter(None, ids.split(",")):
            if "/" not in window_id:  # else a run cut for a window (`in_flight.cut_news`)
                self.feed.publish(window_id, remote=True)
            if self.also is not None:
                self.also(window_id)

    async def run(self) -> None:
        import asyncpg  # only on a PostgreSQL store

        down = False  # said once per outage, and its end once (every 2 s, it was 35 lines in 70 s)
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.url, timeout=10)
                await conn.add_listener(CHANNEL, self._heard)
                if down:
                    down = False
                    log.info("replica news over PostgreSQL resumed")
                await self._send(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is down or restarting: retry
                if not down:
                    down = True
                    log.warning(
                        "replica news over PostgreSQL interrupted: %s; retrying every %s",
                        type(exc).__name__,
                        format_duration(RETRY_S),
                    )
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(RETRY_S)

    async def _send(self, conn: Any) -> None:
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_S):
                    await self._wake.wait()
            if not self._pending:
                continue
            if not self._urgent:
                await asyncio.sleep(FLUSH_S)  # let a burst of writes go out as one
            self._wake.clear()
            self._urgent = False
            ids, self._pending = self._pending, set()
            for payload in payloads(self.origin, ids):
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

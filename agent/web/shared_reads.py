"""Reads of the store shared by the requests that want the same one at once.

Each event of a deploy's live stream makes every open page of it fetch its live part
(`static/page.js`), each of those reading the window, its rollback, every round, the
delivery attempts and the alerts: fifty tabs open in an incident were fifty such reads
per event. The requests of one deploy that arrive together now share one read; each
still gets one that started after it arrived (never an older read's answer, so a page
fetched on an event shows that event), and those arriving while a read runs share the
next.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _retrieved(future: asyncio.Future[Any]) -> None:
    # a read whose every waiter left: its error is no one's to log
    if not future.cancelled():
        future.exception()


class SharedReads(Generic[T]):
    """Single-flight reads by key, each answer one that started after its caller came."""

    def __init__(self) -> None:
        self._next: dict[Hashable, asyncio.Future[T]] = {}
        """The read each key's callers wait on, not started yet."""
        self._running: dict[Hashable, asyncio.Task[None]] = {}

    async def read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`'s answer, from a call that started after this one was made (shared
        with the callers of the same key that wait on the same one)."""
        answer = self._next.get(key)
        if answer is None:
            answer = self._next[key] = asyncio.get_running_loop().create_future()
            answer.add_done_callback(_retrieved)
            if key not in self._running:
                self._running[key] = asyncio.create_task(self._reads(key, read))
        return await asyncio.shield(answer)

    async def _reads(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> None:
        answer: asyncio.Future[T] | None = None
        try:
            while (answer := self._next.pop(key, None)) is not None:
                try:
                    answer.set_result(await read())
                except Exception as exc:
                    answer.set_exception(exc)
        finally:
            del self._running[key]
            if answer is not None and not answer.done():
                answer.cancel()  # cancelled itself (the loop is closing): so are they
            with contextlib.suppress(KeyError):
                self._next.pop(key).cancel()

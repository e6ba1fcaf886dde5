"""One asyncio lock per key (a deploy's id), kept only while it is held or waited for.

A dict of locks filled with `setdefault` keeps one per key for as long as the process
runs: a daemon that sees thousands of deploys a month grew by each one's locks, and an
API client could grow it at will (a lock per id asked about, a 404's too)."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    """`async with locks.hold(key):` runs one holder of `key` at a time, in turn."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, _Held] = {}

    def hold(self, key: Hashable) -> _Held:
        held = self._locks.get(key)
        if held is None:
            held = self._locks[key] = _Held(self, key)
        return held

    def __len__(self) -> int:
        """Keys held or waited for now."""
        return len(self._locks)


class _Held:
    """One key's lock and how many hold it or wait for it: the last one out drops it."""

    __slots__ = ("key", "lock", "locks", "users")

    def __init__(self, locks: KeyedLocks, key: Hashable) -> None:
        self.locks = locks
        self.key = key
        self.lock = asyncio.Lock()
        self.users = 0

    async def __aenter__(self) -> None:
        self.users += 1
        try:
            await self.lock.acquire()
        except BaseException:  # cancelled while waiting: not a holder
            self._leave()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.lock.release()
        self._leave()

    def _leave(self) -> None:
        self.users -= 1
        if not self.users:
            del self.locks._locks[self.key]

"""A SQLite store one of whose lists, read once in each pass of a background loop (the
watcher's, the integrations' scans), takes seconds: a store far away, or busy. What a
news-during-a-pass test needs: a pass long enough to be woken in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from agent.store.sqlite import SqliteStore

T = TypeVar("T")

SLOW_S = 2.0
"""How long the slowed list takes."""


class SlowListing(SqliteStore):
    """A subclass slows one list by reading it through `slowly`; `listing` is set while
    one is under way, and `listed` gets when each began and ended (`time.monotonic`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.listing = asyncio.Event()
        self.listed: list[tuple[float, float]] = []

    async def slowly(self, listed: Callable[[], Awaitable[T]]) -> T:
        """`listed()`, read after `SLOW_S`."""
        self.listing.set()
        began = time.monotonic()
        try:
            await asyncio.sleep(SLOW_S)
            return await listed()
        finally:
            self.listing.clear()
            self.listed.append((began, time.monotonic()))

    def listed_since(self, moment: float) -> bool:
        """Whether a listing that began after `moment` (`time.monotonic`) is over."""
        return any(began > moment for began, _ in self.listed)

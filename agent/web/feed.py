"""News of deploy windows for live pages: who waits on which deploy, and a store that
tells them when something about it was written.

`FeedStore` wraps the daemon's store: after each write that changes what a deploy's
page shows (a round, a verdict, a state, a rollback attempt, an alert), it wakes the
event streams of that deploy. Waking is all it does: the stream then reads the store,
so what a browser sees is always what was stored, never in-memory state. Changes made
by another replica are picked up by the stream's periodic re-read instead.

What it must not do: change, delay or fail a write (publishing is a set of
`asyncio.Event.set()` calls after the write returned).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, cast

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    IdempotentResponse,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)
from agent.store.base import Store


class DeployFeed:
    """In-process wake-ups per deploy id; safe to share across the application."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def publish(self, window_id: str) -> None:
        for event in self._waiters.get(window_id, ()):
            event.set()

    @contextlib.contextmanager
    def subscribe(self, window_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `window_id` changes, until the block exits."""
        event = asyncio.Event()
        self._waiters.setdefault(window_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(window_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[window_id]

    @property
    def subscribers(self) -> int:
        return sum(len(w) for w in self._waiters.values())


class FeedStore:
    """A `Store` that publishes each window-changing write to a `DeployFeed`; every
    other method (and attribute) is the wrapped store's own."""

    def __init__(self, store: Store, feed: DeployFeed) -> None:
        self._store = store
        self._feed = feed

    @property
    def wrapped(self) -> Store:
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create_window(
        self, window: DeployWindow, idempotency: IdempotentResponse | None = None
    ) -> WindowCreated:
        created = await self._store.create_window(window, idempotency)
        for old in created.superseded:
            self._feed.publish(old.id)
        return created

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, owner: str | None = None
    ) -> bool:
        stored = await self._store.record_round(record, verdict, owner)
        self._feed.publish(record.window_id)
        return stored

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
    ) -> bool:
        ended = await self._store.finish_window(window_id, state, verdict, at, rollback)
        self._feed.publish(window_id)
        return ended

    async def set_state(self, window_id: str, state: WindowState, expected: WindowState) -> bool:
        changed = await self._store.set_state(window_id, state, expected)
        self._feed.publish(window_id)
        return changed

    async def cancel_window(self, window_id: str, at: float) -> DeployWindow:
        window = await self._store.cancel_window(window_id, at)
        self._feed.publish(window_id)
        return window

    async def update_rollback(self, intent: RollbackIntent) -> None:
        await self._store.update_rollback(intent)
        self._feed.publish(intent.window_id)

    async def record_delivery(self, attempt: DeliveryAttempt) -> None:
        await self._store.record_delivery(attempt)
        self._feed.publish(attempt.window_id)

    async def record_alert(self, window_id: str, event: str, result: str, detail: str) -> None:
        await self._store.record_alert(window_id, event, result, detail)
        self._feed.publish(window_id)


def feed_store(store: Store, feed: DeployFeed) -> Store:
    """`store`, publishing its window changes to `feed`."""
    return cast(Store, FeedStore(store, feed))

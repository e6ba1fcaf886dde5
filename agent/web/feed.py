"""News of deploy windows for live pages: who waits on which deploy, and a store that
tells them when something about it was written.

`FeedStore` wraps the daemon's store: after each write that changes what a deploy's
page shows (a round, a verdict, a state, a rollback attempt, an alert), it wakes the
event streams of that deploy. Waking is all it does: the stream then reads the store,
so what a browser sees is always what was stored, never in-memory state. Changes made
by another replica arrive through `outbox` and `publish(remote=True)` on PostgreSQL
(`agent.web.pg_news`), else by the stream's periodic re-read.

What it must not do: change, delay or fail a write (publishing is a set of
`asyncio.Event.set()` calls after the write returned). A stored round travels with
its wake-up, so a live page's `round` event costs no read of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.records import (
    DeliveryAttempt,
    DeployWindow,
    Fence,
    Remembered,
    RollbackIntent,
    RoundRecord,
    WindowCreated,
    WindowState,
)
from agent.store.base import AlertClaim, AlertRetry, ProbeRun, SameDeployment, Store
from agent.store.proxy import StoreProxy


@dataclass(eq=False)
class Subscription:
    """What happened to one deploy since its reader last looked."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    rounds: list[RoundRecord] = field(default_factory=list)
    """Rounds stored meanwhile, as stored: a `round` event needs no read of the store."""
    changed: bool = False
    """Something else changed (a state, a rollback, an alert): read the store."""
    closed: bool = False
    """The agent is stopping: end the stream now (`DeployFeed.close`)."""

    def take(self) -> tuple[list[RoundRecord], bool]:
        self.wake.clear()
        rounds, changed = self.rounds, self.changed
        self.rounds, self.changed = [], False
        return rounds, changed


class DeployFeed:
    """In-process news per deploy id; safe to share across the application."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}
        self.outbox: Callable[[str], None] | None = None
        """Told of each change made by this process (`agent.web.pg_news`: other replicas)."""
        self.closed = False

    def publish(
        self, window_id: str, stored_round: RoundRecord | None = None, *, remote: bool = False
    ) -> None:
        """Wake `window_id`'s readers; `remote`: another replica changed it."""
        if self.outbox is not None and not remote:
            self.outbox(window_id)
        for sub in self._subscriptions.get(window_id, ()):
            if stored_round is not None:
                sub.rounds.append(stored_round)
            else:
                sub.changed = True
            sub.wake.set()

    def close(self) -> None:
        """The agent is stopping: wake every reader, and any later one, to end its stream
        (a live stream would otherwise hold the stop for the server's shutdown timeout,
        with rounds still running)."""
        self.closed = True
        for subs in self._subscriptions.values():
            for sub in subs:
                sub.closed = True
                sub.wake.set()

    @contextlib.contextmanager
    def subscribe(self, window_id: str) -> Iterator[Subscription]:
        """News of `window_id` until the block exits."""
        sub = Subscription(closed=self.closed)
        self._subscriptions.setdefault(window_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subscriptions.get(window_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscriptions[window_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())


FEED = web.AppKey("deploy_feed", DeployFeed)
"""The application's feed (set with the store it wraps, by `agent.app.build_app`)."""


class FeedStore(StoreProxy):
    """A `Store` that publishes each window-changing write to a `DeployFeed`; every
    other method (and attribute) is the wrapped store's own."""

    def __init__(self, store: Store, feed: DeployFeed) -> None:
        super().__init__(store)
        self._feed = feed

    async def create_window(
        self,
        window: DeployWindow,
        idempotency: Remembered | None = None,
        *,
        same: SameDeployment | None = None,
    ) -> WindowCreated:
        created = await self._store.create_window(window, idempotency, same=same)
        for old in created.superseded:
            self._feed.publish(old.id)
        return created

    async def record_round(
        self, record: RoundRecord, verdict: dict[str, Any] | None, fence: Fence | None = None
    ) -> bool:
        stored = await self._store.record_round(record, verdict, fence)
        self._feed.publish(record.window_id, record if stored else None)
        return stored

    async def finish_window(
        self,
        window_id: str,
        state: WindowState,
        verdict: dict[str, Any] | None,
        at: float,
        rollback: RollbackIntent | None = None,
        fence: Fence | None = None,
        alerts: Sequence[AlertClaim] = (),
        runs: Sequence[ProbeRun] = (),
    ) -> bool:
        ended = await self._store.finish_window(
            window_id, state, verdict, at, rollback, fence, alerts, runs
        )
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

    async def add_rollback(
        self, intent: RollbackIntent, at: float = 0.0, alerts: Sequence[AlertClaim] = ()
    ) -> bool:
        added = await self._store.add_rollback(intent, at, alerts)
        self._feed.publish(intent.window_id)
        return added

    async def begin_attempt(
        self, window_id: str, fence: Fence, now: float, until: float
    ) -> int | None:
        number = await self._store.begin_attempt(window_id, fence, now, until)
        self._feed.publish(window_id)
        return number

    async def settle_rollback(
        self,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Sequence[AlertClaim] = (),
    ) -> bool:
        settled = await self._store.settle_rollback(intent, attempt, alerts)
        self._feed.publish(intent.window_id)
        return settled

    async def record_alert(
        self,
        window_id: str,
        event: str,
        result: str,
        detail: str,
        retry_at: float | None = None,
        also: Sequence[str] = (),
    ) -> None:
        await self._store.record_alert(window_id, event, result, detail, retry_at, also)
        self._feed.publish(window_id)

    async def settle_alert_retry(
        self,
        retry: AlertRetry,
        result: str,
        detail: str,
        retry_at: float | None,
        also: Sequence[str] = (),
        *,
        retries: int | None = None,
    ) -> bool:
        settled = await self._store.settle_alert_retry(
            retry, result, detail, retry_at, also, retries=retries
        )
        self._feed.publish(retry.window_id)
        return settled


def feed_store(store: Store, feed: DeployFeed) -> Store:
    """`store`, publishing its window changes to `feed`."""
    return FeedStore(store, feed).as_store()

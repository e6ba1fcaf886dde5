"""Shared pieces of the rollback tests: a deploy window, its stored intent, a fake sleep,
a one-off rollback target."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from agent.records import DeployWindow, RollbackIntent
from agent.rollback.contract import rollback_intent
from agent.settings import RollbackSettings
from agent.store.sqlite import SqliteStore

SECRET = "s3cret-rollback-key"
DEPLOYED_AT = 1795701600.0  # 2026-11-26T14:00:00Z
REQUESTED_AT = 1795701690.0  # 2026-11-26T14:01:30Z
BREACH = {
    "rule": "probe-errors",
    "source": "checks",
    "metric": "error_rate",
    "observed": 0.31,
    "baseline": 0.0,
    "threshold": "max 0.05",
    "detail": "31 of 100 probes failed",
}


class FakeSleep:
    """Records each wait instead of waiting: backoff without wall-clock time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def make_window(window_id: str = "dep_01JDTEST", **kw: Any) -> DeployWindow:
    fields: dict[str, Any] = {
        "id": window_id,
        "environment": "production",
        "version": "v2.4.1",
        "previous_version": "v2.4.0",
        "commit": "9fceb02",
        "labels": {"pipeline": "run-1234"},
        "state": "watching",
        "deployed_at": DEPLOYED_AT,
        "ends_at": DEPLOYED_AT + 600,
        "created_at": DEPLOYED_AT,
    }
    fields.update(kw)
    return DeployWindow(**fields)


async def stored_intent(store: SqliteStore, window_id: str = "dep_01JDTEST") -> RollbackIntent:
    """What the watcher does on a failed verdict: the window ends and the intent is
    stored in the same transaction, before any attempt."""
    window = make_window(window_id)
    await store.create_window(window)
    intent = rollback_intent(window, "probe-errors failed", [BREACH], REQUESTED_AT)
    assert await store.finish_window(window.id, "failed", None, REQUESTED_AT, rollback=intent)
    return intent


def settings(url: str, **kw: Any) -> RollbackSettings:
    values: dict[str, Any] = {
        "url": url,
        "secret": SECRET,
        "max_attempts": 8,
        "timeout": 5.0,
        "backoff": 1.0,
        "max_backoff": 60.0,
    }
    values.update(kw)
    return RollbackSettings(**values)


@asynccontextmanager
async def rollback_target(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], route: str
) -> AsyncIterator[str]:
    """A rollback target of a test's own, answering POST `route` with `handler` on a free
    port: its URL without a path (`http://127.0.0.1:PORT`), stopped on leaving."""
    app = web.Application()
    app.router.add_post(route, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site.port
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()

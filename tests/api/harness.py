"""Building blocks for API tests (also used by tests/cli): settings, a recording
WindowEvents, a scripted fake watcher, and an app on a SqliteStore in a temp dir."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.api import create_api_app
from agent.api.routes import CLOCK
from agent.metrics import Metrics
from agent.settings import Settings
from agent.store.sqlite import SqliteStore
from agent.web.routes import mount as mount_pages
from tests.app_client import AppClient

T = TypeVar("T")
TOKEN = "test-api-token-1"
OTHER_TOKEN = "test-api-token-2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(production_window: str = "10m") -> Settings:
    env = {"base_url": "http://127.0.0.1:9", "window": "10m", "interval": "30s"}
    return Settings(
        server={"api_tokens": [TOKEN, OTHER_TOKEN]},
        environments={
            "production": {**env, "window": production_window},
            "staging": {**env, "window": "5m"},
        },
    )


@dataclass
class RecordingEvents:
    """WindowEvents that remembers what the API told it."""

    opened: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)

    def window_opened(self, window_id: str) -> None:
        self.opened.append(window_id)

    def window_ended(self, window_id: str) -> None:
        self.ended.append(window_id)


Script = Callable[[SqliteStore, str], Coroutine[Any, Any, None]]


@dataclass
class ScriptedWatcher(RecordingEvents):
    """A stand-in for the real watcher: on `window_opened` it runs `script(store, id)`
    on the server's loop, to move the window through rounds to a final state."""

    store: SqliteStore | None = None
    script: Script | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def window_opened(self, window_id: str) -> None:
        super().window_opened(window_id)
        if self.store is not None and self.script is not None:
            task = asyncio.get_running_loop().create_task(self.script(self.store, window_id))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


def make_app(
    store: SqliteStore,
    events: RecordingEvents,
    *,
    metrics: Metrics | None = None,
    clock: Callable[[], float] | None = None,
    settings: Settings | None = None,
) -> web.Application:
    app = create_api_app(settings or make_settings(), store, metrics or Metrics(), events)
    mount_pages(app)  # the deploy pages and the event stream, as the daemon has them
    if clock is not None:
        app[CLOCK] = clock
    return app


class LoopApi:
    """An API app running on its own event loop, for synchronous hypothesis tests: each
    example drives it through `request`; `five_hundreds` says whether any answer was a 5xx."""

    def __init__(self, db: Path, app_for: Callable[[SqliteStore, Metrics], web.Application]):
        self.loop = asyncio.new_event_loop()
        self.metrics = Metrics()
        self.store = SqliteStore(db)
        self.run(self.store.open())
        self.app = app_for(self.store, self.metrics)
        self.server = TestServer(self.app)
        self.client: AppClient = TestClient(self.server, loop=self.loop)
        self.run(self.client.start_server())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    def request(self, method: str, path: str, **kwargs: Any) -> int:
        async def go() -> int:
            async with self.client.request(method, path, **kwargs) as response:
                await response.read()
                return response.status

        return self.run(go())

    def five_hundreds(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "postflight_api_requests_total", {"result": "5xx"}
        )
        return value or 0.0

    def close(self) -> None:
        self.run(self.client.close())
        self.run(self.store.close())
        self.loop.close()


async def open_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


def rule(name: str, outcome: str, observed: float | None = 0.01, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": "checks",
        "metric": "error_rate",
        "outcome": outcome,
        "observed": observed,
        "baseline": 0.0,
        "threshold": "max 0.05",
        "detail": f"{name} detail",
        **extra,
    }

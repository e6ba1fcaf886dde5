"""One window watched to its end by the real watcher (`build_app`, no HTTP listener) on a
SQLite store a test slows at one write: the round-schedule test its round writes, the
overrun-cause test its lease renewals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.app import build_app
from agent.metrics import Metrics
from agent.records import DeployWindow, RoundRecord
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore

ENVIRONMENT = "slowdisk"
WINDOW_ID = "dep_slowdisk"


class EndAwaited(SqliteStore):
    """A SQLite store whose `finished` is set once a window's end is written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.finished = asyncio.Event()

    async def finish_window(self, *args: Any, **kwargs: Any) -> bool:
        ended = await super().finish_window(*args, **kwargs)
        self.finished.set()
        return ended


async def watched_to_its_end(
    store: EndAwaited,
    tmp_path: Path,
    target_url: str,
    *,
    window_s: float,
    interval: str,
    within: float,
    store_settings: str = "",
) -> tuple[DeployWindow | None, list[RoundRecord], Metrics]:
    """Window `WINDOW_ID` of `ENVIRONMENT` (one health check of `target_url`, an error-rate
    rule) registered now for `window_s` and watched on `store` until it ends (at most
    `within` s): the window as stored, its rounds and the agent's metrics.
    `store_settings`: more of the `store:` section (`, lease: 1s`)."""
    settings = load_settings_text(
        f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "sqlite:///{tmp_path / "unused.db"}"{store_settings}}}
environments:
  {ENVIRONMENT}:
    base_url: {target_url}
    window: {window_s * 1000:g}ms
    interval: {interval}
    background_interval: 1h
    checks:
      - {{name: health, type: http, path: /health, timeout: 1s}}
    rules:
      - {{name: errors, source: checks, metric: error_rate, max: 0.05}}
"""
    )
    metrics = Metrics()
    app = build_app(
        settings, store=store, metrics=metrics, poll_interval=0.05, background_probing=False
    )
    runner = web.AppRunner(app)
    await runner.setup()  # the store opens and the watcher starts
    try:
        now = time.time()
        await store.create_window(
            DeployWindow(
                WINDOW_ID, ENVIRONMENT, "v1", None, None, {}, "watching", now, now + window_s, now
            )
        )
        async with asyncio.timeout(within):
            await store.finished.wait()
        return await store.get_window(WINDOW_ID), await store.rounds(WINDOW_ID), metrics
    finally:
        await runner.cleanup()

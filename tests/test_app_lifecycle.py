"""The daemon's resources close one by one: a failing close skips none of the others."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp import web

from agent.app import build_app
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from checks.sessions import TargetSessions

CONFIG = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks: [{name: health, type: http, path: /health}]
"""


async def test_a_failing_close_does_not_skip_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[str] = []

    async def broken_close(self: RollbackDelivery) -> None:
        closed.append("delivery")
        raise RuntimeError("close failed")

    original = TargetSessions.aclose

    async def sessions_close(self: TargetSessions) -> None:
        closed.append("sessions")
        await original(self)

    monkeypatch.setattr(RollbackDelivery, "aclose", broken_close)
    monkeypatch.setattr(TargetSessions, "aclose", sessions_close)
    store = SqliteStore(tmp_path / "postflight.db")
    store_close = store.close

    async def close_store() -> None:
        closed.append("store")
        await store_close()

    monkeypatch.setattr(store, "close", close_store)
    app = build_app(load_settings_text(CONFIG), store=store, background_probing=False)
    runner = web.AppRunner(app)
    await runner.setup()
    with caplog.at_level(logging.ERROR, logger="postflight"):
        await runner.cleanup()
    assert closed == ["delivery", "sessions", "store"]  # the store, opened first, closes last
    assert "closing rollback delivery failed" in caplog.text


LOAD_CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 500ms
    checks: [{{name: feed, type: load, path: /, rate: 40/s, duration: 200ms, warmup: 0s}}]
"""


async def test_a_load_checks_connections_close_when_the_daemon_stops(tmp_path: Path) -> None:
    """A load check keeps its connections between runs (`checks.load.LoadPool`); the
    daemon's shutdown closes them, as the target sees it."""
    import asyncio

    from aiohttp.test_utils import TestServer

    seen: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        if not any(p is request.protocol for p in seen):
            seen.append(request.protocol)
        return web.Response(text="ok")

    target_app = web.Application()
    target_app.router.add_get("/", answer)
    target = TestServer(target_app, host="127.0.0.1")
    await target.start_server()
    try:
        text = LOAD_CONFIG.format(url=str(target.make_url("")).rstrip("/"))
        store = SqliteStore(tmp_path / "postflight.db")
        app = build_app(load_settings_text(text), store=store, poll_interval=0.05)
        runner = web.AppRunner(app)
        await runner.setup()  # the watcher starts: background probing runs the load check
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # its run (200 ms) is over; its connections stay open
        open_before = [p for p in seen if getattr(p, "transport", None) is not None]
        assert open_before, "the background run kept no connection open"
        await runner.cleanup()
        for _ in range(100):
            if all(getattr(p, "transport", None) is None for p in seen):
                break
            await asyncio.sleep(0.02)
        assert all(getattr(p, "transport", None) is None for p in seen)
    finally:
        await target.close()

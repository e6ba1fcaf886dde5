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

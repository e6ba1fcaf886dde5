"""The daemon's stop: its resources close, and a failing close skips none of the others;
a part that does not stop (a cancellation swallowed, a close that hangs) is named and left
within `server.shutdown_timeout`, and the store still closes last."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.app import build_app
from agent.appkeys import METRICS
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.supervisor import Watcher
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


STOP_CONFIG = CONFIG.replace("server: {", "server: {shutdown_timeout: 3s, ")
"""3 s, not the 1 s these tests had: the store keeps a sixteenth of the stop for its close,
62 ms of 1 s, which a machine at load 13 spent before it got there ("closing the store did
not finish within 0.0 s")."""


async def stopped_in_time(runner: web.AppRunner) -> bool:
    """Whether the stop (what SIGTERM runs) ends within the contract's bound: 3 s of
    `shutdown_timeout` and a margin for a loaded machine. Waited for with asyncio.wait,
    which no part of it swallowing a cancellation can hold."""
    cleanup = asyncio.create_task(runner.cleanup())
    done, _ = await asyncio.wait({cleanup}, timeout=7.0)
    if cleanup in done:
        cleanup.result()
    return cleanup in done


def closes_recorded(store: SqliteStore, closed: list[str]) -> None:
    store_close = store.close

    async def close_store() -> None:
        await store_close()
        closed.append("store")

    store.close = close_store  # type: ignore[method-assign]


@pytest.mark.timeout(30)
async def test_a_watcher_that_swallows_its_cancellation_is_named_and_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the stop awaited the cancelled watcher with no bound: it hung for good."""
    release = asyncio.Event()

    async def stubborn(self: Watcher) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    monkeypatch.setattr(Watcher, "run", stubborn)
    store = SqliteStore(tmp_path / "postflight.db")
    closed: list[str] = []
    closes_recorded(store, closed)
    app = build_app(load_settings_text(STOP_CONFIG), store=store, background_probing=False)
    runner = web.AppRunner(app)
    await runner.setup()
    (watcher,) = [t for t in asyncio.all_tasks() if t.get_name() == "watcher"]
    try:
        with caplog.at_level(logging.WARNING, logger="postflight"):
            assert await stopped_in_time(runner)
        assert not watcher.done()  # left, still swallowing
        assert closed == ["store"]
        (line,) = [r.getMessage() for r in caplog.records if "watcher" in r.getMessage()]
        assert line.startswith("stopping: watcher did not stop within "), line
        assert line.endswith("; leaving it"), line
    finally:
        release.set()
        await watcher


@pytest.mark.timeout(30)
async def test_a_close_that_hangs_is_cut_off_and_the_others_and_the_store_still_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the stop awaited each close with no bound: a hung one held it for good."""
    closed: list[str] = []

    async def hung_close(self: RollbackDelivery) -> None:
        await asyncio.Event().wait()  # a socket close that never completes

    original = TargetSessions.aclose

    async def sessions_close(self: TargetSessions) -> None:
        await original(self)
        closed.append("sessions")

    monkeypatch.setattr(RollbackDelivery, "aclose", hung_close)
    monkeypatch.setattr(TargetSessions, "aclose", sessions_close)
    store = SqliteStore(tmp_path / "postflight.db")
    closes_recorded(store, closed)
    app = build_app(load_settings_text(STOP_CONFIG), store=store, background_probing=False)
    runner = web.AppRunner(app)
    await runner.setup()
    with caplog.at_level(logging.WARNING, logger="postflight"):
        assert await stopped_in_time(runner)
    assert closed == ["sessions", "store"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("stopping: closing rollback delivery did not finish within "), line
    assert line.endswith("; cut off"), line


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
        else:
            raise AssertionError("the background run opened no connection")
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


async def test_a_loop_that_stops_on_a_bug_is_said_at_once_and_fails_readiness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher's loop once ended on a store error at its first look: the API went on
    registering windows that nothing watched, /readyz 200, and not a line said so."""
    store = SqliteStore(tmp_path / "postflight.db")
    app = build_app(load_settings_text(CONFIG), store=store, background_probing=False)
    async with TestClient(TestServer(app)) as client, client.get("/readyz") as ready:
        assert ready.status == 200  # the control: the real loops run
        assert (await ready.json())["checks"] == {"config": True, "store": True, "watching": True}

    async def buggy(self: Watcher) -> None:
        await asyncio.sleep(0)
        raise KeyError("a bug")

    monkeypatch.setattr(Watcher, "run", buggy)
    store = SqliteStore(tmp_path / "postflight.db")
    app = build_app(load_settings_text(CONFIG), store=store, background_probing=False)
    with caplog.at_level(logging.INFO, logger="postflight"):
        async with TestClient(TestServer(app)) as client:
            await asyncio.sleep(0.05)
            async with client.get("/readyz") as ready:
                assert ready.status == 503
                problem = await ready.json()
    assert problem["checks"] == {"config": True, "store": True, "watching": False}
    assert problem["detail"] == (
        "not ready: the watcher loop stopped (see the log; restart the agent)"
    )
    (said,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert said.getMessage() == (
        "the watcher loop stopped on KeyError; restart the agent (/readyz now fails)"
    )
    assert said.exc_info is not None and said.exc_info[0] is KeyError
    # and on a dashboard: `PostflightLoopStopped` pages on it (tests/config/alert_rules_test)
    up = app[METRICS].registry.get_sample_value
    assert up("postflight_watcher_up", {}) == 0
    assert up("postflight_integrations_up", {}) == 1

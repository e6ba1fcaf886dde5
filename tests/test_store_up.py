"""`postflight_store_up`: 0 while the store does not answer the agent, 1 while it does,
on a real SQLite store held by another process (an operator's `sqlite3` in `BEGIN
EXCLUSIVE`: every write of the agent's finds the file locked past `busy_timeout`).
A store outage under a running agent was said only in its log and by /readyz: no
dashboard or alert saw it (`PostflightStoreDown` in config/postflight-alerts.yml).
Read from /metrics, as a scraper reads it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.app import WATCHER, build_app
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from tests.app_client import AppClient
from tests.test_watcher_claims import CONFIG

pytestmark = pytest.mark.timeout(30)
TOKEN = "tok-1234567890abcdef"  # CONFIG's
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TURN = 0.05


@asynccontextmanager
async def held_by_another_process(path: Path) -> AsyncIterator[None]:
    """The file's write lock taken by another connection until the block exits; readers
    still read (WAL). Taken off the loop: the agent's transaction open meanwhile waits on
    the loop for its COMMIT."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=20)
    try:
        await asyncio.to_thread(other.execute, "BEGIN EXCLUSIVE")
        yield
        await asyncio.to_thread(other.execute, "ROLLBACK")
    finally:
        other.close()


async def store_up(client: AppClient) -> float:
    async with client.get("/metrics", params={"name[]": "postflight_store_up"}) as r:
        assert r.status == 200
        lines = [ln for ln in (await r.text()).splitlines() if ln.startswith("postflight_store_up")]
    assert len(lines) == 1, lines
    return float(lines[0].split()[1])


async def becomes(client: AppClient, value: float) -> None:
    for _ in range(200):  # 10 s at most, on a loaded machine
        if await store_up(client) == value:
            return
        await asyncio.sleep(TURN)
    raise AssertionError(f"postflight_store_up never became {value}")


def quick_store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    store.busy_timeout_ms = 50  # a write finds the lock held after 50 ms, not 5 s
    return store


def idle_agent(path: Path, metrics: Metrics, poll_interval: float) -> web.Application:
    """The agent on `path` with no window and no background probing: only the watcher's
    claims, every `poll_interval`, and the requests a test makes touch the store."""
    return build_app(
        load_settings_text(CONFIG),
        store=quick_store(path),
        metrics=metrics,
        poll_interval=poll_interval,
        background_probing=False,
    )


def claims_seen(app: web.Application) -> asyncio.Event:
    """Set once the watcher's claim has gone through, its `store_up` set just after, in
    the same step of the loop (a claim in flight can set it 1 at any later moment)."""
    watcher, seen = app[WATCHER], asyncio.Event()
    claim = watcher._claim

    async def counted() -> None:
        await claim()
        seen.set()

    watcher._claim = counted  # type: ignore[method-assign]
    return seen


async def test_an_idle_agent_says_the_store_down_and_up_again_from_its_claims(
    tmp_path: Path,
) -> None:
    """No window at all: the watcher's claim, a write every turn, is what tells it. The
    API's write refused (503) says it too; a read the store still answers does not say it
    up (writes, which judging deploys needs, still fail)."""
    path = tmp_path / "postflight.db"
    metrics = Metrics()
    app = idle_agent(path, metrics, poll_interval=TURN)
    assert metrics.registry.get_sample_value("postflight_store_up") == 0  # not opened yet
    async with TestClient(TestServer(app)) as client:
        assert await store_up(client) == 1
        async with held_by_another_process(path):
            await becomes(client, 0)
            async with client.get("/readyz") as r:  # its check is a read: it answers
                assert r.status == 200, await r.text()
            async with client.post(
                "/v1/deploys", json={"environment": "production", "version": "v2"}, headers=AUTH
            ) as r:
                assert r.status == 503, await r.text()
            assert await store_up(client) == 0
        await becomes(client, 1)
        async with client.post(
            "/v1/deploys", json={"environment": "production", "version": "v2"}, headers=AUTH
        ) as r:
            assert r.status == 201, await r.text()


async def test_an_api_write_refused_says_the_store_down_until_the_next_claim(
    tmp_path: Path,
) -> None:
    """The watcher's claims an hour apart (only the first at start): the 503 alone says
    it, and nothing but a claim says it up again."""
    path = tmp_path / "postflight.db"
    metrics = Metrics()
    app = idle_agent(path, metrics, poll_interval=3600)
    first_claim = claims_seen(app)
    async with TestClient(TestServer(app)) as client:
        # the first claim's own "up" lands after it, not inside the outage below: on a
        # loaded machine it was still under way when the lock was taken (CI, one run)
        await asyncio.wait_for(first_claim.wait(), 10)
        await becomes(client, 1)
        async with held_by_another_process(path):
            async with client.post(
                "/v1/deploys", json={"environment": "production", "version": "v2"}, headers=AUTH
            ) as r:
                assert r.status == 503, await r.text()
            assert await store_up(client) == 0
        async with client.get("/v1/deploys", headers=AUTH) as r:
            assert r.status == 200, await r.text()
        assert await store_up(client) == 0  # a read answered: no word on writes
        async with client.post(
            "/v1/deploys", json={"environment": "production", "version": "v2"}, headers=AUTH
        ) as r:
            assert r.status == 201, await r.text()  # wakes the watcher: a claim
        await becomes(client, 1)


async def test_readiness_that_finds_the_store_gone_says_it_down(tmp_path: Path) -> None:
    """/readyz's own check tells it too, whatever the loops do (the watcher's claims an
    hour apart here)."""
    store = quick_store(tmp_path / "postflight.db")
    app = build_app(
        load_settings_text(CONFIG), store=store, poll_interval=3600, background_probing=False
    )
    async with TestClient(TestServer(app)) as client:
        await becomes(client, 1)
        await store.close()
        async with client.get("/readyz") as r:
            body = await r.json()
            assert r.status == 503 and body["checks"]["store"] is False, body
        assert await store_up(client) == 0


WATCHED = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    interval: 200ms
    window: 1m
    checks: [{name: health, type: http, path: /health, timeout: 100ms}]
"""


async def test_a_watched_windows_write_refused_says_the_store_down(tmp_path: Path) -> None:
    """A window's round or lease the store did not take says it, the watcher's claims
    held (stuck, neither failing nor going through) so that nothing else does."""
    path = tmp_path / "postflight.db"
    app = build_app(
        load_settings_text(WATCHED),
        store=quick_store(path),
        poll_interval=TURN,
        background_probing=False,
    )
    watcher = app[WATCHER]
    async with TestClient(TestServer(app)) as client:
        async with client.post(
            "/v1/deploys", json={"environment": "production", "version": "v2"}, headers=AUTH
        ) as r:
            assert r.status == 201, await r.text()
        for _ in range(200):
            if watcher.tasks:
                break
            await asyncio.sleep(TURN)
        assert watcher.tasks, "the window was never watched"
        await becomes(client, 1)
        claim, claiming, claims_held = watcher._claim, asyncio.Event(), asyncio.Event()

        async def held() -> None:
            claiming.set()
            await claims_held.wait()
            await claim()

        watcher._claim = held  # type: ignore[method-assign]
        try:
            await claiming.wait()  # no claim under way: the one in the loop's hands is held
            async with held_by_another_process(path):
                await becomes(client, 0)
        finally:
            watcher._claim = claim  # type: ignore[method-assign]
            claims_held.set()
        await becomes(client, 1)

"""Fixtures for the API tests: an app on a SqliteStore in tmp_path and a test client."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from tests.api.harness import RecordingEvents, make_app, open_store
from tests.app_client import AppClient


@pytest.fixture
async def store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[SqliteStore]:
    path = tmp_path / "api.db"
    shutil.copyfile(sqlite_template, path)  # migrated once (tests/sqlite_template.py)
    store = await open_store(path)
    yield store
    await store.close()


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


NOW = datetime.fromisoformat("2026-11-26T14:01:00+00:00").timestamp()
"""The API's clock in these tests: a minute after the contract's example `deployed_at`
(and ticking from there), so the example's 10m window is still open."""


@pytest.fixture
def app(store: SqliteStore, events: RecordingEvents, metrics: Metrics) -> web.Application:
    start = time.time()
    return make_app(store, events, metrics=metrics, clock=lambda: NOW + time.time() - start)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], app: web.Application
) -> AppClient:
    return await aiohttp_client(app)

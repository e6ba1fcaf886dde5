"""Fixtures for the API tests: an app on a SqliteStore in tmp_path and a test client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from tests.api.harness import RecordingEvents, make_app, open_store

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await open_store(tmp_path / "api.db")
    yield store
    await store.close()


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()


@pytest.fixture
def app(store: SqliteStore, events: RecordingEvents, metrics: Metrics) -> web.Application:
    return make_app(store, events, metrics=metrics)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], app: web.Application
) -> Client:
    return await aiohttp_client(app)

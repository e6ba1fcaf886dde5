"""Fixtures for the alerting tests: real apprise targets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from tests.receivers import (  # noqa: F401  (fixtures, registered by import)
    hanging_server,
    json_sink,
    rollback_receiver,
    smtp_sink,
)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "postflight.db")
    await db.open()
    yield db
    await db.close()

"""Shared test set-up.

With POSTFLIGHT_REQUIRE_ALL=1 (set by .ci/run) a skipped test is a failure: CI
installs every system binary the tests need, so a skip there means something is
missing, and must not pass silently.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore

pytest_plugins = ["tests.receivers", "tests.pg"]

REQUIRE_ALL = os.environ.get("POSTFLIGHT_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped while POSTFLIGHT_REQUIRE_ALL=1: {reason}"


EXAMPLE_ENV = {
    "POSTFLIGHT_API_TOKEN": "test-api-token",
    "SENTRY_AUTH_TOKEN": "test-sentry-token",
    "NEW_RELIC_API_KEY": "test-newrelic-key",
    "ROLLBACK_SECRET": "test-rollback-secret",
}


@pytest.fixture
def example_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    return dict(EXAMPLE_ENV)


@pytest.fixture
def metrics() -> Metrics:
    """A fresh registry per test, so counts start at zero."""
    return Metrics()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open SQLite store in the test's temporary directory."""
    db = SqliteStore(tmp_path / "postflight.db")
    await db.open()
    yield db
    await db.close()

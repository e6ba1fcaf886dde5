"""Shared test set-up.

The whole suite runs on three pytest-xdist workers (`pytest_xdist_auto_num_workers`).
With POSTFLIGHT_REQUIRE_ALL=1 (set by .ci/run) a test that did not run is a failure
(`tests.require_all`). Hypothesis runs derandomised under the `ci` profile, which CI
selects (`HYPOTHESIS_PROFILE=ci`, or `CI=true` as CI services set it), so a CI run
tries the same examples every time and cannot be flaky.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore

pytest_plugins = ["pytester", "tests.require_all", "tests.receivers", "tests.pg"]

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)


SUITE_WORKERS = 3
"""Most of the suite waits on sockets, subprocesses and seconds-long windows: on this 2-core
machine two workers kept the cores 40% busy (303 s of CPU in 375 s), and three take 287 s
where two took 375. One worker more than the cores, never more than three: each worker
starts its own PostgreSQL, Prometheus and browser (session and module fixtures are per
process), and the timing tests of the `heavy` group (`tests/heavy.py`) share the cores with
the other two."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): workers for the whole suite (`pytest` with no
    paths, as the README and .ci/run run it), none for chosen tests, which would take
    longer to start workers than to run."""
    whole = config.args_source is pytest.Config.ArgsSource.TESTPATHS
    return min(SUITE_WORKERS, (os.cpu_count() or 1) + 1) if whole else 0


EXAMPLE_ENV = {
    "POSTFLIGHT_API_TOKEN": "test-api-token-0123456789",
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

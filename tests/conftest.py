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


CPU_BOUND = ("tests/analysis/", "tests/test_judge_")
"""Modules that keep a core busy from their first test to their last: the judge's simulated
windows. In path order they came one after another, so for a minute and a half every free
worker ran one of them (three or four busy processes on two cores), and later the e2e and
web modules, which mostly wait, came one after another and left the cores half idle."""

WAITING = ("tests/e2e/", "tests/web/")
"""Modules whose tests mostly wait: real daemons, windows of seconds, browsers."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the xdist workers (which hand the controller their order; all sort alike), the
    `CPU_BOUND` modules are spread evenly among the `WAITING` ones, where those stood in
    path order, so the workers' queue mixes tests that compute with tests that wait. A
    module's tests stay together and in order; the `xdist_group`s still go first
    (`--dist loadgroup` queues the largest groups first). A run without workers keeps
    pytest's order."""
    if not hasattr(config, "workerinput"):
        return
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    busy = [m for m in modules if m.startswith(CPU_BOUND)]
    waiting = [m for m in modules if m.startswith(WAITING)]
    if not busy or not waiting:
        return
    # busy module j goes after waiting module number (j + 1/2) * len(waiting) / len(busy)
    after: dict[str, list[str]] = {}
    for j, module in enumerate(busy):
        after.setdefault(waiting[int((j + 0.5) * len(waiting) / len(busy))], []).append(module)
    order: list[str] = []
    for module in modules:
        if module not in busy:
            order += [module, *after.get(module, [])]
    items[:] = [item for module in order for item in modules[module]]


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

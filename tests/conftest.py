"""Shared test set-up.

The whole suite runs on five pytest-xdist workers (`pytest_xdist_auto_num_workers`).
With POSTFLIGHT_REQUIRE_ALL=1 (set by .ci/run) a test that did not run is a failure
(`tests.require_all`). Hypothesis runs derandomised under the `ci` profile, which CI
selects (`HYPOTHESIS_PROFILE=ci`, or `CI=true` as CI services set it), so a CI run
tries the same examples every time and cannot be flaky.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore

pytest_plugins = [
    "pytester",
    "tests.require_all",
    "tests.receiver_fixtures",
    "tests.pg",
    "tests.prometheus",
    "tests.sqlite_template",
    "tests.warm_bytecode",
    "tests.one_directory_node",  # each folder's conftest fixtures, in any order of paths
    "tests.collector",
]

# No deadline: hypothesis' default (200 ms an example) is a wall-clock assertion, and on a
# busy 2-core machine an example of the judge's folds took longer now and then (a failure,
# or a "flaky" one when the replay was quicker); the suite asserts behaviour, not speed.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)


# The suite keeps the bytecode Python compiles, as Python does by default, even where the
# shell sets PYTHONDONTWRITEBYTECODE (some containers and sandboxes do): each of the
# hundreds of processes it starts (the xdist workers, every daemon, CLI and fake) compiled
# all it imported again, and each worker rewrote the asserts of every test module again.
# A daemon start took 1.46 s of CPU so, 1.11 s with the bytecode kept; the config, run-start
# and stuck-stop tests 42 s of CPU on two workers, 32 s. Set here, before the workers and
# the processes start, so they inherit it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


SUITE_WORKERS = 5
"""Most of the suite waits on sockets, subprocesses and seconds-long windows: on this 2-core
machine two workers kept the cores 40% busy (303 s of CPU in 375 s); three took 349 s with
the cores 57% busy (402 s of CPU), and four took 289 s with them 69% busy (all 2180 tests
passing, the same code, each run alone on the machine). Two workers more than the cores,
plus one for the `CPU_GROUP`: each worker starts its own PostgreSQL (session and module
fixtures are per process; the tests of a real Prometheus share one worker and one
Prometheus, `tests/prometheus.py`, those of a browser one worker and one Chromium,
`tests/web`), and the timing tests of the `heavy` group (`tests/heavy.py`) share the cores
with the others. Session 39 measured the suite's CPU by part (3239 tests at -n 2, each
test's own process and the processes it waited for): the e2e tests 144 s in 1,278 s of
wall, the judge's simulations (`CPU_GROUP`) 74 s, the rest 159 s; the run's whole tree
406 s. CI's 445 s on four workers so kept the two cores about half busy, and 412 of the
tests (the simulations) took a worker's turn from the waiting ones: now they have a worker
of their own, and the four others run the rest, where each spent a sixth of its time on
them in that run (at load 13-18, where the nice made them wait). A replay of that run's
durations on xdist's loadgroup order (groups first, largest first) puts five workers at
0.80 of four's wall, six at 0.66, before contention.
Five plain workers, tried in session 34 on a machine other work kept 99-100% busy (so no
wall-clock comparison): the workers took 250 s of CPU and the processes they started 166 s,
where four took 227 s and 147 s, and four timing tests failed on a starved agent loop
(probes dropped as the agent's), where four workers had one. The workers end within 7-13 s
of each other (session 34): the pinned groups are not the last to finish."""


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): workers for the whole suite (`pytest` with no
    paths, as the README and .ci/run run it), none for chosen tests, which would take
    longer to start workers than to run."""
    return min(SUITE_WORKERS, (os.cpu_count() or 1) + 3) if _whole_suite(config) else 0


def _whole_suite(config: pytest.Config) -> bool:
    """Whether this is `pytest` with no paths (the suite's testpaths), on the controller and
    on each worker alike."""
    return config.args_source is pytest.Config.ArgsSource.TESTPATHS


CPU_BOUND = (
    "tests/analysis/",
    "tests/test_judge_",
    "tests/test_readme_judge_probes.py",
    "tests/test_wait_loops_fail.py",
)
"""Modules that keep a core busy from their first test to their last: the judge's simulated
windows (the README's A/A figures too: 300 windows through the bench, 18 s of CPU alone,
45.7 s of a test in a full run at -n 2, where it ran at full priority beside the timing
tests on whichever worker took it), and the parse of every test module for its wait loops
(4 s of CPU, 49 s at load 26, past 60 s at load 38)."""

CPU_BOUND_TIMEOUT_S = 300
"""pytest-timeout's limit for a `CPU_BOUND` test without its own: pure computation, which
waits on nothing and so cannot hang on a socket, takes four to six times longer on a
saturated machine (its core shared with the other workers, other engineers and, while it
runs, `CPU_BOUND_NICE`), where 60 s cut simulations that take 10-20 s on a quiet one."""

CPU_BOUND_NICE = 10
"""How much the `CPU_BOUND` tests step back (`os.setpriority`) while they run on an xdist
worker: the other workers' timing tests (a round's probes, the heavy group's windows) then
get a core whenever they wake, and the simulations take what is left. The judge's
simulations are throughput: a few seconds later changes nothing they assert, while a
probe read 10 ms late by a starved agent is dropped as its own and a window judged on such
probes ends inconclusive (`checks.lag`). Only where the worker may step back up afterwards
(root, or an RLIMIT_NICE that allows it): a worker left at nice 10 would starve the timing
tests it runs next."""


_RENICE = pytest.StashKey[bool]()
"""Whether this worker steps its `CPU_BOUND` tests back (`_can_renice`, then as it went)."""


def _can_renice() -> bool:
    """Whether this process may go back to its nice after stepping back (`CPU_BOUND_NICE`)."""
    import resource

    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or 20 - soft <= os.getpriority(os.PRIO_PROCESS, 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """A `CPU_BOUND` test on an xdist worker runs at `CPU_BOUND_NICE` (its set-up and
    tear-down too), then the worker's priority is what it was."""
    config = item.config
    if not (hasattr(config, "workerinput") and item.nodeid.startswith(CPU_BOUND)):
        return (yield)
    if not config.stash.setdefault(_RENICE, _can_renice()):
        return (yield)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, base + CPU_BOUND_NICE)
    try:
        return (yield)
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, base)
        except PermissionError:  # not allowed after all: stay back, and step back no more
            config.stash[_RENICE] = False


CPU_GROUP = pytest.mark.xdist_group("cpu")
"""The `CPU_BOUND` tests share one worker (`--dist loadgroup`), one test at a time, where
they were spread over every worker: the other workers' timing tests so meet at most one
simulation (at `CPU_BOUND_NICE`) on the cores, and never wait behind one on their own
worker. A group of 412 tests, it is the largest and so starts first; it took 74 s of CPU
(the simulations wait on nothing), so its worker then runs the other tests too. In the
whole suite only (`_whole_suite`): chosen tests on `-n 2` (`pytest -n 2 tests/analysis`)
are spread over both workers as before."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which names each test by its group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A `CPU_BOUND` test is in `CPU_GROUP` (in the whole suite), and without a timeout of
    its own gets `CPU_BOUND_TIMEOUT_S`."""
    whole = _whole_suite(config)
    for item in items:
        if not item.nodeid.startswith(CPU_BOUND):
            continue
        if whole:
            item.add_marker(CPU_GROUP)
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CPU_BOUND_TIMEOUT_S))


EXAMPLE_ENV = {
    "POSTFLIGHT_API_TOKEN": "test-api-token-0123456789",
    "SENTRY_AUTH_TOKEN": "test-sentry-token",
    "NEW_RELIC_API_KEY": "test-newrelic-key",
    "ROLLBACK_SECRET": "test-rollback-secret",
}


@pytest.fixture(autouse=True)
def _root_logging_put_back() -> Iterator[None]:
    """What a test does to the root logger ends with it. `agent.logs.setup_logging` (the
    daemon's own set-up, called in-process by a few tests) leaves the root at its level: a
    test set DEBUG, and every later test in that worker had aiosqlite's DEBUG lines among
    its `caplog` records (a retention test failed in CI on 111 of them)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
async def store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[SqliteStore]:
    """An open SQLite store in the test's temporary directory."""
    path = tmp_path / "postflight.db"
    shutil.copyfile(sqlite_template, path)  # migrated once (tests/sqlite_template.py)
    db = SqliteStore(path)
    await db.open()
    yield db
    await db.close()

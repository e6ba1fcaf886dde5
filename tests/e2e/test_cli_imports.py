"""What a `postflight` command loads: only its own modules. A pipeline runs `register` on
every deploy, people run `status` and `--help`; the daemon's stack (the judge's numpy and
scipy, apprise, Sentry's and New Relic's SDKs, the web server, the store) costs a second
or more of CPU per process and none of them uses it (`bench/cli_start.py` has figures).

Each case runs the real entry point in a fresh interpreter and reads `sys.modules` after
the commands ran: a behaviour, not a timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TOKEN, AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

RUN_COMMANDS = """
import json, sys
from agent.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:  # --help and usage errors end this way
        codes.append(exc.code)
with open(sys.argv[2], "w") as out:
    json.dump({"codes": codes, "modules": sorted(sys.modules)}, out)
"""

DAEMON_ONLY = (
    "numpy",
    "scipy",
    "apprise",
    "sentry_sdk",
    "newrelic",
    "prometheus_client",
    "jinja2",
    "yaml",
    "aiohttp.web",
    "aiosqlite",
    "agent.settings",
    "agent.analysis",
    "agent.windows",
    "agent.store",
    "agent.app",
    "checks",
)
"""Modules no command that talks to an agent needs."""
CLIENT_ONLY = ("aiohttp", "pydantic", "asyncio", "agent.client", "agent.api.models")
"""Modules only a command that talks to an agent needs (not `--help`, not a usage error)."""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    env.update(PYTHONPATH=str(ROOT), NO_COLOR="1")
    return env


def _loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Those of `names` loaded, as packages: `numpy` counts `numpy.linalg` too."""
    return sorted({n for n in names for m in modules if m == n or m.startswith(n + ".")})


def _commands_run(
    commands: list[list[str]], env: dict[str, str], tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`commands` run by `RUN_COMMANDS` in a fresh interpreter: the process, its report."""
    result = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMANDS, json.dumps(commands), str(result)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(result.read_text())
    return done, report


def test_help_and_usage_errors_load_neither_the_client_nor_the_daemon(tmp_path: Path) -> None:
    commands = [
        ["--help"],
        ["register", "--help"],
        ["status", "--help"],
        ["rollback", "--help"],
        ["register", "--env", "production"],  # no --version: a usage error, exit 2
    ]
    done, report = _commands_run(commands, _env(tmp_path), tmp_path)
    assert "postflight register" in done.stdout  # the help was printed
    assert report["codes"] == [0, 0, 0, 0, 2], done.stderr
    assert _loaded(report["modules"], DAEMON_ONLY + CLIENT_ONLY) == []


async def test_register_and_status_against_an_agent_load_none_of_the_daemon(
    start_agent: AgentFactory, flip_target: FlipTarget, tmp_path: Path
) -> None:
    agent = await start_agent(environment("production", flip_target.url))
    connection = ["--url", agent.url, "--token", TOKEN]
    commands = [
        ["register", *connection, "--env", "production", "--version", "v1", "--wait"],
        ["status", *connection],
        ["status", *connection, "--env", "production", "--json"],
    ]
    result = tmp_path / "result.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_COMMANDS,
        json.dumps(commands),
        str(result),
        cwd=ROOT,
        env=_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(result.read_text())
    assert report["codes"] == [0, 0, 0], out.decode() + err.decode()  # the window passed
    assert "passed" in out.decode()
    modules: list[str] = report["modules"]
    assert _loaded(modules, CLIENT_ONLY) == sorted(CLIENT_ONLY)  # it did talk to the agent
    assert _loaded(modules, DAEMON_ONLY) == []


STATISTICS = ("numpy", "scipy", "agent.analysis.judge", "agent.analysis.stats")
"""The judge's statistics: the daemon judges, the commands that read a configuration do not."""
AT_WORK = ("aiohttp", "checks.exchange", "hdrh", "prometheus_client")
"""What the checks and the providers send requests, count latencies and count themselves
with: the settings load every check type and every configured provider for their config
models alone, and these were a third of a `validate-config`'s CPU (`bench/cli_start.py`)."""
EXAMPLE = ROOT / "config" / "postflight.example.yaml"


def test_reading_a_configuration_loads_neither_the_statistics_nor_the_http_client(
    tmp_path: Path,
) -> None:
    """`validate-config` and `schema` on the example configuration (every provider, every
    check type, both policies): the settings need the policies' names, not their numpy and
    scipy, and the checks' and providers' config models, not the client they send with or
    the daemon's metrics."""
    commands = [["validate-config", str(EXAMPLE)], ["schema", "-o", str(tmp_path / "s.json")]]
    env = _env(tmp_path)
    env.update(
        POSTFLIGHT_API_TOKEN="test-token-1234567",
        ROLLBACK_SECRET="s",
        SENTRY_AUTH_TOKEN="t",
        NEW_RELIC_API_KEY="k",
    )
    done, report = _commands_run(commands, env, tmp_path)
    assert report["codes"] == [0, 0], done.stdout + done.stderr
    assert "valid" in done.stdout
    assert _loaded(report["modules"], ("agent.settings",)) == ["agent.settings"]
    assert _loaded(report["modules"], STATISTICS) == []
    assert _loaded(report["modules"], AT_WORK) == []
    assert _loaded(report["modules"], DAEMON_AT_WORK) == []


DAEMON_AT_WORK = (
    "sentry_sdk",
    "newrelic",
    "jinja2",
    "aiosqlite",
    "asyncpg",
    "uvloop",
    "agent.app",
    "agent.web",
    "agent.api",
    "agent.client",
    "alerting.notifier",
)
"""What the running daemon reports, serves, sends and stores with: reading a configuration
needs none of them. The example names Sentry and New Relic as providers and two channels;
the settings check those, and the agent's own Sentry and New Relic SDKs, its web server,
its store and its alert sender load only in `run` (0.8 s of CPU to its first `/readyz`
with the judge's numpy and scipy, `bench/startup.py`)."""


def test_the_schema_loads_no_http_client_of_the_standard_library(tmp_path: Path) -> None:
    """`schema` (and a configuration with no alert channel, whose URLs apprise parses): the
    check types' `checks.bugs` knows http.client's errors as the target's, looked up once
    a check's client loaded it, not imported for it (8 ms of CPU with the email package)."""
    commands = [["schema", "-o", str(tmp_path / "s.json")]]
    done, report = _commands_run(commands, _env(tmp_path), tmp_path)
    assert report["codes"] == [0], done.stdout + done.stderr
    assert _loaded(report["modules"], ("checks.bugs",)) == ["checks.bugs"]
    assert _loaded(report["modules"], ("http.client", "apprise", "aiohttp")) == []

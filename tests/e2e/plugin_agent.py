"""`postflight run` as a process whose plugins (checks, providers) are installed in a
folder on its PYTHONPATH (`tests.plugin_site`), its JSON log read back as records."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from tests.cli_process import awaited_cli
from tests.e2e.crash import TOKEN, _env, request_json


def start(config: Path, log: Path, site: Path) -> subprocess.Popen[bytes]:
    """The agent on `config`, with `site`'s plugins, its log appended to `log` (a restart
    may share one): returned once this start says it is listening (60 s at the most)."""
    env = _env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    before = log.read_text() if log.exists() else ""
    with log.open("ab") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(config), "--log-format", "json"],
            env=env,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 60
    while "listening on" not in log.read_text()[len(before) :]:
        assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return agent


def state_after_restart(config: Path, log: Path, site: Path, deploy_url: str) -> str:
    """The deploy's state as the agent started again (`start`) shows it; killed then."""
    agent = start(config, log, site)
    try:
        return str(request_json("GET", deploy_url)["state"])
    finally:
        agent.kill()
        agent.wait()


def records(log: Path) -> list[dict[str, Any]]:
    """The JSON records of `log`, leaving out any other line (a traceback's, Python's)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


async def registered(url: str, *more: str, env: str = "production") -> tuple[int, str, str]:
    """`postflight register` of v2 on `env` at the agent at `url` (with `more`
    arguments): its exit code, its output and the deploy's id."""
    common = ("--url", url, "--token", TOKEN, "--env", env, "--version", "v2")
    code, said = await awaited_cli("register", *common, *more)
    found = re.search(r"dep_[0-9A-Z]{26}", said)
    assert found is not None, said
    return code, said, found.group()


async def registered_each(
    url: str, environments: Sequence[str], *more: str
) -> dict[str, tuple[int, str, dict[str, Any]]]:
    """`registered` on each of `environments` at once (with `more` arguments), then each
    deploy as the API shows it: by environment, the exit code, the output and the deploy
    (one agent's windows side by side, where each test started an agent of its own)."""
    answers = await asyncio.gather(*(registered(url, *more, env=env) for env in environments))
    found = {}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for env, (code, said, deploy_id) in zip(environments, answers, strict=True):
            async with http.get(f"{url}/v1/deploys/{deploy_id}") as answer:
                found[env] = (code, said, await answer.json())
    return found

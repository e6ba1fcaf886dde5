"""The README's "How a pipeline uses it" command, run by bash as written against a real
`postflight run`: only the agent's address is this test's (`--url`), and its window is
seconds long. Its other claims were proven flag by flag; the block itself never ran."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.cli.test_run_start import (
    TOKEN,
    agent_config,
    agent_env,
    listening_until_stopped,
    readme_blocks,
)
from tests.ports import free_port

README_URL = "https://postflight.internal:8787"


@pytest.mark.timeout(180)
async def test_the_readme_register_command_runs_as_written_and_exits_0_on_a_pass(
    tmp_path: Path, target: TestServer
) -> None:
    (block,) = readme_blocks("How a pipeline uses it")
    assert README_URL in block, block
    port = free_port()
    environments = (
        "environments:\n  production:\n"
        f"    base_url: {str(target.make_url('')).rstrip('/')}\n"
        "    window: 2s\n    interval: 300ms\n    probes_per_round: 3\n"
        "    checks:\n      - {name: api-health, type: http, path: /health}\n"
        "    analysis: {policy: threshold, failure_limit: 2}\n"
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
    )
    config = str(agent_config(tmp_path, port, environments))
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in agent_env().items() if not k.startswith("POSTFLIGHT")}
    env |= {"POSTFLIGHT_TOKEN": TOKEN, "GIT_SHA": "3f9c2ab"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    with listening_until_stopped(config, tmp_path / "agent.log"):
        for _ in range(3):  # a window the loaded machine's own stall held is registered again
            shell = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                block.replace(README_URL, url),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(shell.communicate(), 120)
            said = out.decode()
            if "agent overloaded" not in said:
                break
        assert shell.returncode == 0, said  # the table's 0: passed
        assert re.search(rf"page: {re.escape(url)}/deploys/dep_[0-9A-Z]{{26}}\?view=", said), said
        (deploy_id,) = set(re.findall(r"\bdep_[0-9A-Z]{26}\b", said))
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.get(f"{url}/v1/deploys/{deploy_id}") as answer,
        ):
            deploy = await answer.json()
        registered = {k: deploy[k] for k in ("version", "previous_version", "commit", "labels")}
        assert registered == {
            "version": "v2.4.1",
            "previous_version": "v2.4.0",
            "commit": "3f9c2ab",
            "labels": {"pipeline": "run-1234"},
        }, deploy
        assert deploy["state"] == "passed", deploy

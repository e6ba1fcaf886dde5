"""`postflight demo`'s agent runs in a process of its own (`agent.demo_agent`), so that on a
busy machine the demo's service, receivers and pipeline take none of its event loop's
time; self-contained as the demo is, and gone when the demo is."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import aiohttp
import pytest

from agent.demo import TOKEN, agent_address, agent_ready, demo_config, start_agent, stop_agent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

NOTHING = {"service": 9, "receiver": 9, "sink": 9}
"""The demo's service and receivers, on a port nothing listens on: not started here."""


async def started(tmp_path: Path) -> tuple[asyncio.subprocess.Process, str]:
    """The demo's agent on its configuration, on the port it took (`listen:
    127.0.0.1:0`, said on its standard output): the demo picked one by binding 0, reading
    it and closing, and another process could take it before the agent bound it."""
    config = tmp_path / "postflight.yaml"
    text = demo_config(NOTHING, tmp_path / "postflight.db")
    assert "listen: 127.0.0.1:0\n" in text
    config.write_text(text)
    agent = await start_agent(config)
    base = await agent_address(agent)
    if base is None:
        await stop_agent(agent)
        pytest.fail(f"the demo's agent did not say its address (exit {agent.returncode})")
    assert re.fullmatch(r"http://127\.0\.0\.1:[1-9][0-9]*", base), base
    async with aiohttp.ClientSession() as http:
        if not await agent_ready(http, base, agent):
            await stop_agent(agent)
            pytest.fail(f"the demo's agent did not answer /readyz (exit {agent.returncode})")
    return agent, base


async def test_the_agent_runs_apart_on_the_demo_config_whatever_the_shell_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("POSTFLIGHT__STORE__URL", f"sqlite:///{elsewhere}/leak.db")
    monkeypatch.setenv("POSTFLIGHT__SERVER__API_TOKENS", '["another-token"]')
    agent, base = await started(tmp_path)
    try:
        assert agent.pid != os.getpid()
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{base}/v1/deploys", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response,
        ):
            assert response.status == 200, await response.text()
    finally:
        code = await stop_agent(agent)
    assert code == 0
    assert (tmp_path / "postflight.db").exists()
    assert list(elsewhere.iterdir()) == []


async def test_the_agent_stops_when_the_demo_is_gone(tmp_path: Path) -> None:
    """The demo holds the agent's standard input: a demo killed outright (its end of the
    pipe closed by the kernel) leaves no agent behind."""
    agent, _ = await started(tmp_path)
    assert agent.stdin is not None
    agent.stdin.close()
    try:
        async with asyncio.timeout(30):
            code = await agent.wait()
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGKILL)
            await agent.wait()
    assert code == 0

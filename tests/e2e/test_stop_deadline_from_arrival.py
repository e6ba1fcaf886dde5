"""Contract §1's stop bound counts from the signal's arrival, not from when the event loop
gets to it: a check that blocks the loop (a plugin's synchronous call on it, 20 s here)
held the signal's handling, and so the hard bound's start, until the loop came back: the
exit landed 20 s + `shutdown_timeout` after the SIGTERM, past the bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli_process import stopped_as_the_block_ends
from tests.e2e.crash import free_port
from tests.e2e.plugin_agent import records, start
from tests.e2e.test_stop_stuck_parts import SHUTDOWN_TIMEOUT_S, config
from tests.plugin_site import install_distribution

pytestmark = pytest.mark.e2e

BLOCKING = '''
"""A check that blocks the event loop once told to: a synchronous call on it."""

import asyncio
import time
from pathlib import Path
from typing import Literal

from checks.base import Check, CheckConfig


class BlockingConfig(CheckConfig):
    type: Literal["stuck"] = "stuck"
    started: str


class BlockingCheck(Check):
    type = "stuck"
    Config = BlockingConfig
    background = True

    async def run(self, ctx):
        started = Path(self.config.started)
        go = started.with_name("go")
        while not go.exists():
            await asyncio.sleep(0.05)
        try:
            started.open("x").close()  # one run blocks; the next ones wait
        except FileExistsError:
            await asyncio.sleep(3600)
        time.sleep(20)  # the loop blocked: no callback, no signal handled by it
        started.with_name("woke").touch()
        await asyncio.sleep(3600)
'''


@pytest.mark.timeout(90)
def test_the_hard_bound_counts_from_the_signals_arrival_while_the_loop_is_blocked(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    install_distribution(
        site, "postflight-blocking-check", "[postflight.checks]\nstuck = blocking:BlockingCheck\n"
    )
    (site / "blocking.py").write_text(BLOCKING)
    port = free_port()
    started = tmp_path / "started"
    path = config(tmp_path, port, "check", started)
    log = tmp_path / "agent.log"
    with stopped_as_the_block_ends(start(path, log, site), log, within=60):
        (tmp_path / "go").touch()
        deadline = time.monotonic() + 30
        while not started.exists():  # the loop is blocked from here on, for 20 s
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    # the bound ended it while the loop was still blocked: the check never woke
    assert not (tmp_path / "woke").exists(), log.read_text()
    warnings = [r["msg"] for r in records(log) if r.get("level") == "warning"]
    said = f"stopping: still running {SHUTDOWN_TIMEOUT_S:g}s after the signal"
    assert [m for m in warnings if m.startswith(said)], warnings

"""A window is judged on what happened within it: an agent restarted after a window's end
finishes it on the rounds it had, and probes nothing for its late last round.

Before, the late last round probed the target as it was then. A bad version that went
live while the agent was down (its registration refused: no agent to take it) failed
the good window it had not been part of, and the rollback webhook was told to roll back
the good version. The providers' figures were already cut at the window's end.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_a_restart_after_the_windows_end_judges_it_on_its_own_rounds(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production",
        flip_target.url,
        window="3s",
        interval="500ms",
        analysis="{policy: threshold, failure_limit: 1}",
        extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}}}",
    )
    agent = await start_agent(env)
    deploy = await agent.register("production", "v2")
    await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 2, within=10)
    await agent.stop()

    flip_target.bad = True  # v3 goes live while no agent runs: 40% of answers are 5xx
    ends_at = datetime.fromisoformat(deploy["ends_at"]).timestamp()
    await asyncio.sleep(max(0.0, ends_at - time.time()) + 0.5)

    restarted = await start_agent(env)
    final = await restarted.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    assert receiver.attempts == []  # the good version was not rolled back

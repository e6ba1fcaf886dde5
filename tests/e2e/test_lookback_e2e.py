"""Contract §6's `lookback` ("the baseline period before the deploy") on the running agent:
the background probes a target failing 40% of its answers, then a healthy one; a deploy
registered once the healthy spell is longer than a short lookback has a baseline of 0%
(the failing runs are before its lookback), where a lookback reaching back over them
has them in it. Read from the deploy object's rule `baseline` (§2). Only unit tests of
the baseline's reads held the period's start."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment

pytestmark = pytest.mark.timeout(120)

HEALTHY_S = 4.0
"""How long the target is healthy before the deploy: twice the short lookback."""


@pytest.mark.parametrize("lookback", ["2s", "1m"])
async def test_a_deploys_baseline_is_the_lookback_before_it(
    start_agent: AgentFactory, flip_target: FlipTarget, lookback: str
) -> None:
    flip_target.bad = True  # two of every five answers fail, from the first run
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window="1s",
            interval="500ms",
            analysis="{policy: threshold}",
            rules=("{name: errors, source: checks, metric: error_rate, max_increase: 100%}",),
            extra=f"lookback: {lookback}",
        )
    )
    failing = await agent.stored_runs("production", 5)
    flip_target.bad = False
    healthy = await agent.stored_runs("production", failing + 6)
    await asyncio.sleep(HEALTHY_S)
    assert await agent.stored_runs("production", healthy + 2) > healthy  # still probing
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"])
    (rule,) = final["verdict"]["rules"]
    if lookback == "2s":
        assert rule["baseline"] == 0, rule
    else:
        assert 0 < rule["baseline"] < 0.4, rule  # the failing runs in it, and healthy ones

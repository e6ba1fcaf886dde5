"""A deploy registered after its `deployed_at`, as a pipeline that reports it late does:
its window runs only the rounds left (`RoundSchedule.next_slot` passes over the slots
already past), and what registration says of it counts those rounds, not the whole
window's (the window's judge too: tests/test_round_clock.py)."""

from __future__ import annotations

import time

from common.times import rfc3339
from tests.e2e.conftest import AgentFactory, FlipTarget, environment


async def test_a_deploy_registered_late_is_told_what_the_rounds_left_can_detect(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """An 8 s window of 0.2 s rounds (20 probes each) registered 7.7 s after its start runs
    its last one or two rounds: too few for `error_rate max 0.05` to see its bound, which
    its 40 rounds on time can. It was told the whole window's 40 rounds, and no warning."""
    env = environment(
        "production",
        flip_target.url,  # healthy: never flipped
        window="8s",
        interval="200ms",
        probes=20,
        analysis=None,  # the default: sequential, passing on evidence
        rules=["{name: errors, source: checks, metric: error_rate, max: 0.05}"],
        extra="lookback: 1m",
    )
    agent = await start_agent(env)
    # runs from before the late deploy's start: its baseline (the lookback before it)
    await agent.stored_runs("production", 50)
    on_time = await agent.register("production", "v1")
    await agent.cancel(on_time["id"])
    assert not on_time.get("warnings"), on_time["warnings"]
    late = await agent.register("production", "v2", deployed_at=rfc3339(time.time() - 7.7))
    await agent.cancel(late["id"])
    said = late.get("warnings") or []
    assert [s.split(":")[0] for s in said] == ["rule errors"], said
    assert "tighter than the smallest change it can detect by the window's end" in said[0], said

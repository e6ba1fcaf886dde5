"""A failed window's evidence names its rounds as the deploy object counts them: the
rounds of `failing_rounds` and `failed_at_round` are numbers of stored rounds (the first
is 1, as `rounds`, `progress.round` and the round events count), the last being the
round that failed the window (they were the judge's 0-based indices, one less)."""

from __future__ import annotations

import pytest

from agent.appkeys import STORE
from tests.e2e.conftest import THRESHOLD, AgentFactory, FlipTarget, environment


@pytest.mark.parametrize("analysis", [THRESHOLD, "{policy: sequential}"])
async def test_a_failed_windows_evidence_counts_rounds_as_the_deploy_object(
    start_agent: AgentFactory, flip_target: FlipTarget, analysis: str
) -> None:
    flip_target.bad = True  # 40% errors from the first round against max 5%
    agent = await start_agent(
        environment("production", flip_target.url, window="6s", probes=10, analysis=analysis)
    )
    deploy = await agent.register("production", "v-bad")
    final = await agent.settled(deploy["id"], within=30)
    assert final["state"] == "failed", final["verdict"]
    (rule,) = final["verdict"]["rules"]
    assert rule["outcome"] == "fail"
    evidence = rule["evidence"]
    stored = {r.number: r.summary for r in await agent.app[STORE].rounds(deploy["id"])}
    assert sorted(stored) == list(range(1, final["rounds"] + 1))
    # the round that failed the window is the last one stored, counted as `rounds` is
    assert evidence["failed_at_round"] == final["rounds"], evidence
    if analysis == THRESHOLD:  # failure_limit 2: the last two rounds, each past the bound
        assert evidence["failing_rounds"] == [final["rounds"] - 1, final["rounds"]], evidence
        for number in evidence["failing_rounds"]:
            assert stored[number]["rules"]["probe-errors"]["streak"] >= 1, stored[number]

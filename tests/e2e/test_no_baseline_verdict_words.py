"""A window whose only rule had data every round but no baseline ends `inconclusive`
saying so, in the API's verdict and the alert at a json:// sink: it said "no rule had
data to judge over 5 rounds", sending on-call to a target that answered every probe."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.receivers import JsonSink, alert_titled

pytestmark = pytest.mark.e2e

RELATIVE = "{name: p95, source: checks, metric: latency_p95, max_increase: 50%}"


@pytest.mark.timeout(60)
async def test_a_rule_with_data_and_no_baseline_is_not_said_to_have_no_data(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    agent = await start_agent(
        # the agent's own empty store, the deploy registered as it starts: no background run
        environment("production", flip_target.url, background_interval="30s", rules=(RELATIVE,)),
        f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
    )
    deploy = await agent.register("production", "v1")
    final = await agent.settled(deploy["id"], within=20)
    note = await alert_titled(json_sink, "inconclusive")
    assert final["state"] == "inconclusive", final["verdict"]
    [rule] = final["verdict"]["rules"]
    assert rule["observed"] is not None and rule["detail"].startswith("no baseline"), rule
    reason = final["verdict"]["reason"]
    assert "had data" not in reason, reason  # it had, every round
    assert re.fullmatch(r"no rule could be judged over \d+ rounds: p95: no baseline", reason), (
        reason
    )
    assert f"**Why:** {reason}" in note.message, note.message

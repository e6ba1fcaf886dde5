"""The README's rules: `source: checks` with `metric` `throughput`, the requests a check's
target answered a second. It counted every probe, failed or not: a target that answered
none (nothing listening) kept a steady 16.7 probes a second at 5 probes a 300 ms round,
and a rule `min: 5` passed it. Counted so, a throughput rule could never see a release
that stopped serving."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, environment
from tests.ports import free_port

pytestmark = pytest.mark.e2e

SERVED = "{name: served, source: checks, metric: throughput, min: 5}"


@pytest.mark.timeout(60)
async def test_a_target_that_answers_nothing_has_no_throughput(start_agent: AgentFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every probe refused
    agent = await start_agent(environment("production", dead, rules=[SERVED], window="1200ms"))
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=30)
    assert final["state"] == "failed", final
    (rule,) = final["verdict"]["rules"]
    assert rule["name"] == "served" and rule["outcome"] == "fail", rule
    assert rule["observed"] == 0, rule

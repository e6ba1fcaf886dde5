"""The README's bare values of either sign, on the running agent against a real Prometheus:
a query (`vector(...)`, no series needed) whose value goes below 0 keeps the threshold
streak from that round, and the verdict says so (`drift went below 0 (-7): the sequential
bound covers values ≥ 0, threshold streak from round …`); one that stays below its `max`
passes by the streak alone, which the reason and the alert say is no evidence that it
holds. Truth from outside: rollbacks at the receiver, alerts at the json:// sink."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, RunningAgent
from tests.e2e.providers_support import (
    alerting_yaml,
    deploy_second,
    environment_yaml,
    iso_z,
    providers_yaml,
)
from tests.prometheus import ONE_PROMETHEUS, PrometheusStack
from tests.receivers import JsonSink, RollbackReceiver, alert_titled

pytestmark = [pytest.mark.e2e, ONE_PROMETHEUS]


def drift_rule(query: str) -> str:
    return f"""\
    - name: drift
      source: prometheus
      query: '{query}'
      max: 1
"""


async def drift_agent(
    start_agent: AgentFactory,
    prometheus_stack: PrometheusStack,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    query: str,
    window: str,
) -> RunningAgent:
    """The agent watching `drift` alone on the real Prometheus (no Sentry, no New Relic),
    rolling back to `receiver` and alerting `json_sink`."""
    return await start_agent(
        environment_yaml(
            drift_rule(query),
            rollback_url=receiver.url,
            secret=SECRET,
            window=window,
            sentry=False,
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(prometheus_url=prometheus_stack.url),
    )


async def test_a_value_gone_below_0_is_judged_by_the_streak_from_that_round(
    prometheus_stack: PrometheusStack,
    rollback_receiver: Any,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """-7 for the window's first 2 s, then 6 (past `max: 1`): two rounds in a row past it
    fail the rule (`failure_limit: 2`), and the reason names the round the streak judges
    from."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    t0 = deploy_second()
    query = f"vector(-7 + 13 * (time() >= bool {t0 + 2}))"
    agent = await drift_agent(start_agent, prometheus_stack, receiver, json_sink, query, "8s")
    deploy = await agent.register("production", "v2", deployed_at=iso_z(t0))
    final = await agent.settled(deploy["id"], within=30)
    verdict = final["verdict"]
    assert final["state"] == "rolled_back", json.dumps(verdict)
    assert verdict["reason"].startswith("drift:"), verdict["reason"]
    # a round's value is Prometheus' over the round's period, so the first below 0 may be
    # a mean of -7 and 6: its figure and round are the provider's, the words the judge's
    said = re.fullmatch(
        r"drift: query \S+ > max 1 for 2 rounds \(drift went below 0 \((-[\d.]+)\): the"
        r" sequential bound covers values ≥ 0, threshold streak from round (\d+)\)",
        verdict["reason"],
    )
    assert said is not None, verdict["reason"]
    assert -7 <= float(said[1]) < 0 and int(said[2]) <= 3, verdict["reason"]
    assert len(receiver.attempts) == 1


async def test_a_value_below_0_within_its_max_passes_by_the_streak_alone(
    prometheus_stack: PrometheusStack,
    rollback_receiver: Any,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    t0 = deploy_second()
    agent = await drift_agent(
        start_agent, prometheus_stack, receiver, json_sink, "vector(-7)", "3s"
    )
    deploy = await agent.register("production", "v2", deployed_at=iso_z(t0))
    final = await agent.settled(deploy["id"], within=30)
    verdict = final["verdict"]
    assert final["state"] == "passed", json.dumps(verdict)
    assert "by the threshold streak alone" in verdict["reason"], verdict["reason"]
    assert "no evidence that it is within its bound" in verdict["reason"], verdict["reason"]
    passed = await alert_titled(json_sink, "passed")
    assert "Not every rule was shown within its bound" in passed.message, passed.message
    assert "drift" in passed.message and "threshold streak" in passed.message, passed.message
    assert receiver.attempts == []

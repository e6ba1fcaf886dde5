"""The README's `fixed` policy (Kayenta-like) on the running agent: one two-proportion test
at the window's end against the background baseline, with the rule's tolerance. A deploy
failing 30% of its probes (2% before) is rolled back at its last round, not before; one
like its baseline passes. Truth from outside: rollbacks are counted at the receiver."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.e2e.conftest import SECRET, AgentFactory, environment
from tests.e2e.test_evidence_e2e import NoisyTarget
from tests.heavy import HEAVY
from tests.receivers import RollbackReceiver

pytestmark = HEAVY

ROUNDS = 10


async def test_the_fixed_policy_decides_once_at_the_windows_end(
    start_agent: AgentFactory, rollback_receiver: Any
) -> None:
    bad, good = NoisyTarget(1), NoisyTarget(2)
    for target in (bad, good):
        target.error_rate = 0.02
        await target.start()
    try:
        receiver: RollbackReceiver = await rollback_receiver(SECRET)
        rules = ("{name: errors, source: checks, metric: error_rate, max_increase: 100%}",)
        extra = f"lookback: 1m\nrollback: {{url: {receiver.url}, secret: {SECRET}}}"
        agent = await start_agent(
            "".join(
                environment(
                    name,
                    target.url,
                    window="3s",
                    interval="300ms",
                    background_interval="200ms",
                    probes=20,
                    timeout="2s",
                    analysis="{policy: fixed, confidence: 0.99}",
                    rules=rules,
                    extra=extra,
                )
                for name, target in (("bad", bad), ("good", good))
            )
        )
        await asyncio.sleep(4.0)  # background runs: the baseline, 2% errors
        bad.error_rate = 0.30
        failing = await agent.register("bad", "v-errors")
        passing = await agent.register("good", "v-same")
        failed = await agent.settled(failing["id"], within=30)
        passed = await agent.settled(passing["id"], within=30)
    finally:
        for target in (bad, good):
            await target.stop()
    assert failed["state"] == "rolled_back", failed["verdict"]
    assert failed["rounds"] == ROUNDS, failed  # nothing decided before the end
    reason = failed["verdict"]["reason"]
    assert reason.startswith("errors: error_rate ") and "past max_increase 100% at the end" in (
        reason
    ), reason
    (rule,) = failed["verdict"]["rules"]
    assert rule["evidence"]["test"] == "two-proportion z", rule
    assert rule["evidence"]["p_value"] < 0.01, rule
    assert passed["state"] == "passed", passed["verdict"]
    assert [json.loads(a.body)["deploy"]["version"] for a in receiver.attempts] == ["v-errors"]

"""The README's `fixed` policy (Kayenta-like) on the running agent: one two-proportion test
at the window's end against the background baseline, with the rule's tolerance. A deploy
failing 30% of its probes (2% before) is rolled back at its last round, not before; one
like its baseline passes. Truth from outside: rollbacks are counted at the receiver."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.e2e.conftest import SECRET, AgentFactory, LocalTarget, environment, held_as_overloaded
from tests.heavy import HEAVY
from tests.receivers import RollbackReceiver

pytestmark = HEAVY

ROUNDS, INTERVAL_S = 10, 0.3


def when(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class EveryNthFails(LocalTarget):
    """Fails one request in `every`, counted (no draw: its baseline and window alike)."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every, self.seen = every, 0

    async def health(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen % self.every == 0:
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


async def fixed_windows(
    start_agent: AgentFactory, receiver: RollbackReceiver
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A bad deploy (2% of probes failing, then 30%) and a good one (2%, then 2%), each in
    an environment of its own under the fixed policy: their final states."""
    bad, good = EveryNthFails(50), EveryNthFails(50)
    for target in (bad, good):
        await target.start()
    try:
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
        for name in ("bad", "good"):  # the baseline: 2% errors in 300 probes or more
            await agent.stored_runs(name, 15)
        bad.every = 3  # 33%
        failing = await agent.register("bad", "v-errors")
        passing = await agent.register("good", "v-same")
        failed = await agent.settled(failing["id"], within=30)
        passed = await agent.settled(passing["id"], within=30)
        await agent.stop()
    finally:
        for target in (bad, good):
            await target.stop()
    return failed, passed


async def test_the_fixed_policy_decides_once_at_the_windows_end(
    start_agent: AgentFactory, rollback_receiver: Any
) -> None:
    for _ in range(2):  # an overloaded machine's hold is the agent's by design: once more
        receiver: RollbackReceiver = await rollback_receiver(SECRET)
        failed, passed = await fixed_windows(start_agent, receiver)
        if not (held_as_overloaded(failed) or held_as_overloaded(passed)):
            break
    assert failed["state"] == "rolled_back", failed["verdict"]
    # nothing decided before the last round (a loaded machine's late round may be skipped)
    decided, ends = (when(failed["verdict"]["decided_at"]), when(failed["ends_at"]))
    assert decided >= ends - INTERVAL_S and failed["rounds"] >= ROUNDS - 2, failed
    reason = failed["verdict"]["reason"]
    assert reason.startswith("errors: error_rate ") and "past max_increase 100% at the end" in (
        reason
    ), reason
    (rule,) = failed["verdict"]["rules"]
    assert rule["evidence"]["test"] == "two-proportion z", rule
    assert rule["evidence"]["p_value"] < 0.01, rule
    assert passed["state"] == "passed", passed["verdict"]
    assert [json.loads(a.body)["deploy"]["version"] for a in receiver.attempts] == ["v-errors"]

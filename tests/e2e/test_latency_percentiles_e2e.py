"""The example's checks metrics (contract §6: `error_rate | latency_p50 | latency_p95 |
latency_p99 | throughput`) read their own percentile on the running agent: a target
answering three of every ten requests after 400 ms and the rest at once is under a 300ms
bound at its median and past it at its p95 and p99, so under the threshold policy the
p95 and p99 rules fail the window and the p50 rule passes, each observed as the deploy
object (§2) says. Only the judge's unit tests told the percentiles apart."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tests.e2e.conftest import AgentFactory, LocalTarget, environment, one_deploy_settled

pytestmark = pytest.mark.timeout(120)

SLOW_S = 0.4


class ThreeInTenSlow(LocalTarget):
    """Requests 0-2 of every ten answered after `SLOW_S`, the others at once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    async def health(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen % 10 < 3:
            await asyncio.sleep(SLOW_S)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


async def test_each_latency_rule_reads_its_own_percentile(start_agent: AgentFactory) -> None:
    target = ThreeInTenSlow()
    await target.start()
    try:
        final = await one_deploy_settled(
            start_agent,
            environment(
                "production",
                target.url,
                window="20s",
                interval="1s",
                probes=10,
                timeout="2s",
                analysis="{policy: threshold, failure_limit: 1}",
                rules=tuple(
                    f"{{name: {q}, source: checks, metric: latency_{q}, max: 300ms}}"
                    for q in ("p50", "p95", "p99")
                ),
            ),
        )
    finally:
        await target.stop()
    assert final["state"] == "failed", final
    rules = {r["name"]: r for r in final["verdict"]["rules"]}
    assert {name: r["outcome"] for name, r in rules.items()} == {
        "p50": "pass",
        "p95": "fail",
        "p99": "fail",
    }, rules
    assert rules["p50"]["observed"] < 0.3, rules["p50"]
    assert rules["p95"]["observed"] >= SLOW_S and rules["p99"]["observed"] >= SLOW_S, rules

"""The example's checks rules (contract §6) on the running agent: `probe-errors` (`source:
checks`, no `check`) reads every check's probes, `health-latency` (`check: api-health`)
only that check's. Three checks on one target: `api-health` answers at once, `slow`
after 400 ms, `bad` with a 503 at once. The deploy object's rules (§2) say: the error
rate of all probes is a third (neither 0 nor 1), api-health's is 0; api-health's p95 is
under the 300ms bound, slow's over it, and that rule alone fails the window."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tests.e2e.conftest import AgentFactory, LocalTarget, one_deploy_settled

pytestmark = pytest.mark.timeout(120)

SLOW_S = 0.4


class ThreeWays(LocalTarget):
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)
        return web.json_response({"status": "ok"})

    async def bad(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "error"}, status=503)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/slow", self.slow)
        app.router.add_get("/api/bad", self.bad)


ENVIRONMENT = """\
production:
  base_url: {url}
  window: 20s
  interval: 1s
  probes_per_round: 3
  checks:
    - {{name: api-health, type: http, path: /api/health, timeout: 2s}}
    - {{name: slow, type: http, path: /api/slow, timeout: 2s}}
    - {{name: bad, type: http, path: /api/bad, timeout: 2s}}
  analysis: {{policy: threshold, failure_limit: 1}}
  rules:
    - {{name: probe-errors, source: checks, metric: error_rate, max: 0.5}}
    - {{name: health-errors, source: checks, check: api-health, metric: error_rate, max: 0.05}}
    - {{name: health-latency, source: checks, check: api-health, metric: latency_p95, max: 300ms}}
    - {{name: slow-latency, source: checks, check: slow, metric: latency_p95, max: 300ms}}
"""


async def test_a_checks_rule_reads_its_check_or_every_check(start_agent: AgentFactory) -> None:
    target = ThreeWays()
    await target.start()
    try:
        final = await one_deploy_settled(start_agent, ENVIRONMENT.format(url=target.url))
    finally:
        await target.stop()
    assert final["state"] == "failed", final
    rules = {r["name"]: r for r in final["verdict"]["rules"]}
    outcomes = {name: rule["outcome"] for name, rule in rules.items()}
    assert outcomes == {
        "probe-errors": "pass",
        "health-errors": "pass",
        "health-latency": "pass",
        "slow-latency": "fail",
    }, rules
    # every check's probes: bad's all failed, the others' none (a third, unless a probe the
    # agent's own stall dropped made the checks' counts differ)
    assert 0 < rules["probe-errors"]["observed"] < 1, rules["probe-errors"]
    assert rules["health-errors"]["observed"] == 0, rules["health-errors"]
    assert rules["health-latency"]["observed"] < 0.3, rules["health-latency"]
    assert rules["slow-latency"]["observed"] >= SLOW_S, rules["slow-latency"]

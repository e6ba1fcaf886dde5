"""A passed window's end alert gives the window's figures, not its last round's (contract
§4: the alert names the rules, observed vs baseline vs threshold). Under the threshold
policy the first round's probes fail (past `max`, one round of `failure_limit` 3), the
rest pass: the window's `probe-errors` is those failures of every probe, where the last
round's was `0 of 3 probes failed`, under a reason `over N rounds`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import AgentFactory, LocalTarget, RunningAgent, unless_held
from tests.receivers import JsonSink, alert_titled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

FAILING = 3
"""Probes that fail first: the first round's, all of them."""


class FailsFirst(LocalTarget):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    async def health(self, request: web.Request) -> web.Response:
        self.seen += 1
        if self.seen <= FAILING:
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


ENVIRONMENT = """\
production:
  base_url: {url}
  window: 5s
  interval: 1s
  probes_per_round: 3
  checks:
    - {{name: api-health, type: http, path: /api/health, timeout: 2s}}
  analysis: {{policy: threshold, failure_limit: 3}}
  rules:
    - {{name: probe-errors, source: checks, metric: error_rate, max: 0.5}}
"""


async def test_a_passed_alert_gives_the_windows_counts(
    start_agent: AgentFactory, json_sink: JsonSink
) -> None:
    target = FailsFirst()
    await target.start()

    async def run() -> tuple[RunningAgent, dict[str, Any]]:
        target.seen = 0  # each deploy's first round fails
        agent = await start_agent(
            ENVIRONMENT.format(url=target.url),
            f"alerting:\n  channels:\n    - url: {json_sink.url()}\n",
        )
        deploy = await agent.register("production", "v2")
        return agent, await agent.settled(deploy["id"], within=60)

    try:
        final = await unless_held(run)  # a window the machine's own stall held: again
    finally:
        await target.stop()
    assert final["state"] == "passed", final
    [rule] = final["verdict"]["rules"]
    said = re.match(r"(\d+) of (\d+) probes failed", rule["detail"])
    assert said is not None, rule
    # a failing probe may be the agent's own (before the window's rounds): at least one is
    failed, total = int(said[1]), int(said[2])
    assert 0 < failed <= FAILING and total > 3, rule
    assert rule["observed"] == pytest.approx(failed / total), rule
    alert = await alert_titled(json_sink, "passed")
    assert f"{failed} of {total} probes failed" in alert.message, alert.message
    assert "0 of 3 probes failed" not in alert.message, alert.message

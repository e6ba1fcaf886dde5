"""The threshold policy passes what did not fail, but a pass rests on a round within the
bound: a rule whose only round with data was past its bound (too few rounds to fail, its
provider answering nothing usable at the others) ends the window `inconclusive`, saying
so, where it passed on that one breaching round. Driven through the daemon's API with a
Prometheus that answers one round's fetch with a 5xx ratio of 50% (max 5%) and 503 to
every other, the truth counted at that Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import PROBE_ERRORS, AgentFactory, FlipTarget, LocalTarget, environment

pytestmark = pytest.mark.e2e

RATIO = "{name: http-5xx, source: prometheus, query: 'sum(rate(errors[1m]))', max: 0.05}"
BASELINE_PERIOD_S = 60.0
"""A query over a period this long or longer is a baseline's (the agent's: the 1 h lookback)."""


class OneRoundOfData(LocalTarget):
    """Prometheus answering the baseline (a series at 0) and the window's first round
    fetch (a series at 0.5, past max 0.05); 503 to every fetch after it."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0
        self.refused = 0

    async def query_range(self, request: web.Request) -> web.Response:
        start = float(request.query.get("start", "0"))
        value = "0"
        if float(request.query.get("end", "0")) - start < BASELINE_PERIOD_S:
            if self.answered:
                self.refused += 1
                return web.Response(status=503, text="down for maintenance")
            self.answered += 1
            value = "0.5"
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, value]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


@pytest.mark.timeout(60)
async def test_a_threshold_rule_whose_only_round_with_data_breached_is_not_passed(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    prometheus = OneRoundOfData()
    await prometheus.start()
    try:
        agent = await start_agent(
            environment(
                "production",
                flip_target.url,
                window="2s",
                analysis="{policy: threshold, failure_limit: 3}",
                rules=(PROBE_ERRORS, RATIO),
            ),
            providers="providers:\n  prometheus:\n"
            f"    url: {prometheus.url}\n    timeout: 1s\n    request_timeout: 200ms\n"
            "    max_attempts: 1\n",
        )
        deploy = await agent.register("production", "v2")
        final: dict[str, Any] = await agent.settled(deploy["id"])
    finally:
        await prometheus.stop()
    # counted at Prometheus: one round's fetch had data (past the bound), later ones none
    assert prometheus.answered == 1 and prometheus.refused >= 2, vars(prometheus)
    assert final["rollback"] is None, final
    verdict = final["verdict"]
    rules = {r["name"]: r for r in verdict["rules"]}
    # before: `passed`, "2 of 2 rules passed over 7 rounds", http-5xx `pass` at 50%
    assert final["state"] == "inconclusive", verdict
    assert rules["probe-errors"]["outcome"] == "pass", rules
    ratio = rules["http-5xx"]
    assert ratio["outcome"] == "inconclusive" and ratio["observed"] == 0.5, ratio
    assert "none within it" in ratio["detail"], ratio
    assert verdict["reason"].startswith("no rule failed over "), verdict["reason"]
    assert (
        "1 of 2 had no round within its bound: http-5xx: 1 round past max 0.05"
        in (verdict["reason"])
    ), verdict["reason"]

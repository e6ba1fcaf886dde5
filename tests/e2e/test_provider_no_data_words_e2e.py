"""A provider rule without data says why in the verdict: the error its provider gave, not
the `no data (no data)` of the rounds whose answer was not in yet. A round without an
answer (a fetch still under way when the round is judged) has nothing to say of why the
rule has none; it said so all the same, over the provider's own error, and a window that
failed on another rule then stored the provider's rule as `no data (no data)`. Driven
through the daemon's API with a Prometheus that answers the first round's fetch 503 and
holds every later one past the window, counted at that Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import PROBE_ERRORS, AgentFactory, FlipTarget, LocalTarget, environment
from tests.e2e.test_threshold_none_within_e2e import BASELINE_PERIOD_S, RATIO

pytestmark = pytest.mark.e2e


class DownThenHung(LocalTarget):
    """Prometheus answering the baseline (a series at 0), 503 to the window's first
    round fetch, and holding every later one until it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self.held = 0
        self.never = asyncio.Event()
        """Never set: a held fetch waits for it until the fake stops."""

    async def query_range(self, request: web.Request) -> web.Response:
        start = float(request.query.get("start", "0"))
        if float(request.query.get("end", "0")) - start < BASELINE_PERIOD_S:
            if not self.refused:
                self.refused += 1
                return web.Response(status=503, text="down for maintenance")
            self.held += 1
            await self.never.wait()
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, "0"]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


@pytest.mark.timeout(60)
async def test_a_provider_rule_without_data_names_its_providers_error_not_an_empty_round(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    prometheus = DownThenHung()
    await prometheus.start()
    flip_target.bad = True  # 2 of every 5 probes fail: past max 0.05 every round
    try:
        agent = await start_agent(
            environment(
                "production",
                flip_target.url,
                window="10s",
                analysis="{policy: threshold, failure_limit: 4}",
                rules=(PROBE_ERRORS, RATIO),
            ),
            providers="providers:\n  prometheus:\n"
            f"    url: {prometheus.url}\n    timeout: 20s\n    request_timeout: 20s\n"
            "    max_attempts: 1\n",
        )
        deploy = await agent.register("production", "v2")
        final: dict[str, Any] = await agent.settled(deploy["id"])
    finally:
        await prometheus.stop()
    # counted at Prometheus: the first round's fetch refused, a later one held
    assert prometheus.refused == 1 and prometheus.held >= 1, vars(prometheus)
    assert final["state"] == "failed", final["verdict"]  # no rollback configured
    assert final["verdict"]["reason"].startswith("probe-errors: "), final["verdict"]
    ratio = {r["name"]: r for r in final["verdict"]["rules"]}["http-5xx"]
    assert ratio["outcome"] == "inconclusive", ratio
    # before: "no data (no data)", the last round's (its fetch still held)
    assert ratio["detail"].startswith("no data (") and "503" in ratio["detail"], ratio

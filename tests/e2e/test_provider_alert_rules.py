"""Contract §4 for a provider down from the deploy on, or from the window's first round:
its one `provider_unreachable` alert, like every alert, "names the rules, observed vs
baseline vs threshold, and the deploy id": each rule of that provider, where only the
first one to fail was named (the alert is one a provider and window, so the others were
never told), and from the deploy on in prose without its threshold. Driven through the
daemon's API with a Prometheus nobody answers, or one answering 503, and an apprise
json:// sink."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import PROBE_ERRORS, AgentFactory, FlipTarget, LocalTarget, environment
from tests.e2e.crash import free_port
from tests.receivers import JsonSink, alert_titled, titled

pytestmark = pytest.mark.e2e

ABSOLUTE = "{name: http-5xx, source: prometheus, query: 'sum(rate(errors[1m]))', max: 0.01}"
RELATIVE = (
    "{name: p95-latency, source: prometheus,"
    " query: 'histogram_quantile(0.95, sum(rate(latency_bucket[1m])) by (le))',"
    " max_increase: 50%}"
)


async def settled_with_prometheus_at(
    start_agent: AgentFactory, target: FlipTarget, sink: JsonSink, prometheus_url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A deploy of production (all three rules, alerting `sink`) and its settled window."""
    agent = await start_agent(
        environment(
            "production",
            target.url,
            window="1s",
            rules=(PROBE_ERRORS, ABSOLUTE, RELATIVE),
            extra="alerts: {tags: [oncall]}",
        ),
        f"alerting:\n  channels:\n    - url: {sink.url()}\n      tags: [oncall]\n",
        "providers:\n  prometheus:\n"
        f"    url: {prometheus_url}\n    timeout: 1s\n    request_timeout: 200ms\n",
    )
    deploy = await agent.register("production", "v2")
    return deploy, await agent.settled(deploy["id"])


async def rule_lines(sink: JsonSink, deploy: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The one unreachable alert's body and its line per rule, both rules with thresholds."""
    alert = await alert_titled(sink, "provider prometheus unreachable")
    assert len(titled(sink, "provider prometheus")) == 1
    body = alert.message
    assert deploy["id"] in body
    # said once, in the headline: the Why repeated it ("a provider outage never causes a
    # rollback" after "that is never a reason to roll back")
    assert body.count("roll back") + body.count("rollback") == 1, body
    lines = {line.split("`")[1]: line for line in body.splitlines() if line.startswith("- `")}
    assert set(lines) == {"http-5xx", "p95-latency"}, body
    assert "threshold max 0.01" in lines["http-5xx"], body
    assert "threshold max_increase 50%" in lines["p95-latency"], body
    return body, lines


@pytest.mark.timeout(60)
async def test_a_provider_down_from_the_start_names_each_of_its_rules_with_their_bounds(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    # nothing listens there: every fetch, the baselines first, cannot connect
    nowhere = f"http://127.0.0.1:{free_port()}"
    deploy, final = await settled_with_prometheus_at(start_agent, flip_target, json_sink, nowhere)
    assert final["rollback"] is None, final  # a provider outage never rolls back

    # each of the provider's rules on a line of its own, with its threshold as written,
    # beside what it observed and its baseline (neither known yet)
    body, lines = await rule_lines(json_sink, deploy)
    assert "**Rules**" in body, body
    for line in lines.values():
        assert "observed **n/a** vs baseline n/a" in line, body
    # the relative rule waits for its baseline; the absolute one is judged on its bound
    assert "[inconclusive]" in lines["p95-latency"], body
    assert "[inconclusive]" not in lines["http-5xx"], body
    # and the words agree: the headline said its rules were inconclusive meanwhile while
    # the reason and the line said http-5xx was "judged on its own bound meanwhile",
    # though meanwhile (the provider down) no round of it had data to judge
    assert "judged on its own bound meanwhile" not in body, body
    assert "on that bound at each round the provider answers" in lines["http-5xx"], body
    assert "http-5xx has no baseline to show beside it" in body, body
    assert "inconclusive at those it does not" in body, body


BASELINE_PERIOD_S = 60.0
"""A query over a period this long or longer is a baseline's (the agent's: the 1 h lookback)."""


class FailingAfterBaselines(LocalTarget):
    """Prometheus answering the window's two baselines (a series at 0), then 503 to every
    fetch: down from the window's first round on. A baseline is told by its period (the
    hour before the deploy; a round's is its interval), not by coming first: the rules'
    fetches run at once, and a loaded CI run's first round of one rule came before the
    other's baseline, which then had none (its rule left out of the alert)."""

    async def query_range(self, request: web.Request) -> web.Response:
        start = float(request.query.get("start", "0"))
        if float(request.query.get("end", "0")) - start < BASELINE_PERIOD_S:
            return web.Response(status=503, text="down for maintenance")
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, "0"]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


@pytest.mark.timeout(60)
async def test_a_provider_down_in_the_window_names_each_of_its_rules_with_their_bounds(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    prometheus = FailingAfterBaselines()
    await prometheus.start()
    try:
        deploy, final = await settled_with_prometheus_at(
            start_agent, flip_target, json_sink, prometheus.url
        )
    finally:
        await prometheus.stop()
    assert final["rollback"] is None, final

    body, lines = await rule_lines(json_sink, deploy)
    for line in lines.values():
        assert "observed **n/a** vs baseline" in line, body
    assert "down for maintenance" in body or "503" in body, body

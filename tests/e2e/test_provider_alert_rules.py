"""Contract §4 for a provider down from the deploy on: its one `provider_unreachable`
alert, like every alert, "names the rules, observed vs baseline vs threshold, and the
deploy id": each rule of that provider, not only the first whose baseline failed (which
alone was named, in prose, without its threshold), driven through the daemon's API with
a Prometheus URL nobody answers and an apprise json:// sink."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import PROBE_ERRORS, AgentFactory, FlipTarget, environment
from tests.e2e.crash import free_port
from tests.receivers import JsonSink, alert_titled, titled

pytestmark = pytest.mark.e2e

ABSOLUTE = "{name: http-5xx, source: prometheus, query: 'sum(rate(errors[1m]))', max: 0.01}"
RELATIVE = (
    "{name: p95-latency, source: prometheus,"
    " query: 'histogram_quantile(0.95, sum(rate(latency_bucket[1m])) by (le))',"
    " max_increase: 50%}"
)


@pytest.mark.timeout(60)
async def test_a_provider_down_from_the_start_names_each_of_its_rules_with_their_bounds(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window="1s",
            rules=(PROBE_ERRORS, ABSOLUTE, RELATIVE),
            extra="alerts: {tags: [oncall]}",
        ),
        f"alerting:\n  channels:\n    - url: {json_sink.url()}\n      tags: [oncall]\n",
        # nothing listens there: every fetch, the baselines first, cannot connect
        "providers:\n  prometheus:\n"
        f"    url: http://127.0.0.1:{free_port()}\n    timeout: 1s\n    request_timeout: 200ms\n",
    )
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"])
    assert final["rollback"] is None, final  # a provider outage never rolls back

    alert = await alert_titled(json_sink, "provider prometheus unreachable")
    assert len(titled(json_sink, "provider prometheus")) == 1
    body = alert.message
    assert deploy["id"] in body
    assert "**Rules**" in body, body
    # each of the provider's rules on a line of its own, with its threshold as written,
    # beside what it observed and its baseline (neither known yet)
    lines = {line.split("`")[1]: line for line in body.splitlines() if line.startswith("- `")}
    assert set(lines) == {"http-5xx", "p95-latency"}, body
    assert "threshold max 0.01" in lines["http-5xx"], body
    assert "threshold max_increase 50%" in lines["p95-latency"], body
    for line in lines.values():
        assert "observed **n/a** vs baseline n/a" in line, body
    # the relative rule waits for its baseline; the absolute one is judged on its bound
    assert "[inconclusive]" in lines["p95-latency"], body
    assert "[inconclusive]" not in lines["http-5xx"], body

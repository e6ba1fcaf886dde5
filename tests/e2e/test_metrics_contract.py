"""Contract §5 as a scraper reads it: a real agent's `/metrics` over HTTP, parsed by
prometheus_client's parser (and linted by `promtool check metrics`, Prometheus' own),
after a deploy rolled back: every metric of the table with its type, its labels and
their values, and no label carrying a version, a deploy id or a URL. Counts are held
against the receivers (the rollback webhook, the alert sink), not the agent's word."""

from __future__ import annotations

import asyncio
import shutil
from asyncio.subprocess import PIPE, STDOUT
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, LocalTarget, watched
from tests.fakes.prometheus import PrometheusProcess, prometheus_binary
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = pytest.mark.e2e

TABLE: dict[str, tuple[str, set[str]]] = {
    "postflight_build_info": ("gauge", {"version"}),
    "postflight_windows_active": ("gauge", {"environment"}),
    "postflight_windows": ("counter", {"environment", "outcome"}),
    "postflight_check_runs": ("counter", {"environment", "check", "result"}),
    "postflight_check_duration_seconds": ("histogram", {"environment", "check"}),
    "postflight_rule_evaluations": ("counter", {"environment", "rule", "outcome"}),
    "postflight_rollbacks": ("counter", {"environment", "result"}),
    "postflight_alerts": ("counter", {"result"}),
    "postflight_provider_requests": ("counter", {"provider", "result"}),
    "postflight_provider_request_duration_seconds": ("histogram", {"provider"}),
}
"""Contract §5's table: family name (a counter's without `_total`, as parsers name it),
type, label names."""

VALUES: dict[tuple[str, str], set[str]] = {
    ("postflight_windows", "outcome"): {
        "passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded",
    },
    ("postflight_check_runs", "result"): {"pass", "fail", "error"},
    ("postflight_rollbacks", "result"): {"delivered", "failed"},
    ("postflight_alerts", "result"): {"sent", "failed"},
    # the agent's own stall is not a result of the provider's: its own metric counts it
    ("postflight_provider_requests", "result"): {"ok", "error"},
    # breaching: a round past its bound short of failure_limit (documented in its HELP;
    # §5 lists no values of this outcome, and §4's "rule breached" is the state): as
    # `pass` it read 100% errors as passing, as `inconclusive` it read as §3's no data
    ("postflight_rule_evaluations", "outcome"): {"pass", "fail", "inconclusive", "breaching"},
}  # fmt: skip
"""The label values the table lists, and the known extras."""

BOUNDED = {"environment", "check", "rule", "provider", "outcome", "result"}
"""§5: "carry only bounded labels: environment, check, rule, provider, outcome/result"
(besides `le`, a histogram's, and `postflight_build_info`'s own `version`)."""


class FakePrometheus(LocalTarget):
    """`/api/v1/query_range` answering one series at 0: the provider's fetches are `ok`."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def query_range(self, request: web.Request) -> web.Response:
        self.requests += 1
        start = float(request.query.get("start", "0"))
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, "0"]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


PROMETHEUS_RULE = "{name: http-5xx, source: prometheus, query: 'sum(up)', max: 5}"


def production(target: str, rollback_url: str, window: str = "20s") -> str:
    """`production` judged on its probes' error rate and a rule on Prometheus, rolled
    back to `rollback_url`, its alerts to the `oncall` channel."""
    return watched(
        "production", target, rollback_url, extra_rule=PROMETHEUS_RULE, alerts=True, window=window
    )


DURATIONS = ("postflight_check_duration_seconds", "postflight_provider_request_duration_seconds")
"""§5's histograms: "`_seconds` durations", in seconds, said as their unit."""


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


async def test_the_metrics_table_as_a_scraper_reads_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    prometheus = FakePrometheus()
    await prometheus.start()
    try:
        agent = await start_agent(
            production(flip_target.url, receiver.url),
            f"""
            alerting:
              channels:
                - {{url: "{json_sink.url()}", tags: [oncall]}}
            """,
            f"""
            providers:
              prometheus: {{url: "{prometheus.url}"}}
            """,
        )
        flip_target.bad = True
        deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
        final = await agent.settled(deploy["id"], within=20)
        assert final["state"] == "rolled_back"
        alerts = await json_sink.wait_for(3, within=10)  # breach, requested, delivered
        assert "rollback delivered" in alerts[-1].title
        # a send is counted once its channel answered: scraped until the sink's last is
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            async with agent.http.get(f"{agent.url}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            scraped = families(text)
            sent = scraped["postflight_alerts"].samples
            counted = sum(s.value for s in sent if s.labels == {"result": "sent"})
            # the gauge of watches is published at the supervisor's next poll after the
            # watch ends, not with the window's state: a fresh clone's CI scraped it at 1
            active = sum(s.value for s in scraped["postflight_windows_active"].samples)
            settled = counted >= len(json_sink.notifications) and active == 0
            if settled or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await prometheus.stop()

    exposed = families(text)
    for name, (kind, labels) in TABLE.items():
        assert name in exposed, f"{name} is not exposed"
        family = exposed[name]
        assert family.type == kind, (name, family.type)
        assert family.samples, f"{name} has no series"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
            for label, given in sample.labels.items():
                allowed = VALUES.get((name, label))
                assert allowed is None or given in allowed, (name, label, given)
    for family in exposed.values():
        assert family.name.startswith("postflight_"), family.name
        for sample in family.samples:
            extra = set(sample.labels) - BOUNDED - {"le"}
            assert not extra or (family.name, extra) == ("postflight_build_info", {"version"}), (
                family.name,
                extra,
            )
            for given in sample.labels.values():
                assert deploy["id"] not in given and "://" not in given, (family.name, sample)
                assert given not in ("v2.4.1", "v2.4.0"), (family.name, sample)

    def value(name: str, **labels: str) -> float:
        return sum(
            float(s.value)
            for family in exposed.values()
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )

    assert value("postflight_build_info") == 1
    assert value("postflight_windows_active", environment="production") == 0
    assert value("postflight_windows_total", environment="production", outcome="rolled_back") == 1
    assert value("postflight_windows_total", environment="production") == 1
    delivered = [a for a in receiver.attempts if a.accepted]
    assert len(delivered) == 1
    assert value("postflight_rollbacks_total", environment="production", result="delivered") == 1
    assert value("postflight_rollbacks_total", environment="production", result="failed") == 0
    # every alert the sink took is counted sent, and nothing else
    assert value("postflight_alerts_total", result="sent") == len(json_sink.notifications)
    assert value("postflight_alerts_total", result="failed") == 0
    assert value("postflight_check_runs_total", check="api-health", result="fail") >= 1
    check = {"environment": "production", "check": "api-health"}
    assert value("postflight_check_duration_seconds_count", **check) >= 1
    assert value("postflight_rule_evaluations_total", rule="probe-errors", outcome="fail") == 1
    assert value("postflight_provider_requests_total", provider="prometheus", result="ok") >= 1
    assert value("postflight_provider_request_duration_seconds_count", provider="prometheus") >= 1
    # the agent's own stalls beside them, a series from the start (0 unless the loaded
    # machine stalled the agent: it did once in a full run at load 20, counted 1)
    stalls = exposed["postflight_provider_agent_stalls"].samples
    totals = [s for s in stalls if s.name.endswith("_total")]
    assert [s.labels for s in totals] == [{"provider": "prometheus"}]
    assert all(s.value >= 0 and s.value == int(s.value) for s in totals)

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed: the lint part")
    lint = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await asyncio.wait_for(lint.communicate(text.encode()), 30)
    assert lint.returncode == 0, said.decode()


async def test_a_real_prometheus_scrapes_the_table_as_the_receivers_counted_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    """Prometheus itself (it asks for OpenMetrics first) scraping a live agent after a
    deploy rolled back: the target up with no scrape error, each family of §5's table
    of its type, the two `_seconds` histograms of unit `seconds` (they had none: a
    Grafana or Prometheus reading the metadata did not know their unit), and the values
    it stored as the rollback webhook, the alert sink and the provider counted them."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus (Debian package prometheus) is not installed")
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    provider = FakePrometheus()
    await provider.start()
    scraper: PrometheusProcess | None = None
    try:
        agent = await start_agent(
            production(flip_target.url, receiver.url, window="3s"),
            f"""
            alerting:
              channels:
                - {{url: "{json_sink.url()}", tags: [oncall]}}
            """,
            f"""
            providers:
              prometheus: {{url: "{provider.url}"}}
            """,
        )
        flip_target.bad = True
        deploy = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
        assert (await agent.settled(deploy["id"], within=20))["state"] == "rolled_back"
        await json_sink.wait_for(3, within=10)  # breach, requested, delivered
        scraper = PrometheusProcess(
            [agent.url.removeprefix("http://")], job="postflight", scrape_interval="500ms"
        )
        await scraper.start()
        stored = await _stored_once_counted(agent, scraper, json_sink)
        async with agent.http.get(f"{scraper.url}/api/v1/targets") as r:
            (target,) = (await r.json())["data"]["activeTargets"]
        async with agent.http.get(f"{scraper.url}/api/v1/metadata") as r:
            metadata = (await r.json())["data"]
    finally:
        if scraper is not None:
            await scraper.stop()
        await provider.stop()

    assert (target["health"], target["lastError"]) == ("up", ""), target
    for name, (kind, _) in TABLE.items():
        (said,) = metadata[name]
        assert said["type"] == kind, (name, said)
        assert said["unit"] == ("seconds" if name in DURATIONS else ""), (name, said)
        assert said["help"], name
    delivered = [a for a in receiver.attempts if a.accepted]
    assert stored['postflight_rollbacks_total{result="delivered"}'] == len(delivered) == 1
    assert stored['postflight_rollbacks_total{result="failed"}'] == 0
    assert stored['postflight_alerts_total{result="sent"}'] == len(json_sink.notifications)
    assert stored['postflight_alerts_total{result="failed"}'] == 0
    assert stored['postflight_windows_total{outcome="rolled_back"}'] == 1
    assert stored["postflight_windows_total"] == 1
    assert stored["postflight_windows_active"] == 0
    assert stored['postflight_provider_requests_total{result="ok"}'] == provider.requests
    assert stored["postflight_provider_request_duration_seconds_count"] == provider.requests
    assert stored["postflight_build_info"] == 1


STORED = (
    'postflight_rollbacks_total{result="delivered"}',
    'postflight_rollbacks_total{result="failed"}',
    'postflight_alerts_total{result="sent"}',
    'postflight_alerts_total{result="failed"}',
    'postflight_windows_total{outcome="rolled_back"}',
    "postflight_windows_total",
    "postflight_windows_active",
    'postflight_provider_requests_total{result="ok"}',
    "postflight_provider_request_duration_seconds_count",
    "postflight_build_info",
)
"""What the Prometheus test reads back from Prometheus, each summed over its series."""


async def _stored_once_counted(
    agent: Any, scraper: PrometheusProcess, json_sink: JsonSink
) -> dict[str, float]:
    """Each of `STORED` as Prometheus holds it, once it holds every alert the sink took
    (a send is counted once its channel answered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        stored: dict[str, float] = {}
        for query in STORED:
            async with agent.http.get(
                f"{scraper.url}/api/v1/query", params={"query": f"sum({query})"}
            ) as r:
                result = (await r.json())["data"]["result"]
            if result:
                stored[query] = float(result[0]["value"][1])
        sent = stored.get('postflight_alerts_total{result="sent"}', -1)
        if (len(stored) == len(STORED) and sent >= len(json_sink.notifications)) or (
            loop.time() > deadline
        ):
            return stored
        await asyncio.sleep(0.2)

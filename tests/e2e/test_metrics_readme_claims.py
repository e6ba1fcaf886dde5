"""README "Metrics" claims no other test read from a real agent's `/metrics` over HTTP
(each before read from the agent's own registry, or not at all), each held against what
a receiver, a provider or the client counted: the rollback attempts by result, the
provider's HTTP requests beside its fetches (the retries a fetch that ended `ok`
hides), one rule evaluation per rule per round, the requests the HTTP parser refused,
the API's requests by status class."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.appkeys import STORE
from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    LocalTarget,
    RunningAgent,
    watched,
)
from tests.e2e.providers_support import NEWRELIC_KEY, environment_yaml, providers_yaml
from tests.fakes.newrelic import FakeNewRelic
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).resolve().parents[2] / "config"


class FlakyPrometheus(LocalTarget):
    """`/api/v1/query_range` answering 503 to its first request, then one series at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    async def query_range(self, request: web.Request) -> web.Response:
        if not self.statuses:
            self.statuses.append(503)
            return web.json_response({"status": "error"}, status=503)
        self.statuses.append(200)
        start = float(request.query.get("start", "0"))
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, "0"]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""Each sample of a scrape by its name and labels."""


async def scrape(agent: RunningAgent) -> Samples:
    """Every sample of `/metrics` over HTTP, parsed as a scraper parses it."""
    async with agent.http.get(f"{agent.url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample summed over the series that carry `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= ls)


async def scrape_until(
    agent: RunningAgent, done: Callable[[Samples], bool], within: float = 10.0
) -> Samples:
    """Scrapes until `done` holds of one (a count moves once an answer was read, just
    after the receiver saw it), or `within` seconds: the last scrape, for the test's
    asserts to say what was missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        samples = await scrape(agent)
        if done(samples) or loop.time() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_rollback_attempts_provider_requests_and_rule_evaluations_as_counted_there(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    """README: `postflight_rollback_attempts_total` by result (a 503 `retryable`, a 2xx
    `delivered`, another 4xx `rejected`) beside `postflight_rollbacks_total`;
    `postflight_provider_http_requests_total` counts every attempt by status class, where
    `postflight_provider_requests_total` counts the fetch, `ok` after a retry;
    `postflight_rule_evaluations_total` one evaluation per rule per round, by its outcome
    after it (`breaching` short of `failure_limit`, then `fail`)."""
    retried: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    refused: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    provider = FlakyPrometheus()
    await provider.start()
    try:
        extra = "{name: http-5xx, source: prometheus, query: 'sum(up)', max: 5}"
        agent = await start_agent(
            watched("production", flip_target.url, retried.url, extra_rule=extra)
            + watched("staging", flip_target.url, refused.url),
            providers=f"""
            providers:
              prometheus: {{url: "{provider.url}"}}
            """,
        )
        flip_target.bad = True
        production = await agent.register("production", "v2.4.1", previous_version="v2.4.0")
        staging = await agent.register("staging", "v2.4.1", previous_version="v2.4.0")
        assert (await agent.settled(production["id"], within=30))["state"] == "rolled_back"
        assert (await agent.settled(staging["id"], within=30))["rollback"]["state"] == "failed"
        # the provider's last answer counted before its requests are compared with it
        samples = await scrape_until(
            agent,
            lambda got: (
                value(got, "postflight_provider_http_requests_total", provider="prometheus")
                >= len(provider.statuses)
            ),
        )
        statuses = Counter(provider.statuses)
        store = agent.app[STORE]
        rounds = {
            "production": len(await store.rounds(production["id"])),
            "staging": len(await store.rounds(staging["id"])),
        }
    finally:
        await provider.stop()

    for receiver, environment in ((retried, "production"), (refused, "staging")):
        answered = Counter(a.status for a in receiver.attempts)
        attempts = {
            result: value(
                samples,
                "postflight_rollback_attempts_total",
                environment=environment,
                result=result,
            )
            for result in ("delivered", "retryable", "rejected")
        }
        assert attempts == {
            "delivered": answered[200],
            "retryable": answered[503],
            "rejected": answered[400],
        }, (environment, answered)
    assert (
        value(samples, "postflight_rollbacks_total", environment="production", result="delivered")
        == 1
    )
    assert value(samples, "postflight_rollbacks_total", environment="staging", result="failed") == 1

    # every HTTP request the provider took, by status class; the fetch retried is one ok
    assert statuses[503] == 1 and statuses[200] >= 1, statuses
    http_by = {
        result: value(
            samples, "postflight_provider_http_requests_total", provider="prometheus", result=result
        )
        for result in ("2xx", "3xx", "4xx", "5xx", "timeout", "error")
    }
    assert http_by == {
        "2xx": statuses[200], "3xx": 0, "4xx": 0, "5xx": 1, "timeout": 0, "error": 0,
    }, statuses  # fmt: skip
    fetches = value(
        samples, "postflight_provider_requests_total", provider="prometheus", result="ok"
    )
    assert fetches == statuses[200], statuses
    assert value(samples, "postflight_provider_requests_total", result="error") == 0

    # one evaluation per rule per round: breaching, then fail at failure_limit
    for environment, rules in (
        ("production", ("probe-errors", "http-5xx")),
        ("staging", ("probe-errors",)),
    ):
        for rule in rules:
            evaluated = value(
                samples, "postflight_rule_evaluations_total", environment=environment, rule=rule
            )
            assert evaluated == rounds[environment], (environment, rule, rounds)
    errors = {
        outcome: value(
            samples,
            "postflight_rule_evaluations_total",
            environment="production",
            rule="probe-errors",
            outcome=outcome,
        )
        for outcome in ("pass", "fail", "inconclusive", "breaching")
    }
    assert errors["fail"] == 1 and errors["breaching"] >= 1, errors


async def test_refused_requests_and_api_requests_by_status_class(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """README: `postflight_malformed_requests_total` counts the requests the HTTP parser
    refused, each answered 400 (there at 0 before); `postflight_api_requests_total` counts
    every request the server answered by status class, `/metrics` and `/healthz` among
    them (a dashboard of the API's traffic reads Prometheus' scrapes in it)."""
    agent = await start_agent(
        f"""
        production:
          base_url: {flip_target.url}
          checks:
            - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
        """
    )
    before = await scrape(agent)
    assert ("postflight_malformed_requests_total", frozenset()) in before
    assert value(before, "postflight_malformed_requests_total") == 0

    port = int(agent.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"400", status_line

    async with agent.http.get(f"{agent.url}/v1/deploys", headers=agent.headers) as r:
        assert r.status == 200
    async with agent.http.get(f"{agent.url}/healthz") as r:
        assert r.status == 200
    async with agent.http.get(f"{agent.url}/v1/deploys/dep_nope", headers=agent.headers) as r:
        assert r.status == 404
    async with agent.http.post(f"{agent.url}/v1/deploys", json={}) as r:
        assert r.status == 401
    after = await scrape(agent)

    assert value(after, "postflight_malformed_requests_total") == 1
    grew = {
        result: value(after, "postflight_api_requests_total", result=result)
        - value(before, "postflight_api_requests_total", result=result)
        for result in ("2xx", "4xx", "5xx")
    }
    # every request the server answered, /healthz and the scrape between the two reads
    # included (the first scrape is counted once answered); the refused one never
    # reached the application
    assert grew == {"2xx": 3, "4xx": 2, "5xx": 0}, grew


SELECTOR = re.compile(r"\b(postflight_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
NOT_THE_AGENTS = {"le", "instance", "job", "loop"}
"""Labels the examples group by that the agent does not write: a histogram's bucket,
Prometheus' target labels, and `loop`, which the examples' own `label_replace` makes."""


async def with_hooks(start_agent: AgentFactory, flip_target: FlipTarget) -> RunningAgent:
    """An agent with a check, a rule on it and one on Prometheus (which does not answer),
    and both GitHub and Vercel configured."""
    return await start_agent(
        f"""
        production:
          base_url: {flip_target.url}
          window: 2s
          interval: 300ms
          background_interval: 200ms
          checks:
            - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
          rules:
            - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
            - {{name: http-5xx, source: prometheus, query: 'sum(up)', max: 5}}
        """,
        providers="""
        providers:
          prometheus: {url: "http://127.0.0.1:9"}
        """,
        extra="""
        integrations:
          github: {api_url: "http://127.0.0.1:9", token: gh-token, webhook_secret: gh-secret}
          vercel: {api_url: "http://127.0.0.1:9", token: vc-token, webhook_secret: vc-secret}
        """,
    )


async def test_the_shipped_dashboard_and_alerts_select_series_the_agent_exports(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """README: `config/` has alerting rules and a Grafana dashboard on the agent's
    metrics. Each series they select, each label they match or group by, and each value
    they match is one a running agent's `/metrics` carries (a typo'd value, such as
    `result="fail"` for `"failed"`, selects nothing: an alert that never fires, a panel
    that stays empty); the names alone were checked against the agent's registry."""
    agent = await with_hooks(start_agent, flip_target)
    deploy = await agent.register("production", "v2.4.1")
    await agent.rounds(deploy["id"], at_least=1)
    # a histogram's series appear at its first observation: a fetch's, once its retries
    # against the provider that does not answer gave up
    samples = await scrape_until(
        agent, lambda got: value(got, "postflight_provider_request_duration_seconds_count") > 0, 20
    )
    carried: dict[str, dict[str, set[str]]] = {}
    for name, labels in samples:
        for label, given in labels:
            carried.setdefault(name, {}).setdefault(label, set()).add(given)
        carried.setdefault(name, {})

    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((CONFIG / "postflight-alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    for expr in exprs:
        selected = SELECTOR.findall(expr)
        for name, matchers in selected:
            assert name in carried, (name, expr)
            for label, _op, pattern in MATCHER.findall(matchers):
                assert label in carried[name], (name, label, expr)
                for given in pattern.split("|"):
                    assert given in carried[name][label], (name, label, given, expr)
        for grouping in GROUPING.findall(expr):
            for label in {g.strip() for g in grouping.split(",")} - NOT_THE_AGENTS - {""}:
                for name, _ in selected:
                    assert label in carried[name], (name, label, expr)


async def test_a_running_agent_says_its_loops_up_and_each_hooks_series_at_zero(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """README: `postflight_watcher_up`, `postflight_integrations_up` and
    `postflight_alert_recovery_up` are 1 while each loop runs; `postflight_store_up` 1
    while the store answers and `postflight_waiting_for_store` 0 once it did;
    `postflight_deploy_events_total` and `postflight_integration_calls_total` at 0 from
    the start for each configured integration, by each of their results."""
    agent = await with_hooks(start_agent, flip_target)
    gauges = (
        "postflight_watcher_up",
        "postflight_integrations_up",
        "postflight_alert_recovery_up",
        "postflight_store_up",
    )
    # the store is said up at the watcher's first claim, just after start
    samples = await scrape_until(agent, lambda got: all(value(got, g) == 1 for g in gauges))
    assert {g: value(samples, g) for g in gauges} == dict.fromkeys(gauges, 1.0)
    assert value(samples, "postflight_waiting_for_store") == 0
    results = {
        "postflight_deploy_events_total": {
            "opened", "joined", "redelivered", "gate", "ignored", "rejected", "invalid",
        },
        "postflight_integration_calls_total": {"sent", "failed"},
    }  # fmt: skip
    for name, wanted in results.items():
        for provider in ("github", "vercel"):
            seen = {
                dict(labels)["result"]: v
                for (n, labels), v in samples.items()
                if n == name and ("provider", provider) in labels
            }
            assert seen == dict.fromkeys(wanted, 0.0), (name, provider, seen)


async def test_an_alert_failed_then_sent_on_a_retry_is_counted_once_each(
    start_agent: AgentFactory, flip_target: FlipTarget, json_sink: JsonSink
) -> None:
    """README: `postflight_alerts_total` counts each alert once per channel: `sent` when
    the channel took it (at once or on a retry), `failed` when the channel failed it the
    first time. A channel that answers the first alert 500 and every later one 200: one
    failed, and sent as many as the channel took, the retried one among them."""
    json_sink.script(500)
    agent = await start_agent(
        watched("production", flip_target.url, alerts=True),
        f"""
        alerting:
          channels:
            - {{url: "{json_sink.url()}", tags: [oncall]}}
        """,
        alert_retry_delays=(0.2, 0.2),
    )
    flip_target.bad = True
    deploy = await agent.register("production", "v2.4.1")
    assert (await agent.settled(deploy["id"], within=30))["state"] == "failed"
    titles = [n.title for n in await json_sink.wait_for(2, within=10)]
    samples = await scrape_until(  # a send is counted once its channel answered
        agent,
        lambda got: (
            value(got, "postflight_alerts_total", result="sent") >= len(json_sink.notifications)
        ),
    )
    sent = value(samples, "postflight_alerts_total", result="sent")
    refused = json_sink.arrived - len(json_sink.notifications)
    assert refused == 1, (json_sink.arrived, titles)
    assert len({n.title for n in json_sink.notifications}) == len(json_sink.notifications)
    assert value(samples, "postflight_alerts_total", result="failed") == refused
    assert sent == len(json_sink.notifications), titles
    # the breach, refused once, taken on its retry beside the verdict's
    taken = [n.title for n in json_sink.notifications]
    assert sorted(t.rsplit(": ", 1)[1] for t in taken) == [
        "deploy failed (probe-errors)",
        "probe-errors breached",
    ], taken


NRQL = "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web (production)'"


async def test_each_fetch_and_the_marker_are_one_provider_request_each(
    start_agent: AgentFactory, rollback_receiver: Any
) -> None:
    """README: `postflight_provider_requests_total` and
    `postflight_provider_request_duration_seconds` count per fetch, "a marker is one
    too". New Relic answering every request at once (no retry, no page): each request
    it took is one fetch or the deploy marker, and the two metrics count as many."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    async with FakeNewRelic(api_key=NEWRELIC_KEY) as newrelic:
        newrelic.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
        rule = f"""\
    - name: nr-p95
      source: newrelic
      nrql: "{NRQL}"
      max_increase: 50%
"""
        agent = await start_agent(
            environment_yaml(
                rule,
                rollback_url=receiver.url,
                secret=SECRET,
                window="2s",
                interval="250ms",
                lookback="5s",
                sentry=False,
            ),
            providers=providers_yaml(newrelic=newrelic, markers=True),
        )
        deploy = await agent.register("production", "v2.4.1")
        await agent.settled(deploy["id"], within=20)
        markers = [r for r in newrelic.requests if "changeTrackingCreateEvent" in str(r.body)]
        samples = await scrape_until(  # the last fetch counted once its answer was read
            agent,
            lambda got: (
                value(got, "postflight_provider_requests_total", provider="newrelic")
                >= len(newrelic.requests)
            ),
        )
        counted = value(samples, "postflight_provider_requests_total", provider="newrelic")
        took = len(newrelic.requests)
    assert len(markers) == 1, [str(r.body)[:80] for r in newrelic.requests]
    assert took >= 3, took  # the baseline's fetch, a round's, the marker
    assert counted == took, (counted, took)
    durations = "postflight_provider_request_duration_seconds_count"
    assert value(samples, durations, provider="newrelic") == took
    http = value(samples, "postflight_provider_http_requests_total", provider="newrelic")
    assert http == took

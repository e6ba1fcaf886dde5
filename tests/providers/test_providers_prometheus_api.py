"""Prometheus provider edge cases against the API fake (failures a real one rarely shows)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.prometheus import PrometheusProvider, range_for
from agent.providers.provider_settings import PrometheusSettings
from agent.settings_file import ConfigError, load_settings_text
from tests.fakes._server import Failure
from tests.fakes.prometheus import FakePrometheus
from tests.providers.support import AFTER, FAST, T0, kept_up, requests_counted, rule, scope


def test_evaluations_end_exactly_at_the_period_end() -> None:
    start, end, step = range_for(Period(100.0, 700.0), None, 60)
    assert (start, end, step) == (100.0, 700.0, 10.0)
    start, end, step = range_for(Period(100.0, 100.4), None, 60)
    assert (start, end, step) == (100.4, 100.4, 1.0)  # shorter than a step: one point at the end
    start, end, step = range_for(Period(0.0, 95.0), 10.0, 60)
    assert (start, end) == (5.0, 95.0)


async def test_the_mean_over_the_period_with_the_query_it_used(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus, metrics: Metrics
) -> None:
    prometheus_fake.set("up", 0.75)
    obs = await prometheus.fetch(
        rule(source="prometheus", query="up", min=0.5), scope(), AFTER, "v2.4.1"
    )
    assert (obs.value, obs.query, obs.seconds, obs.values) == (0.75, "up", 120.0, ())
    sent = prometheus_fake.seen("/query_range")[0]
    assert (sent.param("start"), sent.param("end"), sent.param("step")) == (
        f"{T0:.3f}",
        f"{T0 + 120:.3f}",
        "2",
    )
    assert sent.param("timeout") == "800ms"
    assert requests_counted(metrics, "prometheus", "ok") == 1


async def test_only_nan_points_is_no_data(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.set("0/0", math.nan)
    obs = await prometheus.fetch(
        rule(source="prometheus", query="0/0", max=1), scope(), AFTER, None
    )
    assert obs.value is None and obs.error is None


@pytest.mark.parametrize("kind", ["503", "html:522"])  # 522: a gateway's page, was not retried
async def test_unavailable_is_retried(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus, kind: str
) -> None:
    prometheus_fake.fail(kind, times=1)
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value == 1.0
    assert len(prometheus_fake.requests) == 2


async def test_a_503_with_retry_after_is_not_asked_again_before_then(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    """RFC 9110 §10.2.3: a 503's `Retry-After` says how long the server expects to be
    down (a provider in maintenance, a proxy in front of one). It was ignored: every
    fetch spent its attempts on it, a quarter of a second apart, round after round."""
    prometheus_fake.fail("unavailable", reset_in=30)
    r = rule(source="prometheus", query="up", max=2)
    first = await prometheus.fetch(r, scope(), AFTER, None)
    second = await prometheus.fetch(r, scope(), AFTER, None)
    assert first.value is None and first.error is not None
    assert first.error.startswith("Prometheus answered 503; retry in 30s, past this fetch's")
    assert second.value is None and second.error is not None
    assert second.error.startswith("Prometheus answered 503; retry in "), second.error
    assert "not asked again before then" in second.error
    assert len(prometheus_fake.requests) == 1


def retry_after_on_429(fake: FakePrometheus, seconds: int) -> None:
    """`fake`'s 429s carry `Retry-After: seconds`, as a proxy in front of Prometheus
    (Mimir, Thanos, a gateway) that rate-limits says."""
    original = fake.failure_response

    def answer(failure: Failure, request: web.Request) -> web.StreamResponse:
        response = original(failure, request)
        if failure.kind == "429":
            response.headers["Retry-After"] = str(seconds)
        return response

    fake.failure_response = answer  # type: ignore[method-assign]


async def test_a_429_with_retry_after_past_the_budget_holds_later_fetches_too(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    """README, Baselines: "a `Retry-After` from New Relic or Prometheus alike, on a 429
    or a 503": the fetch fails at once and the next one does not ask before it
    (test-only: it held; only the 503's was tested)."""
    retry_after_on_429(prometheus_fake, 30)
    prometheus_fake.fail("429")
    r = rule(source="prometheus", query="up", max=2)
    first = await prometheus.fetch(r, scope(), AFTER, None)
    second = await prometheus.fetch(r, scope(), AFTER, None)
    assert first.value is None and first.error is not None
    assert first.error.startswith("Prometheus is rate limiting (429); retry in 30s, past this")
    assert second.value is None and second.error is not None
    assert "not asked again before then" in second.error
    assert len(prometheus_fake.requests) == 1


async def test_a_503_with_a_short_retry_after_is_retried_after_it(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.fail("unavailable", times=1, reset_in=1)
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value == 1.0
    first, second = prometheus_fake.requests
    assert second.at - first.at >= 0.9  # waited as asked (a backoff was a quarter second)


async def test_a_partial_answer_says_so_in_the_evidence_and_the_log_once(
    prometheus: PrometheusProvider,
    prometheus_fake: FakePrometheus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Prometheus answers `success` with `warnings` when part of the data is missing (a
    remote-read source failed; Thanos: a store did not answer): the figure was used with
    no word of it, in the evidence or the log."""
    warning = "partial response: store 10.0.0.7:10901 did not answer"
    prometheus_fake.warnings = [warning]
    prometheus_fake.set("up", 0.5)
    r = rule(source="prometheus", query="up", max=2)
    with caplog.at_level("WARNING", logger="agent.providers.prometheus"):
        first = await prometheus.fetch(r, scope(), AFTER, None)
        second = await prometheus.fetch(r, scope(), Period(T0, T0 + 125), None)
    assert (first.value, second.value) == (0.5, 0.5)
    assert first.query == f"up (Prometheus warned: {warning})"
    logged = [m.getMessage() for m in caplog.records if warning in m.getMessage()]
    assert len(logged) == 1, logged


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("hang", "Prometheus did not answer"),
        ("malformed", "malformed answer from Prometheus"),
        ("bad_shape", "unexpected answer from Prometheus"),
        ("500", "Prometheus answered 500"),
    ],
)
async def test_failures_are_error_observations(
    prometheus: PrometheusProvider,
    prometheus_fake: FakePrometheus,
    metrics: Metrics,
    kind: str,
    message: str,
) -> None:
    prometheus_fake.fail(kind)
    up = rule(source="prometheus", query="up", max=2)
    obs = await kept_up(lambda: prometheus.fetch(up, scope(), AFTER, None))
    assert obs.value is None and obs.error is not None and message in obs.error
    assert requests_counted(metrics, "prometheus", "error") == 1


@pytest.mark.parametrize(
    ("auth", "named"),
    [
        ({"bearer_token": "prom-bearer-0123456789"}, "check providers.prometheus.bearer_token"),
        ({"user": "pf:prom-pass-0123456789"}, "check the user and password in providers."),
        ({}, "none were sent; set providers.prometheus.bearer_token"),
    ],
)
async def test_rejected_credentials_name_the_setting_to_fix_never_its_value(
    prometheus_fake: FakePrometheus, metrics: Metrics, auth: dict[str, str], named: str
) -> None:
    url = prometheus_fake.url
    if "user" in auth:
        url = url.replace("://", f"://{auth.pop('user')}@")
    settings = PrometheusSettings.model_validate({"url": url, **auth, **FAST})
    provider = PrometheusProvider(settings, metrics=metrics)
    prometheus_fake.fail("401")
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", max=2), scope(), AFTER, None
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith("Prometheus rejected the credentials")
    assert named in obs.error
    assert "0123456789" not in obs.error
    assert len(prometheus_fake.requests) == 1  # not retried: waiting will not fix it


async def test_a_redirect_says_where_it_points_and_is_not_followed(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.fail("moved")
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.error is not None
    assert obs.error.startswith(
        f"Prometheus answered 301, a redirect to https://127.0.0.1:{prometheus_fake.port}"
        "/api/v1/query_range: set providers.prometheus.url to where it points"
    ), obs.error  # was "malformed answer from Prometheus (HTTP 301, not JSON)"
    assert len(prometheus_fake.requests) == 1


@pytest.mark.parametrize("path", ["/prometheus", "/api/v1"])
async def test_a_wrong_url_is_named_not_called_a_malformed_answer(
    prometheus_fake: FakePrometheus, metrics: Metrics, path: str
) -> None:
    """Every Prometheus serves /api/v1/query_range: a 404 is a wrong `url` (a route prefix
    left out or added, the API's own path pasted in), which said "malformed answer from
    Prometheus (HTTP 404, not JSON)"."""
    settings = PrometheusSettings.model_validate({"url": prometheus_fake.url + path, **FAST})
    provider = PrometheusProvider(settings, metrics=metrics)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", max=2), scope(), AFTER, None
        )
    finally:
        await provider.aclose()
    assert obs.error is not None
    assert obs.error.startswith(
        "Prometheus answered 404 for /api/v1/query_range: check providers.prometheus.url"
    )
    assert obs.answered
    assert len(prometheus_fake.requests) == 1


async def test_bad_promql_is_a_configuration_error(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    obs = await prometheus.fetch(
        rule(source="prometheus", query="bad(x)", max=2), scope(), AFTER, None
    )
    assert obs.error is not None and obs.error.startswith("PromQL rejected: ")
    assert len(prometheus_fake.requests) == 1


def test_link_opens_the_graph_over_the_period(prometheus: PrometheusProvider) -> None:
    link = prometheus.link(rule(source="prometheus", query="sum(up)", max=2), scope(), AFTER)
    assert link is not None
    query = parse_qs(urlsplit(link).query)
    assert urlsplit(link).path == "/graph"
    assert query["g0.expr"] == ["sum(up)"]
    assert query["g0.range_input"] == ["120s"]
    assert query["g0.end_input"] == ["2026-11-18 11:08:40"]


# ------------------------------------------- the 11,000-point limit, step, histograms


async def test_an_explicit_step_past_11000_points_is_refused_before_any_request(
    prometheus_fake: FakePrometheus, metrics: Metrics
) -> None:
    """`step: 15s` over 48 h is 11,520 points: Prometheus answers 400 bad_data, which
    the old client reported as "PromQL rejected"."""
    provider = PrometheusProvider(
        PrometheusSettings.model_validate({"url": prometheus_fake.url, **FAST, "step": "15s"}),
        metrics=metrics,
    )
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", min=0.5),
            scope(),
            Period(T0 - 48 * 3600, T0),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.value is None
    assert obs.error == (
        "step 15s over a 48h period is 11,520 points; Prometheus allows 11,000 per query:"
        " set providers.prometheus.step to 16s or more (or shorten the lookback)"
    )
    assert prometheus_fake.requests == []


def test_the_default_step_never_makes_more_than_max_points() -> None:
    period = Period(0.0, 11_005.5)
    start, end, step = range_for(period, None, 11_000)
    assert step == 1.001
    assert (end - start) / step <= 11_000


@pytest.mark.parametrize(
    ("step", "sent"),
    [(1234.567, "1234.567"), (1_000_000.0, "1000000"), (2.5, "2.5"), (0.25, "0.25")],
)
async def test_step_is_sent_as_exact_seconds(
    prometheus_fake: FakePrometheus, metrics: Metrics, step: float, sent: str
) -> None:
    """`f"{step:g}"` kept six digits: 1234.567 went out as 1234.57, 10^6 as 1e+06."""
    provider = PrometheusProvider(
        PrometheusSettings.model_validate({"url": prometheus_fake.url, **FAST, "step": step}),
        metrics=metrics,
    )
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", min=0.0),
            scope(),
            Period(T0 - 2 * step, T0),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.error is None
    assert prometheus_fake.seen("/query_range")[0].param("step") == sent


async def test_native_histograms_are_refused_with_what_to_wrap_them_in(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.set("http_request_duration_seconds", 12.0, histogram=True)
    obs = await prometheus.fetch(
        rule(source="prometheus", query="http_request_duration_seconds", max=1),
        scope(),
        AFTER,
        None,
    )
    assert obs.value is None
    assert obs.error is not None and obs.error.startswith("PromQL returned native histograms")
    assert "histogram_quantile" in obs.error


async def test_the_fake_refuses_ranges_over_11000_points_as_prometheus_does(
    prometheus_fake: FakePrometheus,
) -> None:
    async with aiohttp.ClientSession() as session:
        for points, status in ((11_000, 200), (11_001, 400)):
            params = {"query": "up", "start": "0", "end": str(points), "step": "1s"}
            async with session.get(f"{prometheus_fake.url}/api/v1/query_range", params=params) as r:
                body = await r.json()
                assert r.status == status, body
    assert body["errorType"] == "bad_data"
    assert body["error"].startswith("exceeded maximum resolution of 11,000 points")


PROMQL_RATE_CONFIG = """\
server: {listen: "127.0.0.1:8787", api_tokens: ["tok-1234567890abcdef"]}
providers:
  prometheus: {url: "http://127.0.0.1:9090"}
environments:
  production:
    base_url: http://127.0.0.1:9
    rules:
      - name: http-5xx
        source: prometheus
        query: '%s'
        metric: error_rate
        max: 0.05
    rollback: {url: "http://127.0.0.1:9998/rollback", secret: shh-secret}
"""
RATIO = 'sum(rate(http_requests_total{code=~"5.."}[1m])) / sum(rate(http_requests_total[1m]))'


@pytest.mark.parametrize("query", [f"100 * {RATIO}", f"({RATIO}) * 100", f"({RATIO})*100.0"])
def test_a_rate_rule_on_a_percentage_is_refused(query: str) -> None:
    """A 5xx share times 100 answers 0-100: 0.5% errors came back as 0.5, in range for a
    rate, and was judged as 50% against `max: 0.05` (only an answer over 1 was caught)."""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(PROMQL_RATE_CONFIG % query)
    (problem,) = caught.value.problems
    assert "environments.production.rules[0].query" in str(problem)
    assert "a percentage (0-100)" in str(problem)


@pytest.mark.parametrize(
    "query",
    [
        RATIO,
        'sum(rate(http_requests_total{code=~"5.."}[100s])) / sum(rate(x[100s]))',
        'sum(rate(x{path="/a*100"}[1m])) / sum(rate(x[1m]))',
        "(100 * sum(rate(errors_total[1m])) / sum(rate(requests_total[1m]))) / 100",
    ],
)
def test_a_rate_rule_on_a_fraction_is_taken(query: str) -> None:
    rule = load_settings_text(PROMQL_RATE_CONFIG % query).environments["production"].rules[0]
    assert rule.to_rule().query == query


PROMQL_LATENCY_CONFIG = PROMQL_RATE_CONFIG.replace(
    "metric: error_rate\n        max: 0.05", "metric: latency_p95\n        max: 800ms"
)


@pytest.mark.parametrize(
    "query",
    [
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_ms_bucket[1m])))",
        "histogram_quantile(0.95, sum by (le) (rate(rpc_latency_milliseconds_bucket[1m])))",
    ],
)
def test_a_latency_rule_on_milliseconds_is_refused(query: str) -> None:
    """A latency rule's figure is seconds (`max: 800ms` is 0.8): a histogram in
    milliseconds answered 650 for 650 ms, judged as 650 s and rolled back."""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(PROMQL_LATENCY_CONFIG % query)
    (problem,) = caught.value.problems
    assert "environments.production.rules[0].query" in str(problem)
    assert "milliseconds" in str(problem) and "/ 1000" in str(problem)


@pytest.mark.parametrize(
    "query",
    [
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))",
        "histogram_quantile(0.95, sum by (le) (rate(rpc_latency_ms_bucket[1m]))) / 1000",
        'histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket{unit="_ms"}[1m])))',
    ],
)
def test_a_latency_rule_in_seconds_is_taken(query: str) -> None:
    rule = load_settings_text(PROMQL_LATENCY_CONFIG % query).environments["production"].rules[0]
    assert rule.to_rule().query == query


async def test_samples_outside_the_asked_range_are_not_the_periods(
    metrics: Metrics, aiohttp_server: Any
) -> None:
    """A server in front of Prometheus (a cache, a proxy to another one) answering
    samples of another time range: they are not the period's, so the rule has no data
    saying so (they were averaged as the period's figure); samples within it count,
    those beside them do not."""
    served: list[list[Any]] = []

    async def query_range(request: web.Request) -> web.Response:
        result = [{"metric": {}, "values": served}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    server = await aiohttp_server(app)
    provider = PrometheusProvider(
        PrometheusSettings.model_validate({"url": str(server.make_url("")), **FAST}),
        metrics=metrics,
    )
    r = rule(source="prometheus", query="up", max=2)
    try:
        hour_before = [[AFTER.start - 3600 + 15 * i, "9"] for i in range(8)]
        served[:] = hour_before
        obs = await provider.fetch(r, scope(), AFTER, None)
        assert obs.value is None and obs.error is not None, obs
        assert "samples of another time range" in obs.error, obs.error
        served[:] = [*hour_before, [AFTER.end - 15, "1"], [AFTER.end, "3"]]
        obs = await provider.fetch(r, scope(), AFTER, None)
        assert obs.error is None and obs.value == 2.0, obs
    finally:
        await provider.aclose()

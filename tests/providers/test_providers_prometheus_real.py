"""Prometheus provider against a real Prometheus scraping a target the test drives.

The worker's one Prometheus (Debian package `prometheus`, `tests.prometheus`), scraping
every 500 ms; each test that reads series drives a lane of its own. Skipped with a reason
when the binary is missing; with POSTFLIGHT_REQUIRE_ALL=1 (CI) a missing binary fails
instead.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import PrometheusSettings
from tests.fakes.prometheus import FakePrometheus
from tests.prometheus import ONE_PROMETHEUS, LaneFactory, PrometheusStack
from tests.providers.support import rule, scope

pytestmark = ONE_PROMETHEUS


def ratio(selector: str) -> str:
    """The 5xx share of a lane's requests over 3 s."""
    return (
        f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[3s]))'
        f" / sum(rate(http_requests_total{{{selector}}}[3s]))"
    )


def provider_for(stack: PrometheusStack, metrics: Metrics | None = None) -> PrometheusProvider:
    settings = PrometheusSettings.model_validate({"url": stack.url, "timeout": "5s"})
    return PrometheusProvider(settings, metrics=metrics or Metrics())


async def test_5xx_ratio_before_and_after_a_bad_deploy(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    stack = prometheus_stack
    lane = prometheus_lane()  # ~1% 5xx
    query = ratio(lane.selector)
    provider = provider_for(prometheus_stack)
    r = rule(name="http-5xx", source="prometheus", query=query, max=0.05)
    try:
        # Prometheus holds healthy data from here on (rates need two scrapes): 3 s at least
        healthy_from = await stack.wait_for_samples(lane, 6)
        stack.set_rates(lane, {"200": 160.0, "500": 40.0})  # the bad release
        t0 = time.time()
        healthy_from = max(healthy_from, t0 - 30)
        await stack.wait_for_samples(lane, 8, after=t0)  # 4 s of it
        now = time.time()

        baseline = await provider.fetch(r, scope(deployed_at=t0), Period(healthy_from, t0), None)
        current = await provider.fetch(r, scope(deployed_at=t0), Period(t0, now), None)
    finally:
        await provider.aclose()

    assert baseline.error is None and current.error is None
    assert baseline.value is not None and current.value is not None
    assert baseline.value < 0.05  # ~1% while healthy
    assert current.value > 0.08  # ~20% once the bad release serves
    assert current.query == query
    assert current.seconds == pytest.approx(now - t0)


async def test_a_metric_with_no_series_is_no_data_naming_it(
    prometheus_stack: PrometheusStack,
) -> None:
    provider = provider_for(prometheus_stack)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="sum(rate(no_such_metric_total[5s]))", max=1),
            scope(),
            Period(time.time() - 5, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.value is None
    assert obs.error is not None and "no metric named no_such_metric_total" in obs.error
    assert obs.answered  # a fix in the configuration, not an outage


async def test_several_series_must_be_aggregated(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    stack = prometheus_stack
    lane = prometheus_lane()  # ~1% 5xx
    await stack.wait_for_samples(lane, 2)  # both of its series, with a rate each
    provider = provider_for(prometheus_stack)
    try:
        obs = await provider.fetch(
            rule(
                source="prometheus",
                query=f"rate(http_requests_total{{{lane.selector}}}[3s])",
                max=1,
            ),
            scope(),
            Period(time.time() - 3, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and "2 series" in obs.error and "aggregate" in obs.error


async def test_bad_promql_is_rejected_with_prometheus_reason(
    prometheus_stack: PrometheusStack,
) -> None:
    metrics = Metrics()
    provider = provider_for(prometheus_stack, metrics)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="sum(rate(x[5s]", max=1),
            scope(),
            Period(time.time() - 5, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith("PromQL rejected: ")
    assert provider.http_requests == 1  # a bad query is not retried


async def test_a_scalar_expression_is_one_number(prometheus_stack: PrometheusStack) -> None:
    provider = provider_for(prometheus_stack)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="scalar(vector(2)) * 3", max=9),
            scope(),
            Period(time.time() - 10, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.value == 6.0


@pytest.mark.parametrize(("end", "step"), [("11000", "1s"), ("11001", "1s"), ("22000", "2")])
async def test_the_fake_draws_the_11000_point_line_where_prometheus_does(
    prometheus_stack: PrometheusStack, end: str, step: str
) -> None:
    """The fake's refusal (and so the tests built on it) matches the real server."""
    answers = []
    async with FakePrometheus() as fake, aiohttp.ClientSession() as session:
        for url in (prometheus_stack.url, fake.url):
            params = {"query": "vector(1)", "start": "0", "end": end, "step": step}
            async with session.get(f"{url}/api/v1/query_range", params=params) as resp:
                body = await resp.json()
                answers.append((resp.status, body.get("errorType"), body.get("error")))
    assert answers[0] == answers[1]


async def test_a_long_step_is_read_exactly_by_prometheus(prometheus_stack: PrometheusStack) -> None:
    """`time()` over the range is the evaluation timestamps: with a step of
    1,234.567 s sent exactly they are end - 3 × step … end (mean end - 1.5 × step);
    sent as `1234.57` (the old `:g`) the fourth lands past the end and is lost."""
    provider = provider_for(prometheus_stack)
    provider.config = provider.config.model_copy(update={"step": 1234.567})
    end = float(round(time.time()))
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="time()", min=0),
            scope(),
            Period(end - 3 * 1234.567, end),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.error is None
    assert obs.value == pytest.approx(end - 1.5 * 1234.567, abs=1e-3)


# ---------------------------------------------- empty parts of a query (no 5xx series)

NO_5XX = {"200": 200.0}
"""A healthy service that never answered a 5xx: no `code=~"5.."` series at all."""


def example_ratio(selector: str) -> str:
    """The contract's example rule `http-5xx` (postflight.example.yaml), on a lane."""
    return (
        f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[2s]))'
        f" / sum(rate(http_requests_total{{{selector}}}[2s]))"
    )


async def fetch_ratio(
    stack: PrometheusStack, query: str, *, ahead: float = 0.0
) -> tuple[Observation, int]:
    """The rule's observation over the 3 s ending `ahead` seconds from now, and the
    requests it took."""
    provider = provider_for(stack)
    try:
        end = time.time() + ahead
        obs = await provider.fetch(
            rule(name="http-5xx", source="prometheus", query=query, max=0.01),
            scope(),
            Period(end - 3, end),
            None,
        )
    finally:
        await provider.aclose()
    return obs, provider.http_requests


async def test_a_service_with_traffic_and_no_5xx_series_is_a_ratio_of_0_saying_so(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    lane = prometheus_lane(NO_5XX)
    await prometheus_stack.wait_for_samples(lane, 4)
    query = example_ratio(lane.selector)
    obs, fetches = await fetch_ratio(prometheus_stack, query)
    assert obs.error is None, obs.error
    assert obs.value == 0.0
    empty = f'http_requests_total{{{lane.selector},code=~"5.."}}'
    assert obs.query is not None and obs.query.startswith(query)
    assert f"taken as 0: {empty} matched no series" in obs.query, obs.query
    assert f"http_requests_total{{{lane.selector}}} matched 1 series" in obs.query, obs.query
    # the query (empty), the series of each of its 2 selectors, the query with the 0
    assert fetches == 4
    lane = prometheus_lane()  # ~1% 5xx: the query answers, and that is all it asks
    await prometheus_stack.wait_for_samples(lane, 4)
    obs, fetches = await fetch_ratio(prometheus_stack, example_ratio(lane.selector))
    assert obs.value is not None and 0 < obs.value < 0.05
    assert obs.query == example_ratio(lane.selector)
    assert fetches == 1


async def test_a_job_prometheus_has_no_series_of_stays_no_data_saying_which(
    prometheus_stack: PrometheusStack,
) -> None:
    """No traffic at all (the denominator empty too), or a job Prometheus does not
    scrape: nothing to divide by, never a ratio of 0."""
    obs, fetches = await fetch_ratio(prometheus_stack, example_ratio('job="not-scraped"'))
    assert obs.value is None
    assert obs.error is not None
    assert 'no series match http_requests_total{job="not-scraped"}' in obs.error, obs.error
    assert "http_requests_total exists" in obs.error, obs.error
    # the query, the series of its 2 selectors, of the widest in the hour before, whether
    # the metric exists at all
    assert fetches == 5


async def test_a_period_whose_samples_are_not_in_yet_is_no_data_without_an_alert(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    """A round's period that ends beyond Prometheus' last scrape (a first round on a busy
    machine, modelled by a period a minute ahead): the metric and the job are there, their
    samples not yet. No data for the round, never "no metric named …", which is an alert
    to fix the configuration (CI, stop 44: the example's 5 s window alerted so)."""
    lane = prometheus_lane(NO_5XX)
    await prometheus_stack.wait_for_samples(lane, 4)
    obs, fetches = await fetch_ratio(prometheus_stack, example_ratio(lane.selector), ahead=60)
    assert obs.value is None
    assert obs.error is None, obs.error  # an error is the provider's alert
    assert obs.query is not None
    assert f"(no samples of http_requests_total{{{lane.selector}}} in the period yet)" in (
        obs.query
    ), obs.query
    # the query, the series of its 2 selectors, of the widest in the hour before
    assert fetches == 4


async def test_a_misspelt_metric_stays_no_data_saying_so(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    lane = prometheus_lane(NO_5XX)
    await prometheus_stack.wait_for_samples(lane, 4)
    query = example_ratio(lane.selector).replace("http_requests_total", "http_request_total")
    obs, fetches = await fetch_ratio(prometheus_stack, query)
    assert obs.value is None
    assert obs.error is not None
    assert "no metric named http_request_total" in obs.error, obs.error
    assert fetches == 5


async def test_a_job_prometheus_does_not_scrape_is_said_so_not_a_misspelt_metric(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    """The README's words for a metric that exists but not with the query's labels: `no
    series match http_requests_total{job="web"} in the last hour: http_requests_total
    exists, but not with these labels (a job Prometheus does not scrape, …)`."""
    lane = prometheus_lane(NO_5XX)  # http_requests_total is scraped, for another job
    await prometheus_stack.wait_for_samples(lane, 4)
    obs, _ = await fetch_ratio(prometheus_stack, example_ratio('job="no-such-web"'))
    assert obs.value is None and obs.answered
    assert obs.error is not None
    assert (
        'no series match http_requests_total{job="no-such-web"} in the last hour:'
        " http_requests_total exists, but not with these labels (a job Prometheus does not"
        " scrape, a label misspelt, or a service with no requests yet)"
    ) in obs.error, obs.error


async def test_counters_standing_still_are_no_data_even_with_no_5xx_taken_as_0(
    prometheus_stack: PrometheusStack, prometheus_lane: LaneFactory
) -> None:
    """Series, but no request in the period: 0 / 0, no ratio to judge."""
    lane = prometheus_lane({"200": 0.0})
    await prometheus_stack.wait_for_samples(lane, 4)
    obs, fetches = await fetch_ratio(prometheus_stack, example_ratio(lane.selector))
    assert obs.value is None
    assert obs.error is not None and "(a 0/0: no requests?)" in obs.error, obs.error
    assert f'http_requests_total{{{lane.selector},code=~"5.."}} matched no series' in obs.error
    assert fetches == 4

"""Prometheus provider against a real Prometheus scraping a target the test drives.

One Prometheus (Debian package `prometheus`) per module, scraping every second.
Skipped with a reason when the binary is missing; with POSTFLIGHT_REQUIRE_ALL=1
(CI) a missing binary fails instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import PrometheusSettings
from tests.fakes.prometheus import (
    FakePrometheus,
    PrometheusProcess,
    ScrapeTarget,
    prometheus_binary,
)
from tests.providers.support import rule, scope

# one worker runs them all (`--dist loadgroup`): the module's Prometheus takes ~9 s to
# start and scrape, paid by each worker that ran one of its tests
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("prometheus-real")]

RATIO = (
    'sum(rate(http_requests_total{job="web",code=~"5.."}[3s]))'
    ' / sum(rate(http_requests_total{job="web"}[3s]))'
)


@dataclass
class Stack:
    prometheus: PrometheusProcess
    target: ScrapeTarget
    healthy_since: float
    """Prometheus holds healthy data from here on (rates need two scrapes)."""


def _require_binary() -> None:
    if prometheus_binary() is not None:
        return
    reason = "prometheus binary not found (apt-get install prometheus)"
    if os.environ.get("POSTFLIGHT_REQUIRE_ALL") == "1":
        pytest.fail(f"{reason}; POSTFLIGHT_REQUIRE_ALL=1 forbids skipping")
    pytest.skip(reason)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    _require_binary()
    target = await ScrapeTarget().start()
    target.set_rates({"200": 100.0, "500": 1.0})
    prometheus = PrometheusProcess([target.address], job="web", scrape_interval="1s")
    try:
        await prometheus.start()
        await target.wait_for_scrapes(1)  # Prometheus' first scrape comes ~5 s after start
        healthy_since = time.time()
        await target.wait_for_scrapes(3)
        yield Stack(prometheus, target, healthy_since)
    finally:
        await prometheus.stop()
        await target.stop()


def provider_for(stack: Stack, metrics: Metrics | None = None) -> PrometheusProvider:
    settings = PrometheusSettings.model_validate({"url": stack.prometheus.url, "timeout": "5s"})
    return PrometheusProvider(settings, metrics=metrics or Metrics())


async def test_5xx_ratio_before_and_after_a_bad_deploy(stack: Stack) -> None:
    provider = provider_for(stack)
    r = rule(name="http-5xx", source="prometheus", query=RATIO, max=0.05)
    try:
        healthy_from = stack.healthy_since
        t0 = time.time()
        stack.target.set_rates({"200": 80.0, "500": 20.0})  # the bad release
        await stack.target.wait_for_scrapes(4)
        now = time.time()

        baseline = await provider.fetch(r, scope(deployed_at=t0), Period(healthy_from, t0), None)
        current = await provider.fetch(r, scope(deployed_at=t0), Period(t0, now), None)
    finally:
        stack.target.set_rates({"200": 100.0, "500": 1.0})
        await provider.aclose()

    assert baseline.error is None and current.error is None
    assert baseline.value is not None and current.value is not None
    assert baseline.value < 0.05  # ~1% while healthy
    assert current.value > 0.08  # ~20% once the bad release serves
    assert current.query == RATIO
    assert current.seconds == pytest.approx(now - t0)


async def test_a_metric_with_no_series_is_no_data_not_an_error(stack: Stack) -> None:
    provider = provider_for(stack)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="sum(rate(no_such_metric_total[5s]))", max=1),
            scope(),
            Period(time.time() - 5, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.value is None and obs.error is None


async def test_several_series_must_be_aggregated(stack: Stack) -> None:
    provider = provider_for(stack)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="rate(http_requests_total[3s])", max=1),
            scope(),
            Period(time.time() - 3, time.time()),
            None,
        )
    finally:
        await provider.aclose()
    assert obs.error is not None and "2 series" in obs.error and "aggregate" in obs.error


async def test_bad_promql_is_rejected_with_prometheus_reason(stack: Stack) -> None:
    metrics = Metrics()
    provider = provider_for(stack, metrics)
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


async def test_a_scalar_expression_is_one_number(stack: Stack) -> None:
    provider = provider_for(stack)
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
    stack: Stack, end: str, step: str
) -> None:
    """The fake's refusal (and so the tests built on it) matches the real server."""
    answers = []
    async with FakePrometheus() as fake, aiohttp.ClientSession() as session:
        for url in (stack.prometheus.url, fake.url):
            params = {"query": "vector(1)", "start": "0", "end": end, "step": step}
            async with session.get(f"{url}/api/v1/query_range", params=params) as resp:
                body = await resp.json()
                answers.append((resp.status, body.get("errorType"), body.get("error")))
    assert answers[0] == answers[1]


async def test_a_long_step_is_read_exactly_by_prometheus(stack: Stack) -> None:
    """`time()` over the range is the evaluation timestamps: with a step of
    1,234.567 s sent exactly they are end - 3 × step … end (mean end - 1.5 × step);
    sent as `1234.57` (the old `:g`) the fourth lands past the end and is lost."""
    provider = provider_for(stack)
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

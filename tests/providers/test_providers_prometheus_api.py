"""Prometheus provider edge cases against the API fake (failures a real one rarely shows)."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.prometheus import PrometheusProvider, range_for
from tests.fakes.prometheus import FakePrometheus
from tests.providers.support import AFTER, T0, requests_counted, rule, scope


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


async def test_unavailable_is_retried(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.fail("503", times=1)
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value == 1.0
    assert len(prometheus_fake.requests) == 2


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
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value is None and obs.error is not None and message in obs.error
    assert requests_counted(metrics, "prometheus", "error") == 1


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

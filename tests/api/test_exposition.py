"""`GET /metrics`: the agent's own families written a slice at a time with the event loop
free between slices, line for line what prometheus_client writes; concurrent scrapes
share one rendering; the format negotiated; no `_created` series."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from agent.exposition import SLICE
from agent.metrics import Metrics
from tests.app_client import AppClient

AWKWARD = ["plain", 'with "quotes"', "back\\slash", "new\nline", "ünïcode"]


class CountingCollector:
    """A collector of someone else's, counting how often it is collected."""

    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        yield GaugeMetricFamily("postflight_test_other", "someone else's gauge", value=1)

    def describe(self) -> list[Metric]:
        return []


def busy(metrics: Metrics, environments: int) -> None:
    """Every labelled family of the agent with children, label values that need escaping
    and values that need Go's spelling."""
    for i in range(environments):
        env = AWKWARD[i % len(AWKWARD)] + str(i)
        metrics.windows_active.labels(environment=env).set(-1.5 if i % 2 else 3)
        metrics.check_runs_total.labels(environment=env, check="probe", result="pass").inc(i)
        metrics.check_duration_seconds.labels(environment=env, check="probe").observe(0.02 * i)
        metrics.rule_evaluations_total.labels(environment=env, rule="errors", outcome="pass").inc()
        metrics.round_overruns_total.labels(environment=env).inc()
        metrics.round_lag_seconds.observe(math.inf if i == 3 else 1e-4)
        metrics.samples_dropped_total.labels(environment=env, result="agent_lag").inc(0.5)
    metrics.windows_total.labels(environment="e", outcome="passed").inc()
    metrics.rollbacks_total.labels(environment="e", result="delivered").inc()
    metrics.provider_request_duration_seconds.labels(provider="sentry").observe(0.3)


def steady(text: bytes) -> list[bytes]:
    """The exposition's lines, sorted, without the process collector's values: read from
    `/proc` at each scrape, the resident memory and CPU time move between two."""
    return sorted(x for x in text.splitlines() if not x.startswith(b"postflight_process_"))


async def test_the_text_is_what_the_library_writes(metrics: Metrics) -> None:
    busy(metrics, 2 * SLICE + 7)
    metrics.registry.register(CountingCollector())
    ours, _ = await metrics.exposition.render("text/plain")
    theirs = generate_latest(metrics.registry)
    assert steady(ours) == steady(theirs)
    assert b"postflight_test_other 1.0" in ours


async def test_the_loop_runs_between_slices(metrics: Metrics) -> None:
    environments = 4 * SLICE
    busy(metrics, environments)
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await metrics.exposition.render("text/plain")
    during = turns - before
    worker.cancel()
    # each family of 4 x SLICE children yields the loop at least 4 times
    assert during >= 4 * 4


async def test_concurrent_scrapes_share_one_rendering(metrics: Metrics) -> None:
    other = CountingCollector()
    metrics.registry.register(other)
    busy(metrics, 10)
    first = asyncio.create_task(metrics.exposition.render("text/plain"))
    second = asyncio.create_task(metrics.exposition.render("text/plain"))
    (a, a_type), (b, b_type) = await asyncio.gather(first, second)
    assert other.calls == 1
    assert a == b and a_type == b_type
    await metrics.exposition.render("text/plain")  # once done, the next one renders anew
    assert other.calls == 2


async def test_a_scraper_that_hangs_up_does_not_cancel_the_others(metrics: Metrics) -> None:
    busy(metrics, 3 * SLICE)
    first = asyncio.create_task(metrics.exposition.render("text/plain"))
    second = asyncio.create_task(metrics.exposition.render("text/plain"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    first.cancel()
    body, _ = await second
    assert steady(body) == steady(generate_latest(metrics.registry))


async def test_openmetrics_names_and_compression_are_negotiated(client: AppClient) -> None:
    response = await client.get(
        "/metrics",
        params=[("name[]", "postflight_build_info")],
        headers={
            "Accept": "application/openmetrics-text; version=1.0.0",
            "Accept-Encoding": "gzip",
        },
    )
    assert response.status == 200
    assert response.content_type == "application/openmetrics-text"
    assert response.headers["Content-Encoding"] == "gzip"
    text = await response.text()  # the client inflates it
    assert "postflight_build_info{" in text
    assert "postflight_api_requests" not in text
    assert text.rstrip().endswith("# EOF")


async def test_the_endpoint_serves_the_text_without_created_series(
    client: AppClient, metrics: Metrics
) -> None:
    metrics.check_runs_total.labels(environment="prod", check="probe", result="pass").inc()
    response = await client.get("/metrics")
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'postflight_check_runs_total{check="probe",environment="prod",result="pass"} 1.0' in text
    assert "postflight_build_info{" in text
    assert "_created" not in text

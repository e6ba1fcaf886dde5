"""`GET /metrics` is rendered off the event loop, shares one rendering between concurrent
scrapes, negotiates its format and exposes no `_created` series."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from agent.api.scrape import Exposition
from agent.metrics import Metrics
from tests.api.conftest import Client


class GatedCollector:
    """A collector whose `collect` waits for `gate` (set from the event loop) and counts
    its calls: rendered on the loop, the gate could never open while it waits."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = asyncio.Event()
        self.calls = 0
        self.opened = False
        self._loop = asyncio.get_running_loop()

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        self._loop.call_soon_threadsafe(self.started.set)
        self.opened = self.gate.wait(timeout=5)
        yield GaugeMetricFamily("postflight_test_gate", "a gated gauge", value=1)

    def describe(self) -> list[Metric]:
        return []


async def test_the_loop_runs_while_a_scrape_renders(client: Client, metrics: Metrics) -> None:
    gated = GatedCollector()
    metrics.registry.register(gated)
    scrape = asyncio.create_task(client.get("/metrics"))
    await asyncio.wait_for(gated.started.wait(), 5)  # rendering, and waiting for the loop
    gated.gate.set()
    response = await scrape
    assert response.status == 200
    assert gated.opened, "the rendering held the event loop"
    assert "postflight_test_gate 1.0" in await response.text()


async def test_concurrent_scrapes_share_one_rendering(metrics: Metrics) -> None:
    gated = GatedCollector()
    metrics.registry.register(gated)
    exposition = Exposition(metrics.registry)
    first = asyncio.create_task(exposition.render("text/plain"))
    await asyncio.wait_for(gated.started.wait(), 5)
    second = asyncio.create_task(exposition.render("text/plain"))
    await asyncio.sleep(0.05)
    gated.gate.set()
    (a, a_type), (b, b_type) = await asyncio.gather(first, second)
    assert gated.calls == 1
    assert a == b and a_type == b_type
    await exposition.render("text/plain")  # once done, the next scrape renders anew
    assert gated.calls == 2


async def test_a_scraper_that_hangs_up_does_not_cancel_the_others(metrics: Metrics) -> None:
    gated = GatedCollector()
    metrics.registry.register(gated)
    exposition = Exposition(metrics.registry)
    first = asyncio.create_task(exposition.render("text/plain"))
    await asyncio.wait_for(gated.started.wait(), 5)
    second = asyncio.create_task(exposition.render("text/plain"))
    await asyncio.sleep(0.01)
    first.cancel()
    gated.gate.set()
    body, _ = await second
    assert b"postflight_test_gate 1.0" in body


async def test_openmetrics_names_and_compression_are_negotiated(client: Client) -> None:
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


async def test_no_created_series(client: Client, metrics: Metrics) -> None:
    metrics.check_runs_total.labels(environment="prod", check="probe", result="pass").inc()
    text = await (await client.get("/metrics")).text()
    assert 'postflight_check_runs_total{check="probe",environment="prod",result="pass"} 1.0' in text
    assert "_created" not in text

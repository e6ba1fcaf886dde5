"""One real Prometheus per pytest worker, shared by the modules that query one (a pytest
plugin, see tests/conftest.py).

Prometheus (Debian package `prometheus`) takes ~5 s from its start to its first scrape (its
scrape manager applies new targets every 5 s), which each module that started its own paid
again. Here one Prometheus and the one target it scrapes run on a thread of their own, with
their own event loop, so they serve every test although each test runs on its own
function-scoped loop.

Tests keep their data apart by lanes. A lane is a set of counters the target exposes under
the lane's own `job` and `instance` labels, which Prometheus keeps (`honor_labels`): a new
lane is scraped at the next scrape, with no reload, and a query that selects a lane's job
(`Lane.selector`) sees no series of any other lane. A test's lanes are its own
(`prometheus_lane`), withdrawn after it; the one lane all may read, `healthy`, carries
constant healthy traffic for the stack's whole life and no test may change it. A few lanes of
healthy traffic are opened with Prometheus (`WARM_LANES`) and each is handed to one test
only, which so finds seconds of healthy history instead of waiting for it. Tests wait for
data by asking Prometheus (`wait_for_samples`), never for a fixed time.

Without the binary the tests that need it skip with the reason (and fail under
POSTFLIGHT_REQUIRE_ALL=1, see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.prometheus import HOST, PrometheusProcess, ScrapeTarget, prometheus_binary
from tests.worker_shared import SharedUntilLastUser

T = TypeVar("T")

ONE_PROMETHEUS = pytest.mark.xdist_group("prometheus")
"""The tests that use `prometheus_stack` run on one pytest-xdist worker (`--dist
loadgroup`), which starts the one Prometheus they share; spread over the workers, each would
start its own."""

SCRAPE_INTERVAL = "500ms"
METRIC = "http_requests_total"
HEALTHY_RATES = {"200": 198.0, "500": 2.0}
"""Requests per second by status: 1% 5xx (one more 5xx at every 500 ms scrape, so each
rate window sees some from Prometheus' first scrapes on)."""
WARM_LANES = 4
"""Lanes of `HEALTHY_RATES` opened with Prometheus, for the tests that take a healthy lane
(three today); once they are handed out, a test gets a new lane, which waits for its data."""


@dataclass(frozen=True)
class Lane:
    """One test's counters: `http_requests_total{job=<job>, instance=<job>, code=…}`."""

    job: str
    codes: tuple[str, ...]

    @property
    def selector(self) -> str:
        """The label matcher that selects this lane's series and no other's."""
        return f'job="{self.job}"'


class PrometheusStack:
    """A real Prometheus scraping one target of lanes, run on a private loop thread."""

    def __init__(self, *, scrape_interval: str = SCRAPE_INTERVAL) -> None:
        self.scrape_interval = scrape_interval
        self.prometheus: PrometheusProcess | None = None
        self.scrapes = 0
        self._lanes: dict[str, ScrapeTarget] = {}
        self._numbers = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="prometheus-stack", daemon=True
        )
        self.healthy = Lane("healthy", tuple(HEALTHY_RATES))
        self._warm = [Lane(f"warm-{n}", tuple(HEALTHY_RATES)) for n in range(1, WARM_LANES + 1)]

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> PrometheusStack:
        self._thread.start()
        try:
            self._run(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        for lane in [self.healthy, *self._warm]:
            self._lanes[lane.job] = self._counters(lane.job, HEALTHY_RATES)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        port = self._runner.addresses[0][1]
        self.prometheus = PrometheusProcess(
            [f"{HOST}:{port}"],
            job="lanes",
            scrape_interval=self.scrape_interval,
            honor_labels=True,
        )
        await self.prometheus.start()
        # a rate needs two samples; a few make the healthy lane's data real
        await self.wait_for_samples(self.healthy, 4)

    @staticmethod
    def _counters(job: str, rates: dict[str, float]) -> ScrapeTarget:
        counters = ScrapeTarget(metric=METRIC, labels={"job": job, "instance": job})
        counters.set_rates(rates)
        return counters

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        lines = [f"# HELP {METRIC} Requests served.", f"# TYPE {METRIC} counter"]
        for counters in self._lanes.values():
            lines.extend(counters.samples())
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._run(self._stop(), timeout=30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    async def _stop(self) -> None:
        if self.prometheus is not None:
            await self.prometheus.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    def take_lane(self) -> Lane:
        """A lane of `HEALTHY_RATES` no other test had: a warm one while any is left."""
        if self._warm:
            return self._warm.pop(0)
        return self.open_lane(HEALTHY_RATES)

    def open_lane(self, rates: dict[str, float], job: str | None = None) -> Lane:
        """A new lane counting at `rates` from the next scrape on (`job`: a name a test's
        verbatim query selects, e.g. the example's `job="web"`; one test's at a time)."""
        lane = Lane(job or f"lane-{next(self._numbers)}", tuple(rates))
        assert lane.job not in self._lanes, f"lane {lane.job} is already open"

        async def add() -> None:
            self._lanes[lane.job] = self._counters(lane.job, rates)

        self._run(add(), timeout=5)
        return lane

    def set_rates(self, lane: Lane, rates: dict[str, float]) -> None:
        """A test's own lane counts at `rates` from now on (the same codes as it began)."""
        assert lane != self.healthy, "the healthy lane is every test's: none may change it"
        assert tuple(rates) == lane.codes, (rates, lane.codes)
        counters = self._lanes[lane.job]

        async def apply() -> None:
            counters.set_rates(rates)

        self._run(apply(), timeout=5)

    def close_lane(self, lane: Lane) -> None:
        """The lane's series end (Prometheus marks them stale at the next scrape)."""

        async def remove() -> None:
            self._lanes.pop(lane.job, None)

        self._run(remove(), timeout=5)

    async def wait_for_samples(
        self, lane: Lane, n: int, *, after: float = 0.0, within: float = 30.0
    ) -> float:
        """From the caller's loop: until Prometheus holds `n` samples, taken after `after`
        (Unix seconds), of every series of the lane, as its query API answers; returns the
        time from which every one of them has data."""
        query = f"{METRIC}{{{lane.selector}}}[10m]"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        counts: list[int] = []
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"{self.url}/api/v1/query", params={"query": query}) as resp:
                    resp.raise_for_status()
                    series = (await resp.json())["data"]["result"]
                stamps = [[float(t) for t, _ in s["values"] if float(t) > after] for s in series]
                counts = [len(s) for s in stamps]
                if len(series) == len(lane.codes) and min(counts) >= n:
                    return max(s[0] for s in stamps)
                assert loop.time() < deadline, f"{lane.job}: {counts} samples, wanted {n} each"
                await asyncio.sleep(0.1)


_SHARED: SharedUntilLastUser[PrometheusStack] = SharedUntilLastUser(
    "prometheus", "prometheus_stack", PrometheusStack.stop
)
"""This worker's stack while its tests run (one at most)."""


@pytest.fixture
def prometheus_stack() -> PrometheusStack:
    """This worker's Prometheus, once its healthy lane holds data to take rates of: started
    for the first test that asks for it, kept while the next test is of `ONE_PROMETHEUS`'s
    group or asks for it too, stopped after the last such (`pytest_runtest_teardown`)."""
    if prometheus_binary() is None:
        pytest.skip("prometheus binary not found: apt-get install prometheus (Debian package)")
    return _SHARED.get(lambda: PrometheusStack().start())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop the stack once the tests that share it are done (after the test's own fixtures,
    which close its lanes). Kept to the session's end, its scrape every 500 ms (Prometheus'
    process, and the target's handler on a thread of the worker) ran beside each of the
    worker's later tests, and its loop's connection task was a task under way in the
    worker that no later test had started (the soak census counted it, as `start`)."""
    yield
    _SHARED.after(nextitem)


def pytest_sessionfinish() -> None:
    _SHARED.stop()  # a run cut short


LaneFactory = Callable[..., Lane]


@pytest.fixture
def prometheus_lane(prometheus_stack: PrometheusStack) -> Iterator[LaneFactory]:
    """Factory: `prometheus_lane()` → a lane of this test's own at `HEALTHY_RATES` (warm,
    while any is left), `prometheus_lane(rates)` a new one at `rates`; all are withdrawn
    after the test."""
    lanes: list[Lane] = []

    def open_lane(rates: dict[str, float] | None = None) -> Lane:
        lane = prometheus_stack.take_lane() if rates is None else prometheus_stack.open_lane(rates)
        lanes.append(lane)
        return lane

    yield open_lane
    for lane in lanes:
        prometheus_stack.close_lane(lane)

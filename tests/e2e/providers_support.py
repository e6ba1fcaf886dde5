"""Helpers for the providers' end-to-end tests (`tests/e2e/test_providers_e2e.py`).

- `PrometheusStack`: one real Prometheus (Debian package `prometheus`) and the
  scrape targets it watches, on a thread of their own with their own event loop,
  so a single Prometheus serves every test of a module although each test (and the
  daemon it starts) runs on its own function-scoped loop. Each test drives its own
  target (`instance` label), so one test's bad release never leaks into another's
  data.
- `GrowingSentry`: the fake Sentry whose counts for a release grow with time, as
  Sentry's do while a release serves traffic: each round's fetch over [T0, now)
  then holds new events, which the watcher turns into the round's own increment.
- `PrometheusProxy`: the real Prometheus' API behind a fake that can fail the way
  the other fakes do (500, 429, hang, malformed JSON, 401).
- YAML builders for the `providers:` section and an environment with provider rules.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes._server import FakeServer
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import PrometheusProcess, ScrapeTarget
from tests.fakes.sentry import FakeSentry, SentryStats

T = TypeVar("T")

SENTRY_TOKEN = "sntrys_e2e-sentry-token-0123456789"
NEWRELIC_KEY = "NRAK-E2EKEY0123456789"
NEWRELIC_WEB = "https://one.newrelic.com"

HEALTHY_RATES = {"200": 198.0, "500": 2.0}
"""Requests per second by status: 1% 5xx (one more 5xx at every 500 ms scrape, so each
rate window sees some from Prometheus' first scrapes on)."""
BAD_RATES = {"200": 160.0, "500": 40.0}
"""The bad release: 20% 5xx."""


# ---------------------------------------------------------------- Prometheus


class PrometheusStack:
    """A real Prometheus scraping named `ScrapeTarget`s, run on a private loop thread."""

    def __init__(self, names: list[str], *, scrape_interval: str = "500ms") -> None:
        self.names = names
        self.scrape_interval = scrape_interval
        self.targets: dict[str, ScrapeTarget] = {}
        self.prometheus: PrometheusProcess | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="prometheus-stack", daemon=True
        )

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
        for name in self.names:
            target = await ScrapeTarget().start()
            target.set_rates(HEALTHY_RATES)
            self.targets[name] = target
        self.prometheus = PrometheusProcess(
            [t.address for t in self.targets.values()],
            job="web",
            scrape_interval=self.scrape_interval,
        )
        await self.prometheus.start()
        # a rate needs two samples; a few scrapes of every target make the data real
        await asyncio.gather(*(t.wait_for_scrapes(4, within=30) for t in self.targets.values()))

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
        for target in self.targets.values():
            await target.stop()

    @property
    def url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    def instance(self, name: str) -> str:
        """The `instance` label of a target (its host:port)."""
        return self.targets[name].address

    def set_rates(self, name: str, rates: dict[str, float]) -> None:
        target = self.targets[name]

        async def apply() -> None:
            target.set_rates(rates)

        self._run(apply(), timeout=5)

    async def wait_for_scrapes(self, name: str, n: int, within: float = 15.0) -> None:
        """From the caller's loop: until Prometheus scraped target `name` n more times."""
        target = self.targets[name]
        goal = target.scrapes + n
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while target.scrapes < goal:
            assert loop.time() < deadline, f"Prometheus scraped {name} {target.scrapes}/{goal}"
            await asyncio.sleep(0.05)


def ratio_query(instance: str, window: str = "2s") -> str:
    """The 5xx share of one target's requests (one series: summed)."""
    sel = f'job="web",instance="{instance}"'
    return (
        f'sum(rate(http_requests_total{{{sel},code=~"5.."}}[{window}]))'
        f" / sum(rate(http_requests_total{{{sel}}}[{window}]))"
    )


class PrometheusProxy(FakeServer):
    """Prometheus' HTTP API, forwarded to a real Prometheus unless told to fail
    (`fail("500" | "429" | "hang" | "malformed" | "401")`, see `tests.fakes._server`)."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v1/{tail:.*}", self._forward)

    async def _forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.path}",
            params=list(request.query.items()),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as resp:
            body = await resp.read()
            return web.Response(
                body=body, status=resp.status, content_type=resp.content_type or None
            )

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()
            self._session = None


# -------------------------------------------------------------------- Sentry


@dataclass(frozen=True)
class Growth:
    """A release serving traffic from `since`: `per_second` transactions, of which
    `failure_rate` fail."""

    since: float
    per_second: float
    failure_rate: float


class GrowingSentry(FakeSentry):
    """`grow(release, per_second=…, failure_rate=…)`: the release's counts since the
    deploy grow with time, so successive fetches over [T0, now) see new events."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.growth: dict[str, Growth] = {}

    def grow(
        self, release: str, *, per_second: float, failure_rate: float, since: float | None = None
    ) -> None:
        self.growth[release] = Growth(
            time.time() if since is None else since, per_second, failure_rate
        )

    def stats_for(self, release: str | None, start: float | None) -> SentryStats:
        growth = self.growth.get(release or "")
        if growth is None:
            return super().stats_for(release, start)
        n = int(growth.per_second * max(0.0, time.time() - growth.since))
        return SentryStats(transactions=n, failure_rate=growth.failure_rate, errors=0)


# ---------------------------------------------------------------------- YAML


def providers_yaml(
    *,
    sentry: FakeSentry | None = None,
    newrelic: FakeNewRelic | None = None,
    prometheus_url: str | None = None,
    timeout: str = "2s",
    request_timeout: str = "1s",
    max_attempts: int = 2,
    markers: bool = False,
    budgets: Mapping[str, tuple[str, str]] | None = None,
) -> str:
    """The `providers:` section pointing at the fakes, with short budgets (`markers`:
    Sentry's and New Relic's deploy markers on; `budgets`: a provider's own `timeout`
    and `request_timeout`, instead of the shared ones)."""

    def budget_of(name: str) -> str:
        total, each = (budgets or {}).get(name, (timeout, request_timeout))
        return (
            f"    timeout: {total}\n    request_timeout: {each}\n    max_attempts: {max_attempts}\n"
        )

    text = "providers:\n"
    if sentry is not None:
        text += (
            f"  sentry:\n    base_url: {sentry.url}\n    org: {sentry.org}\n"
            f"    token: {SENTRY_TOKEN}\n"
            + budget_of("sentry")
            + ("    markers: true\n" if markers else "")
        )
    if newrelic is not None:
        text += (
            f"  newrelic:\n    api_url: {newrelic.graphql_url}\n"
            f"    account_id: {newrelic.account_id}\n    api_key: {NEWRELIC_KEY}\n"
            f"    web_url: {NEWRELIC_WEB}\n"
            + budget_of("newrelic")
            + ("    markers: true\n" if markers else "")
        )
    if prometheus_url is not None:
        text += f"  prometheus:\n    url: {prometheus_url}\n" + budget_of("prometheus")
    return text


def alerting_yaml(sink_url: str) -> str:
    return f"alerting:\n  channels:\n    - url: {sink_url}\n      tags: [oncall]\n"


def environment_yaml(
    rules: str,
    *,
    rollback_url: str,
    secret: str,
    window: str = "6s",
    interval: str = "500ms",
    lookback: str = "10m",
    policy: str = "sequential",
    failure_limit: int = 2,
    pass_on: str = "evidence",
    sentry: bool = True,
    newrelic: bool = True,
    sentry_release: str | None = None,
) -> str:
    """`production`, with provider rules only (no checks: the providers are the
    evidence). `rules` is a YAML list indented by four spaces; `sentry`/`newrelic`
    add that provider's `baseline:` scope (`sentry_release`: its release name)."""
    scopes = []
    if sentry:
        release = "" if sentry_release is None else f', release: "{sentry_release}"'
        scopes.append(f"    sentry: {{project: web, environment: production{release}}}")
    if newrelic:
        scopes.append('    newrelic: {app_name: "web (production)"}')
    lines = [
        "production:",
        "  base_url: http://127.0.0.1:9",
        f"  window: {window}",
        f"  interval: {interval}",
        f"  lookback: {lookback}",
        "  background_interval: 1h",
        "  baseline:" + ("" if scopes else " {}"),
        *scopes,
        "  analysis:",
        f"    policy: {policy}",
        f"    failure_limit: {failure_limit}",
        f"    pass_on: {pass_on}",
        "  rules:",
        rules.rstrip("\n"),
        "  rollback:",
        f"    url: {rollback_url}",
        f"    secret: {secret}",
        "    backoff: 100ms",
        "  alerts:",
        "    tags: [oncall]",
    ]
    return "\n".join(lines) + "\n"


def deploy_second() -> int:
    """A whole-second deploy time (the API keeps seconds): just now."""
    return int(time.time())


def iso_z(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

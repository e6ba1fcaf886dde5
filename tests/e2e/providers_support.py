"""Helpers for the providers' end-to-end tests (`tests/e2e/test_providers_e2e.py`).

- `ratio_query`: the 5xx share of one lane of the worker's real Prometheus
  (`tests.prometheus`), so one test's bad release never leaks into another's data.
- `GrowingSentry`: the fake Sentry whose counts for a release grow with time, as
  Sentry's do while a release serves traffic: each round's fetch over [T0, now)
  then holds new events, which the watcher turns into the round's own increment.
- `PrometheusProxy`: the real Prometheus' API behind a fake that can fail the way
  the other fakes do (500, 429, hang, malformed JSON, 401).
- YAML builders for the `providers:` section and an environment with provider rules.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes._server import FakeServer
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.sentry import GOLDEN, FakeSentry, SentryStats

SENTRY_TOKEN = "sntrys_e2e-sentry-token-0123456789"
NEWRELIC_KEY = "NRAK-E2EKEY0123456789"
NEWRELIC_WEB = "https://one.newrelic.com"

BAD_RATES = {"200": 160.0, "500": 40.0}
"""The bad release: 20% 5xx."""


# ---------------------------------------------------------------- Prometheus


def ratio_query(selector: str, window: str = "2s") -> str:
    """The 5xx share of one lane's requests (`tests.prometheus.Lane.selector`; one
    series: summed)."""
    return (
        f'sum(rate(http_requests_total{{{selector},code=~"5.."}}[{window}]))'
        f" / sum(rate(http_requests_total{{{selector}}}[{window}]))"
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
    `failure_rate` fail, 95% of them within `p95_ms`."""

    since: float
    per_second: float
    failure_rate: float
    p95_ms: float = 200.0


class GrowingSentry(FakeSentry):
    """`grow(release, per_second=…, failure_rate=…)`: the release's counts since the
    deploy grow with time, so successive fetches over [T0, now) see new events."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.growth: dict[str, Growth] = {}

    def grow(
        self,
        release: str,
        *,
        per_second: float,
        failure_rate: float,
        since: float | None = None,
        p95_ms: float = 200.0,
    ) -> None:
        self.growth[release] = Growth(
            time.time() if since is None else since, per_second, failure_rate, p95_ms
        )

    def stats_for(self, release: str | None, start: float | None) -> SentryStats:
        growth = self.growth.get(release or "")
        if growth is None:
            return super().stats_for(release, start)
        n = int(growth.per_second * max(0.0, time.time() - growth.since))
        # each transaction's duration, newest first (as Sentry's `-timestamp` pages): a
        # round's newest are new ones, spread evenly up to p95/0.95 whatever their number
        top = growth.p95_ms / 0.95
        newest = range(n - 1, max(-1, n - 501), -1)  # the fake's most: 500
        durations = tuple(round(top * ((j * GOLDEN) % 1.0), 3) for j in newest)
        return SentryStats(
            transactions=n,
            failure_rate=growth.failure_rate,
            errors=0,
            p95_ms=growth.p95_ms,
            durations_ms=durations,
        )


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

"""Benchmark: requests and wall time per round for 20 provider rules.

    python bench/providers.py [--rounds 10] [--latency 0.02] [--json] [--fake-prometheus]

Seven Sentry, seven New Relic and six Prometheus rules (some sharing a query, as
real configurations do) against the local fake Sentry and New Relic, and a real
Prometheus (`/usr/bin/prometheus`, scraping a local target) when installed, else the
Prometheus API fake. `--latency` adds that many seconds to every fake answer, as a
network would. Scenarios:

- `healthy`: the baseline fetch (once per window), then `--rounds` rounds;
- `sentry-hangs`: every Sentry request hangs; the round still ends within Sentry's
  `timeout` (here 2 s) and the other providers' rules are unaffected.

Prints figures; asserts nothing (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers.base import DeployScope, Period
from agent.providers.client import HttpProvider
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import (
    BaselineSettings,
    NewRelicSettings,
    PrometheusSettings,
    SentrySettings,
)
from agent.providers.sentry import SentryProvider
from agent.settings import RuleSettings
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import (
    FakePrometheus,
    PrometheusProcess,
    ScrapeTarget,
    prometheus_binary,
)
from tests.fakes.sentry import FakeSentry, SentryStats

TOKEN = "sntrys_bench-token"
KEY = "NRAK-BENCHKEY"
BUDGET = {"timeout": "2s", "request_timeout": "1s"}


def rules() -> list[RuleSettings]:
    sentry: list[tuple[str, str, dict[str, Any]]] = [
        ("sentry-error-rate", "error_rate", {"max_increase": "100%"}),
        ("sentry-error-rate-cap", "error_rate", {"max": 0.05}),  # shares the query above
        ("sentry-error-count", "error_count", {"max": 100}),
        ("sentry-p95", "p95_duration", {"max_increase": "25%"}),
        ("sentry-p95-cap", "p95_duration", {"max": "2s"}),  # shares
        ("sentry-crash-free", "crash_free_rate", {"max_increase": "1%"}),
        ("sentry-crash-free-floor", "crash_free_rate", {"min": 0.98}),  # shares
    ]
    nrql = [
        "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web'",
        "SELECT percentage(count(*), WHERE error IS true) AS 'errPct' FROM Transaction",
        "SELECT rate(count(*), 1 minute) AS 'rpm' FROM Transaction",
        "SELECT filter(count(*), WHERE error IS true) AS 'errors', count(*) AS 'total'"
        " FROM Transaction",
        "SELECT average(duration) FROM Transaction WHERE appName = 'web'",
        "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web'",  # shares
        "SELECT average(duration) FROM Transaction WHERE appName = 'web'",  # shares
    ]
    promql = [
        'sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))',
        "sum(rate(http_requests_total[5s]))",
        'sum(rate(http_requests_total{code="200"}[5s]))',
        "count(up)",
        "sum(rate(http_requests_total[5s]))",  # shares
        "count(up)",  # shares
    ]
    out = [
        RuleSettings.model_validate({"name": n, "source": "sentry", "metric": m, **b})
        for n, m, b in sentry
    ]
    out += [
        RuleSettings.model_validate(
            {"name": f"nr-{i}", "source": "newrelic", "nrql": q, "max_increase": "25%"}
        )
        for i, q in enumerate(nrql)
    ]
    out += [
        RuleSettings.model_validate(
            {"name": f"prom-{i}", "source": "prometheus", "query": q, "max_increase": "50%"}
        )
        for i, q in enumerate(promql)
    ]
    assert len(out) == 20
    return out


async def one_round(
    providers: dict[str, HttpProvider],
    rule_list: list[RuleSettings],
    scope: DeployScope,
    period: Period,
    release: str | None,
) -> dict[str, Any]:
    before = {name: p.http_requests for name, p in providers.items()}
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(providers[r.source].fetch(r.to_rule(), scope, period, release))
            for r in rule_list
        ]
    wall = time.perf_counter() - started
    observations: list[Observation] = [t.result() for t in tasks]
    return {
        "wall_s": wall,
        "requests": {n: p.http_requests - before[n] for n, p in providers.items()},
        "errors": sum(1 for o in observations if o.error),
        "no_data": sum(1 for o in observations if o.value is None and not o.error),
    }


async def scenario(
    name: str,
    providers: dict[str, HttpProvider],
    sentry: FakeSentry,
    rounds: int,
    t0: float,
) -> dict[str, Any]:
    rule_list = rules()
    scope = DeployScope(
        deploy_id="dep_bench",
        environment="production",
        version="v2",
        previous_version="v1",
        deployed_at=t0,
        baseline=BaselineSettings.model_validate(
            {"sentry": {"project": "web", "environment": "production"}}
        ),
    )
    if name == "sentry-hangs":
        sentry.fail("hang")
    baseline = await one_round(providers, rule_list, scope, Period(t0 - 3600, t0), "v1")
    per_round = []
    for k in range(rounds):
        now = time.time() + k  # distinct periods: no reuse across rounds
        per_round.append(await one_round(providers, rule_list, scope, Period(t0, now), "v2"))
    sentry.heal()
    walls = [r["wall_s"] for r in per_round]
    requests = [sum(r["requests"].values()) for r in per_round]
    return {
        "scenario": name,
        "rules": len(rule_list),
        "baseline": baseline,
        "rounds": rounds,
        "round_wall_s": {
            "median": statistics.median(walls),
            "max": max(walls),
        },
        "round_requests": {
            "total": statistics.median(requests),
            "by_provider": per_round[-1]["requests"],
        },
        "round_errors": per_round[-1]["errors"],
    }


def build(sentry: FakeSentry, newrelic: FakeNewRelic, prom_url: str) -> dict[str, HttpProvider]:
    metrics = Metrics()
    return {
        "sentry": SentryProvider(
            SentrySettings.model_validate(
                {"base_url": sentry.url, "org": sentry.org, "token": TOKEN, **BUDGET}
            ),
            metrics=metrics,
        ),
        "newrelic": NewRelicProvider(
            NewRelicSettings.model_validate(
                {
                    "api_url": newrelic.graphql_url,
                    "account_id": newrelic.account_id,
                    "api_key": KEY,
                    **BUDGET,
                }
            ),
            metrics=metrics,
        ),
        "prometheus": PrometheusProvider(
            PrometheusSettings.model_validate({"url": prom_url, **BUDGET}), metrics=metrics
        ),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"latency_s": args.latency, "scenarios": []}
    target: ScrapeTarget | None = None
    real: PrometheusProcess | None = None
    fake_prom: FakePrometheus | None = None
    async with FakeSentry(token=TOKEN) as sentry, FakeNewRelic(api_key=KEY) as newrelic:
        sentry.delay = newrelic.delay = args.latency
        sentry.set_stats(SentryStats(failure_rate=0.01, p95_ms=200), release="v1")
        sentry.set_stats(SentryStats(failure_rate=0.012, p95_ms=210), release="v2")
        try:
            if not args.fake_prometheus and prometheus_binary():
                target = await ScrapeTarget().start()
                target.set_rates({"200": 100.0, "500": 1.0})
                real = await PrometheusProcess([target.address]).start()
                await target.wait_for_scrapes(3)
                prom_url, results["prometheus"] = real.url, "real"
            else:
                fake_prom = await FakePrometheus().start()
                fake_prom.delay = args.latency
                prom_url, results["prometheus"] = fake_prom.url, "fake"
            t0 = time.time() - 2
            for name in ("healthy", "sentry-hangs"):
                # fresh providers per scenario: no answer cached from the one before
                providers = build(sentry, newrelic, prom_url)
                try:
                    rounds = args.rounds if name == "healthy" else min(args.rounds, 3)
                    results["scenarios"].append(await scenario(name, providers, sentry, rounds, t0))
                finally:
                    for p in providers.values():
                        await p.aclose()
        finally:
            if real:
                await real.stop()
            if target:
                await target.stop()
            if fake_prom:
                await fake_prom.stop()
    return results


def show(results: dict[str, Any]) -> None:
    print(
        f"20 rules (7 Sentry, 7 New Relic, 6 Prometheus [{results['prometheus']}]),"
        f" fake latency {results['latency_s'] * 1000:.0f} ms per answer"
    )
    for s in results["scenarios"]:
        b = s["baseline"]
        print(f"\n{s['scenario']}:")
        print(
            f"  baseline fetch: {sum(b['requests'].values())} requests {b['requests']},"
            f" {b['wall_s'] * 1000:.0f} ms, {b['errors']} rules in error"
        )
        w = s["round_wall_s"]
        print(
            f"  per round ({s['rounds']} rounds): {s['round_requests']['total']:.0f} requests"
            f" {s['round_requests']['by_provider']}, wall median {w['median'] * 1000:.0f} ms,"
            f" max {w['max'] * 1000:.0f} ms, {s['round_errors']} rules in error"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--latency", type=float, default=0.02, help="seconds added to each fake answer"
    )
    parser.add_argument(
        "--fake-prometheus",
        action="store_true",
        help="use the API fake even when Prometheus is installed",
    )
    parser.add_argument("--json", action="store_true")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the hang scenario warns once per rule
    outcome = asyncio.run(main(arguments))
    if arguments.json:
        print(json.dumps(outcome, indent=2))
    else:
        show(outcome)

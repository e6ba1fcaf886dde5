"""Sampled Sentry data through the judge: false rollbacks and detection, 10% vs 100% traces.

A provider family beside `bench/decisions.py` (which judges check samples): the evidence
is what Sentry's `spans` dataset answers for an `error_rate` rule, read by the provider's
own functions (`agent.providers.sentry.rate_observation`; for the baseline also its
per-minute buckets, `rate_buckets` and `bucketed_baseline`, so their burstiness is
measured), turned into each round's own evidence by `agent.providers.base.round_increment`
(as the watcher does), and judged by the public `agent.analysis.judge.judge` after every
round with the user's defaults (`sequential`, confidence 0.99, 30 s rounds over a 15 min
window, a 1 h lookback on the previous release).

Traffic per second is Poisson (10, 100 and 1000 transactions/s), each second's error
probability Beta-distributed around 1% (concentration 100, bursty as in decisions.py)
with a slow +-3% drift. Sentry keeps each trace with the sample rate (binomial
thinning, independent of its outcome) and answers `count_sample()` (stored),
`count()` (stored / rate, the extrapolated estimate) and `failure_rate()` (the share
among the stored). Variants, fed the same traffic window by window:

* `unsampled`: every trace stored (sample rate 1);
* `sampled`: `--rate` (default 10%), read as the provider reads it now (the sample);
* `sampled_as_estimate`: the same answers read the old way (the estimate `count()` as
  the number of transactions behind `failure_rate()`, the baseline one figure), for
  comparison.

`--one-number` judges `unsampled` and `sampled` against a one-figure baseline (no
buckets), as the provider did before it read the baseline's buckets.

Families: `aa` (the new release as good as the old), `errors_x2`, `errors_x5`.

    python bench/provider_sampling.py                # table
    python bench/provider_sampling.py --json         # one JSON object
    python bench/provider_sampling.py --windows 50   # quicker

Prints figures; asserts nothing (benchmarks are not tests).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sc_stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import judge
from agent.analysis.types import Observation, Policy, Rule
from agent.providers.base import round_increment
from agent.providers.sentry import (
    TimeseriesAnswer,
    bucketed_baseline,
    rate_buckets,
    rate_observation,
)

SEED = 20261130
TRAFFIC = (10, 100, 1000)
LOOKBACK_S = 3600
WINDOW_S = 900
ROUND_S = 30
BUCKET_S = 60
"""The provider's baseline bucket for a 1 h lookback (`bucket_seconds`)."""
ERROR_BASE = 0.01
KAPPA = 100.0
DRIFT = 0.03
CONFIDENCE = 0.99
RULE = Rule("sentry-errors", "sentry", "error_rate", max_increase=0.1)
POLICY = Policy("sequential", confidence=CONFIDENCE)
VARIANTS = ("unsampled", "sampled", "sampled_as_estimate")
FAMILIES = {"aa": 1.0, "errors_x2": 2.0, "errors_x5": 5.0}
QUERY = "events dataset=spans field=count() field=count_sample() field=failure_rate()"


@dataclass(frozen=True, slots=True)
class Traffic:
    """Per second: transactions and failed ones (baseline, then the window)."""

    total: np.ndarray
    failed: np.ndarray


def simulate(rng: np.random.Generator, rps: float, factor: float) -> Traffic:
    steps = LOOKBACK_S + WINDOW_S
    t = np.arange(steps, dtype=np.float64)
    period = rng.uniform(3600.0, 3 * 3600.0)
    drift = np.exp(DRIFT * np.sin(2 * math.pi * t / period + rng.uniform(0, 2 * math.pi)))
    mu = ERROR_BASE * drift
    mu[LOOKBACK_S:] *= factor
    p = rng.beta(mu * KAPPA, (1.0 - mu) * KAPPA)
    total = rng.poisson(rps, size=steps)
    return Traffic(total, rng.binomial(total, p))


def stored(rng: np.random.Generator, traffic: Traffic, rate: float) -> Traffic:
    """What Sentry keeps: each trace with probability `rate`, whatever its outcome."""
    if rate >= 1.0:
        return traffic
    failed = rng.binomial(traffic.failed, rate)
    ok = rng.binomial(traffic.total - traffic.failed, rate)
    return Traffic(failed + ok, failed)


def sentry_row(kept: Traffic, rate: float, start: int, end: int) -> dict[str, Any]:
    """The `spans` aggregate row Sentry answers for seconds [start, end)."""
    n = int(kept.total[start:end].sum())
    failed = int(kept.failed[start:end].sum())
    return {
        "count()": round(n / rate),
        "count_sample()": n,
        "failure_rate()": failed / n if n else 0,
    }


def as_estimate(row: dict[str, Any], shown: str) -> Observation:
    """The old reading: `count()` (extrapolated) as the transactions behind the rate."""
    n = int(row["count()"])
    rate = float(row["failure_rate()"])
    if n == 0:
        return Observation(value=None, count=0, total=0, query=shown)
    return Observation(value=rate, count=round(rate * n), total=n, query=shown)


READERS: dict[str, Callable[[dict[str, Any], str], Observation]] = {
    "unsampled": rate_observation,
    "sampled": rate_observation,
    "sampled_as_estimate": as_estimate,
}


def timeseries(kept: Traffic, rate: float) -> TimeseriesAnswer:
    """Sentry's `events-timeseries` answer for the lookback: `failure_rate()` per
    minute with the spans stored in each (`sampleCount`)."""
    values = []
    for start in range(0, LOOKBACK_S, BUCKET_S):
        row = sentry_row(kept, rate, start, start + BUCKET_S)
        values.append(
            {
                "timestamp": start * 1000,
                "value": row["failure_rate()"],
                "sampleCount": row["count_sample()"],
            }
        )
    return TimeseriesAnswer.model_validate(
        {"timeSeries": [{"yAxis": "failure_rate()", "values": values}]}
    )


def run_variant(
    kept: Traffic, rate: float, read: Callable[..., Observation], buckets: bool
) -> float | None:
    """Seconds from the deploy to a rollback, None when the window passed."""
    whole = read(sentry_row(kept, rate, 0, LOOKBACK_S), QUERY)
    baseline = Observation(
        value=whole.value,
        count=whole.count,
        total=whole.total,
        seconds=float(LOOKBACK_S),
    )
    if buckets:
        baseline = bucketed_baseline(baseline, rate_buckets(timeseries(kept, rate), BUCKET_S))
    rounds: list[dict[str, Observation]] = []
    cumulative: Observation | None = None
    n_rounds = WINDOW_S // ROUND_S
    for k in range(1, n_rounds + 1):
        end = LOOKBACK_S + k * ROUND_S
        current = read(sentry_row(kept, rate, LOOKBACK_S, end), QUERY)
        current = Observation(
            value=current.value,
            count=current.count,
            total=current.total,
            seconds=float(k * ROUND_S),
        )
        rounds.append({RULE.name: round_increment(cumulative, current)})
        if current.has_data:
            cumulative = current
        verdict = judge([RULE], {RULE.name: baseline}, rounds, POLICY, final=k == n_rounds)
        if verdict.decision == "fail":
            return float(k * ROUND_S)
    return None


def run_window(task: tuple[str, int, int, int, float, bool]) -> dict[str, float | None]:
    family, rps, cell, index, rate, buckets = task
    seed = np.random.SeedSequence([SEED, cell, index])
    traffic_seed, sample_seed = seed.spawn(2)
    traffic = simulate(np.random.default_rng(traffic_seed), rps, FAMILIES[family])
    kept = stored(np.random.default_rng(sample_seed), traffic, rate)
    return {
        "unsampled": run_variant(traffic, 1.0, READERS["unsampled"], buckets),
        "sampled": run_variant(kept, rate, READERS["sampled"], buckets),
        "sampled_as_estimate": run_variant(kept, rate, READERS["sampled_as_estimate"], False),
    }


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    ci = sc_stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def summarise(
    results: dict[tuple[str, int], list[dict[str, float | None]]], rate: float, buckets: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sample_rate": rate,
        "baseline": f"{BUCKET_S}s buckets" if buckets else "one figure",
        "confidence": CONFIDENCE,
        "budget": round(1 - CONFIDENCE, 6),
        "rule": "error_rate max_increase 10% (sequential)",
        "variants": {},
    }
    for variant in VARIANTS:
        aa = [r[variant] for rps in TRAFFIC for r in results[("aa", rps)]]
        k = sum(t is not None for t in aa)
        entry: dict[str, Any] = {
            "false_rollback_rate": k / len(aa),
            "false_rollbacks": k,
            "windows": len(aa),
            "false_rollback_ci95": list(clopper_pearson(k, len(aa))),
            "false_rollback_by_traffic": {},
            "detection": {},
            "median_time_to_detect_s": {},
        }
        for rps in TRAFFIC:
            times = [r[variant] for r in results[("aa", rps)]]
            kk = sum(t is not None for t in times)
            entry["false_rollback_by_traffic"][f"{rps}tps"] = {
                "rate": kk / len(times),
                "ci95": list(clopper_pearson(kk, len(times))),
            }
        for family in FAMILIES:
            if family == "aa":
                continue
            for rps in TRAFFIC:
                times = [r[variant] for r in results[(family, rps)]]
                hit = [t for t in times if t is not None]
                key = f"{family}@{rps}tps"
                entry["detection"][key] = len(hit) / len(times)
                entry["median_time_to_detect_s"][key] = float(np.median(hit)) if hit else None
        out["variants"][variant] = entry
    unsampled = out["variants"]["unsampled"]["false_rollbacks"]
    sampled = out["variants"]["sampled"]["false_rollbacks"]
    out["acceptance"] = {
        "sampled_no_more_false_rollbacks_than_unsampled": sampled <= unsampled,
        "sampled_within_budget": out["variants"]["sampled"]["false_rollback_ci95"][0]
        <= 1 - CONFIDENCE,
    }
    return out


def table(report: dict[str, Any]) -> str:
    lines = [
        f"Sentry error_rate, traces sampled at {report['sample_rate']:.0%} vs all;"
        f" sequential, budget {report['budget']:.0%} false rollbacks;"
        f" baseline: {report['baseline']}",
        f"{'variant':<22}{'false rollbacks':>22}  {'95% CI':>16}"
        + "".join(f"{f + '@' + str(t):>17}" for f in ("errors_x2", "errors_x5") for t in TRAFFIC),
    ]
    for variant, entry in report["variants"].items():
        ci = entry["false_rollback_ci95"]
        det = "".join(
            f"{entry['detection'][f'{f}@{t}tps']:>17.0%}"
            for f in ("errors_x2", "errors_x5")
            for t in TRAFFIC
        )
        lines.append(
            f"{variant:<22}{entry['false_rollbacks']:>10}/{entry['windows']:<5}"
            f" ({entry['false_rollback_rate']:.2%})  [{ci[0]:.2%}, {ci[1]:.2%}]{det}"
        )
    lines.append("(detection columns: share of regressed windows rolled back)")
    for variant, entry in report["variants"].items():
        by_traffic = entry["false_rollback_by_traffic"].items()
        by = ", ".join(f"{k} {v['rate']:.1%}" for k, v in by_traffic)
        lines.append(f"  {variant}: false rollbacks by traffic: {by}")
    lines.append(f"acceptance: {report['acceptance']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rate", type=float, default=0.1, help="trace sample rate (0.1)")
    parser.add_argument("--windows", type=int, default=300, help="A/A windows per traffic")
    parser.add_argument("--regression-windows", type=int, default=50)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--one-number", action="store_true", help="baselines without their buckets")
    args = parser.parse_args()
    tasks = []
    cell = 0
    for family in FAMILIES:
        for rps in TRAFFIC:
            n = args.windows if family == "aa" else args.regression_windows
            tasks += [(family, rps, cell, i, args.rate, not args.one_number) for i in range(n)]
            cell += 1
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        outcomes = list(pool.map(run_window, tasks, chunksize=8))
    results: dict[tuple[str, int], list[dict[str, float | None]]] = {}
    for (family, rps, *_), outcome in zip(tasks, outcomes, strict=True):
        results.setdefault((family, rps), []).append(outcome)
    report = summarise(results, args.rate, not args.one_number)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=1) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Decision benchmark: how often each policy rolls back a good deploy, and how fast a bad one.

Replays thousands of simulated deploy windows (15 min at 1 s rounds, after 30 min of
pre-deploy baseline at the same traffic) through four policies fed the same streams:

* `sequential` (ours, confidence 0.99): `agent.analysis.sequential.SequentialRule`, the code
  `judge()` runs, fed per-round arrays.
* `flagger`: a check every 60 s on the last minute's figures against the same bounds,
  failed checks counted cumulatively, rollback at the 5th (threshold 5); no data is a
  failed check.
* `argo`: a measurement every 60 s, failureLimit 0: the first failed measurement aborts.
  Runs through `judge()` with the `threshold` policy and failure_limit 1 on minute rounds.
* `kayenta`: `agent.analysis.fixed.FixedRule` (the `fixed` policy) once at the end of the
  window, Mann-Whitney at 0.98 with the allowed increase as the effect-size gate.

Every policy judges the same two rules against the pre-deploy baseline (see `RULES`); the
threshold policies compare each minute with baseline x (1 + max_increase). Noise: lognormal
latency (median 80 ms, sigma 0.6), bursty errors (beta-binomial per 1 s round, concentration
`KAPPA`, around 1% and, as a second family, 0.1%), slow drift (a sinusoid of +-3% with a 1-3 h
period, independent for errors and latency), Poisson traffic of 1, 10 and 100 requests/s.
Regressions start at the deploy: errors x1.5, x2, x5; every latency x1.2, x1.5, x2 (so p95
+20%, +50%, x2); and a harder one, 10% of requests 3x slower (`latency_tail_x3`: p95 +37%,
median +8%), which a rank test of the whole distribution sees poorly and the p95 exceedance
test is for. Seeds are fixed: the figures are the same from run to run.

    python bench/decisions.py            # table
    python bench/decisions.py --json     # one JSON object

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sc_stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.fixed import FixedRule
from agent.analysis.judge import judge
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.stats import intra_period_correlation, percentile
from agent.analysis.threshold import breaches
from agent.analysis.types import Observation, Policy, Rule

SEED = 20261126
ROUND_S = 1.0
ROUNDS = 900
BASELINE_ROUNDS = 1800
TRAFFIC = (1, 10, 100)
LATENCY_MEDIAN_S = 0.080
LATENCY_SIGMA = 0.6
KAPPA = 100.0
"""Beta-binomial concentration: a round's error probability ~ Beta(mu K, (1 - mu) K)."""
DRIFT = 0.03
CONFIDENCE = 0.99
KAYENTA_CONFIDENCE = 0.98
FLAGGER_INTERVAL, FLAGGER_THRESHOLD = 60, 5
ARGO_INTERVAL = 60
AA_WINDOWS = 200
"""Per traffic level and error family: 400 A/A windows per traffic level."""
REGRESSION_WINDOWS = 50

ERRORS = Rule("errors", "checks", "error_rate", max_increase=0.1)
LATENCY = Rule("latency", "checks", "latency_p95", max_increase=0.1)
RULES = (ERRORS, LATENCY)
POLICIES = ("sequential", "flagger", "argo", "kayenta")


@dataclass(frozen=True, slots=True)
class Family:
    key: str
    """`aa`, or the JSON key prefix, e.g. `errors_x5` (1% errors), `rare_errors_x5` (0.1%)."""
    error_base: float
    error_factor: float = 1.0
    latency_factor: float = 1.0
    tail_share: float = 0.0
    """A share of the deploy's requests made `latency_factor` slower (the rest unchanged)."""


FAMILIES = (
    Family("aa", 0.01),
    Family("aa", 0.001),
    *(Family(f"errors_x{f:g}", 0.01, error_factor=f) for f in (1.5, 2.0, 5.0)),
    *(Family(f"rare_errors_x{f:g}", 0.001, error_factor=f) for f in (1.5, 2.0, 5.0)),
    *(Family(f"latency_x{f:g}", 0.01, latency_factor=f) for f in (1.2, 1.5, 2.0)),
    Family("latency_tail_x3", 0.01, latency_factor=3.0, tail_share=0.1),
)


@dataclass(frozen=True, slots=True)
class Window:
    """One simulated window: baseline and deploy streams."""

    base_count: np.ndarray
    base_total: np.ndarray
    base_latency: np.ndarray
    count: np.ndarray
    total: np.ndarray
    latency: np.ndarray
    latency_round: np.ndarray


def simulate(rng: np.random.Generator, rps: float, family: Family) -> Window:
    steps = BASELINE_ROUNDS + ROUNDS
    t = np.arange(steps, dtype=np.float64) * ROUND_S
    period = rng.uniform(3600.0, 3 * 3600.0)
    phase = rng.uniform(0.0, 2 * math.pi, size=2)
    drift_err = np.exp(DRIFT * np.sin(2 * math.pi * t / period + phase[0]))
    drift_lat = np.exp(DRIFT * np.sin(2 * math.pi * t / period + phase[1]))
    total = rng.poisson(rps * ROUND_S, size=steps)
    mu = family.error_base * drift_err
    mu[BASELINE_ROUNDS:] *= family.error_factor
    p = rng.beta(mu * KAPPA, (1.0 - mu) * KAPPA)
    count = rng.binomial(total, p)
    scale = LATENCY_MEDIAN_S * drift_lat
    if not family.tail_share:
        scale[BASELINE_ROUNDS:] *= family.latency_factor
    latency = np.repeat(scale, total) * np.exp(LATENCY_SIGMA * rng.standard_normal(total.sum()))
    split = int(total[:BASELINE_ROUNDS].sum())
    if family.tail_share:
        slow = rng.uniform(size=latency.size - split) < family.tail_share
        latency[split:][slow] *= family.latency_factor
    deploy_total = total[BASELINE_ROUNDS:]
    return Window(
        base_count=count[:BASELINE_ROUNDS],
        base_total=total[:BASELINE_ROUNDS],
        base_latency=np.sort(latency[:split]),
        count=count[BASELINE_ROUNDS:].astype(np.float64),
        total=deploy_total.astype(np.float64),
        latency=latency[split:],
        latency_round=np.repeat(np.arange(ROUNDS), deploy_total),
    )


def baselines(w: Window) -> tuple[BaselineData, BaselineData]:
    """What `merge()` of 1800 one-second observations gives, built straight from arrays."""
    count, total = float(w.base_count.sum()), float(w.base_total.sum())
    errors = BaselineData(
        value=count / total if total else 0.0,
        count=count,
        total=total,
        periods=BASELINE_ROUNDS,
        dispersion=intra_period_correlation(w.base_count, w.base_total) or 0.0,
    )
    latency = BaselineData(
        value=percentile(w.base_latency, 0.95),
        count=float(w.base_latency.size),
        total=float(w.base_latency.size),
        sorted_values=w.base_latency,
        periods=BASELINE_ROUNDS,
    )
    return errors, latency


def minutes(w: Window, interval: int) -> Iterator[tuple[int, float | None, float | None, int]]:
    """Per analysis interval: (end second, error rate, p95, requests) of that interval."""
    edges = np.concatenate([[0], np.cumsum(w.total)]).astype(np.int64)
    for start in range(0, ROUNDS, interval):
        end = min(start + interval, ROUNDS)
        n = int(w.total[start:end].sum())
        if n == 0:
            yield end, None, None, 0
            continue
        rate = float(w.count[start:end].sum()) / n
        p95 = percentile(w.latency[edges[start] : edges[end]], 0.95)
        yield end, rate, p95, n


def run_window(rps: float, family: Family, seed: np.random.SeedSequence) -> dict[str, float | None]:
    """Time to rollback (s) per policy, None when the window passed."""
    w = simulate(np.random.default_rng(seed), rps, family)
    base_err, base_lat = baselines(w)
    out: dict[str, float | None] = {}

    alpha_rule = (1.0 - CONFIDENCE) / len(RULES)
    err_scan = SequentialRule(ERRORS, base_err, "proportion", alpha_rule).scan_counts(
        w.count, w.total
    )
    lat_scan = SequentialRule(LATENCY, base_lat, "distribution", alpha_rule).scan_values(
        w.latency, w.latency_round, ROUNDS
    )
    hits = [s.failed_at for s in (err_scan, lat_scan) if s.failed_at is not None]
    out["sequential"] = (min(hits) + 1) * ROUND_S if hits else None

    per_minute = list(minutes(w, FLAGGER_INTERVAL))
    failed_checks = 0
    out["flagger"] = None
    for end, rate, p95, _ in per_minute:
        bad = rate is None or p95 is None
        if rate is not None and p95 is not None:
            bad = bool(breaches(ERRORS, rate, base_err.value)) or bool(
                breaches(LATENCY, p95, base_lat.value)
            )
        failed_checks += bad
        if failed_checks >= FLAGGER_THRESHOLD:
            out["flagger"] = end * ROUND_S
            break

    assert ARGO_INTERVAL == FLAGGER_INTERVAL
    rounds = []
    for _, rate, p95, n in per_minute:
        err = Observation(rate, total=n) if rate is not None else Observation(None, error="empty")
        lat = Observation(p95, total=n) if p95 is not None else Observation(None, error="empty")
        rounds.append({"errors": err, "latency": lat})
    verdict = judge(
        RULES,
        {"errors": Observation(base_err.value), "latency": Observation(base_lat.value)},
        rounds,
        Policy("threshold", failure_limit=1),
        final=True,
    )
    out["argo"] = None
    if verdict.decision == "fail":
        at = min(
            r.evidence["failed_at_round"]
            for r in verdict.rules
            if r.outcome == "fail" and r.evidence.get("failed_at_round") is not None
        )
        out["argo"] = per_minute[at][0] * ROUND_S

    err_fixed = FixedRule(ERRORS, base_err, "proportion", KAYENTA_CONFIDENCE).test_counts(
        float(w.count.sum()), float(w.total.sum())
    )
    lat_fixed = FixedRule(LATENCY, base_lat, "distribution", KAYENTA_CONFIDENCE).test_values(
        w.latency
    )
    out["kayenta"] = ROUNDS * ROUND_S if (err_fixed.failed or lat_fixed.failed) else None
    return out


Task = tuple[int, int, int, int, int]
"""(family index, requests/s, windows in the cell, cell number, chunk start)."""
CHUNK = 25


def run_chunk(task: Task) -> list[dict[str, float | None]]:
    """A slice of one cell; each window's seed depends only on (SEED, cell, index)."""
    family_index, rps, windows, cell, start = task
    family = FAMILIES[family_index]
    seeds = np.random.SeedSequence([SEED, cell]).spawn(windows)[start : start + CHUNK]
    return [run_window(rps, family, s) for s in seeds]


def tasks() -> list[Task]:
    out = []
    cell = 0
    for fi, family in enumerate(FAMILIES):
        for rps in TRAFFIC:
            n = AA_WINDOWS if family.key == "aa" else REGRESSION_WINDOWS
            out += [(fi, rps, n, cell, start) for start in range(0, n, CHUNK)]
            cell += 1
    # the heaviest (100 req/s) first, so two workers finish together
    return sorted(out, key=lambda t: -t[1])


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    ci = sc_stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def summarise(results: dict[tuple[str, int], list[dict[str, float | None]]]) -> dict[str, Any]:
    policies: dict[str, Any] = {}
    for policy in POLICIES:
        aa_all = [r[policy] for rps in TRAFFIC for r in results[("aa", rps)]]
        k = sum(t is not None for t in aa_all)
        by_traffic = {}
        for rps in TRAFFIC:
            times = [r[policy] for r in results[("aa", rps)]]
            kk = sum(t is not None for t in times)
            by_traffic[f"{rps}rps"] = {
                "rate": kk / len(times),
                "ci95": list(clopper_pearson(kk, len(times))),
                "windows": len(times),
            }
        detection: dict[str, float] = {}
        ttd: dict[str, dict[str, float | None]] = {}
        for family in FAMILIES:
            if family.key == "aa":
                continue
            for rps in TRAFFIC:
                key = f"{family.key}@{rps}rps"
                times = [r[policy] for r in results[(family.key, rps)]]
                hit = [t for t in times if t is not None]
                detection[key] = len(hit) / len(times)
                ttd[key] = {
                    "median": float(np.median(hit)) if hit else None,
                    "p90": float(np.percentile(hit, 90)) if hit else None,
                }
        by_traffic_ttd = {}
        for rps in TRAFFIC:
            times = [
                r[policy]
                for family in FAMILIES
                if family.key != "aa"
                for r in results[(family.key, rps)]
            ]
            hit = [t for t in times if t is not None]
            everything = [math.inf if t is None else t for t in times]
            by_traffic_ttd[f"{rps}rps"] = {
                "detected": float(np.median(hit)) if hit else math.inf,
                "all": float(np.median(everything)),
            }
        policies[policy] = {
            "false_rollback_rate": k / len(aa_all),
            "false_rollback_ci95": list(clopper_pearson(k, len(aa_all))),
            "false_rollback_by_traffic": by_traffic,
            "detection": detection,
            "time_to_detect_s": ttd,
            "median_ttd_by_traffic": by_traffic_ttd,
        }
    return policies


def acceptance(policies: dict[str, Any]) -> dict[str, bool]:
    ours = policies["sequential"]
    checks: dict[str, bool] = {}
    checks["frr_le_1pct_every_traffic"] = all(
        v["rate"] <= 0.01 for v in ours["false_rollback_by_traffic"].values()
    )
    for key in ("errors_x5@10rps", "errors_x5@100rps", "latency_x2@10rps", "latency_x2@100rps"):
        checks[f"detect_{key}_ge_99pct"] = ours["detection"][key] >= 0.99
        median = ours["time_to_detect_s"][key]["median"]
        checks[f"median_ttd_{key}_le_30s"] = median is not None and median <= 30
    checks["frr_not_above_any_peer_every_traffic"] = all(
        ours["false_rollback_by_traffic"][t]["rate"]
        <= min(policies[p]["false_rollback_by_traffic"][t]["rate"] for p in POLICIES[1:])
        for t in ours["false_rollback_by_traffic"]
    )

    for peer in ("flagger", "kayenta"):
        for t in TRAFFIC:
            for scope in ("detected", "all"):
                mine = policies["sequential"]["median_ttd_by_traffic"][f"{t}rps"][scope]
                theirs = policies[peer]["median_ttd_by_traffic"][f"{t}rps"][scope]
                checks[f"faster_median_than_{peer}@{t}rps({scope})"] = mine < theirs
    return checks


def rule_text(rule: Rule) -> str:
    return f"{rule.name}: {rule.metric} max_increase {rule.max_increase:.0%} over the baseline"


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def table(report: dict[str, Any]) -> str:
    pol = report["policies"]
    lines = [
        f"Decision benchmark: {report['windows']} windows of {ROUNDS} x {ROUND_S:g}s rounds, "
        f"{BASELINE_ROUNDS // 60} min baseline each; seed {SEED}; {report['elapsed_s']:.1f}s",
        "Rules: " + "; ".join(report["rules"]),
        f"Noise: lognormal latency (median {LATENCY_MEDIAN_S * 1000:g}ms, sigma "
        f"{LATENCY_SIGMA:g}); beta-binomial errors (K={KAPPA:g}) around 1% and 0.1%; "
        f"drift +-{DRIFT:.0%}",
        "Policies: sequential (ours, 0.99) | flagger (60s, threshold 5, cumulative, "
        "no data fails) | argo (60s, failureLimit 0) | kayenta (fixed, MW 0.98 at the end)",
        "",
        "False-rollback rate on A/A (95% CI)",
        f"{'policy':<11}" + "".join(f"{f'{t} rps':>22}" for t in TRAFFIC) + f"{'all':>22}",
    ]
    for name in POLICIES:
        p = pol[name]
        row = f"{name:<11}"
        for t in TRAFFIC:
            v = p["false_rollback_by_traffic"][f"{t}rps"]
            row += f"{pct(v['rate']):>7} [{pct(v['ci95'][0])}, {pct(v['ci95'][1])}]".rjust(22)
        lo, hi = p["false_rollback_ci95"]
        row += f"{pct(p['false_rollback_rate']):>7} [{pct(lo)}, {pct(hi)}]".rjust(22)
        lines.append(row)
    lines += [
        "",
        "Detection rate, median / p90 time to detect (s)",
        f"{'regression':<24}" + "".join(f"{name:>22}" for name in POLICIES),
    ]
    for key in pol["sequential"]["detection"]:
        row = f"{key:<24}"
        for name in POLICIES:
            det = pol[name]["detection"][key]
            t = pol[name]["time_to_detect_s"][key]
            times = "-" if t["median"] is None else f"{t['median']:g} / {t['p90']:g}"
            row += f"{pct(det)} {times}".rjust(22)
        lines.append(row)
    lines += [
        "",
        "Median time to detect per traffic level, all regressions pooled (s):",
        "  detected = over the windows a policy rolled back; all = over every regression",
        "  window, a miss counting as never (inf)",
        f"{'':<24}" + "".join(f"{name:>22}" for name in POLICIES),
    ]
    for t in TRAFFIC:
        for scope in ("detected", "all"):
            row = f"{f'{t} rps, {scope}':<24}"
            for name in POLICIES:
                row += f"{pol[name]['median_ttd_by_traffic'][f'{t}rps'][scope]:g}".rjust(22)
            lines.append(row)
    lines += ["", "Acceptance (issue 3)"]
    lines += [f"  {'ok  ' if ok else 'MISS'} {name}" for name, ok in report["acceptance"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    work = tasks()
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            outputs = list(pool.map(run_chunk, work))
    else:
        outputs = [run_chunk(t) for t in work]
    results: dict[tuple[str, int], list[dict[str, float | None]]] = defaultdict(list)
    for (fi, rps, _, _, _), out in sorted(
        zip(work, outputs, strict=True), key=lambda pair: (pair[0][3], pair[0][4])
    ):
        results[(FAMILIES[fi].key, rps)].extend(out)
    policies = summarise(results)
    report: dict[str, Any] = {
        "policies": policies,
        "windows": sum(len(v) for v in results.values()),
        "elapsed_s": round(time.perf_counter() - started, 2),
        "seed": SEED,
        "rules": [rule_text(r) for r in RULES],
        "noise": {
            "latency": {"median_s": LATENCY_MEDIAN_S, "sigma": LATENCY_SIGMA},
            "errors": {"base_rates": [0.01, 0.001], "beta_binomial_concentration": KAPPA},
            "drift": DRIFT,
            "traffic_rps": list(TRAFFIC),
            "window_s": ROUNDS * ROUND_S,
            "baseline_s": BASELINE_ROUNDS * ROUND_S,
        },
    }
    report["acceptance"] = acceptance(policies)
    print(json.dumps(report) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

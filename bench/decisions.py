"""Decision benchmark: how often each policy rolls back a good deploy, and how fast a bad one.

Replays simulated deploy windows (15 min of traffic drawn per second) through our judge
exactly as the daemon runs it, at the daemon's default `interval` (30 s rounds: what a user
runs; `--round-s 1` for the 1 s rounds of the README's older tables), and through three peers
configured as their documentation tells users to:

* `sequential` (ours, the defaults: confidence 0.99, pass_on evidence): every request is a
  `checks.base.Sample`; each round (`--round-s`, default 30 s) goes through `observe()` and
  `Judge.advance()` (the fold `Judge.step` runs, without wording the verdict); the baseline
  is 30 min of pre-deploy traffic taken as 60 periods of 30 s (background runs / provider
  buckets), each through `observe()`, pooled by `merge()`: the watcher's own
  `background_baseline`. Nothing the daemon lacks.
* `flagger`: a check every 60 s on the last minute's error rate and p95 against absolute
  thresholds sized to the noise (see `thresholds`), failed checks counted cumulatively,
  rollback at the 5th; no data is a failed check.
* `argo`: a measurement every 60 s against the same thresholds, failureLimit 0 (the default:
  the first failed measurement aborts).
* `kayenta`: its Mann-Whitney classifier (NetflixACAJudge) on per-interval series (10 s
  steps) of the canary against a baseline running at the same time (a second stream with the
  same drift, no regression), judged at the end of each 5 min analysis interval over the
  data so far: a metric is High when the 98% confidence interval of the shift lies above a
  quarter of the shift's Hodges-Lehmann estimate and its mean ratio reaches the allowed
  increase (`allowedIncrease` 1.1); one High metric fails the canary.

Every peer is also *calibrated*: its strictness (threshold scale, or the normal quantile of
Kayenta's confidence interval) is set per traffic level so that its false-rollback rate on
the A/A-like windows equals ours; detection is then compared at an equal error rate (`calibrated`).

Rules: error_rate and latency_p95, each max_increase 10% over the baseline. Noise: lognormal
latency (median 80 ms, sigma 0.6), bursty errors (beta-binomial per 1 s round, concentration
`KAPPA`) around 1% and 0.1%, slow drift (+-3%, 1-3 h period), Poisson traffic of 1, 10 and
100 requests/s. Families: `aa` (no change, both error levels); `boundary` (errors and every
latency exactly +10%: a good deploy by the rules' definition, counted as A/A); `bursty_aa`
(errors ten times burstier, K=10, no change); errors x1.5/x2/x5 at 1% and 0.1%; latency
x1.2/x1.5/x2; `latency_tail_x3` (10% of requests 3x slower); `onset_errors_x5` and
`onset_latency_x2` (starting 5 min after the deploy; time to detect counted from the onset).
Windows: 100 per A/A-like cell, 20 per regression cell, and 100 in each cell a goal of
detecting every window or 95% of them is judged on (errors x5 and latency x2 @10 and
@100 rps, errors x2 and rare errors x5 @10 rps: on 20 windows, 95% has the 95% interval
[75%, 100%]; and both cells of each onset goal @10 rps, whose ratio's bootstrap interval
spans 1.5 on 20); each goal on a share of windows prints its share with its 95%
Clopper-Pearson interval (`goal_intervals` in `--json`; the false rollbacks' goal at its
worst A/A-like cell). Seeds are fixed: the figures are the same from run to run, and a
cell's first windows are the same whatever its size. The goal of a median time to
detect below Flagger's and Kayenta's wherever both detect is judged on the windows both we
and a peer detected, each median over those windows (a policy that also finds the hard
windows, late, has a later median over its own detections: those pairs are printed beside
it, `slower_than_peer`), and it prints each policy's shares
of the verdicts users see per cell, pass / inconclusive / fail (`verdicts_by_family` in
`--json`; not in `--markdown`): a window of ours short of evidence ends inconclusive, where
the false-rollback figures count it with the passes.

    python bench/decisions.py            # tables, at the daemon's 30 s rounds
    python bench/decisions.py --round-s 1   # 1 s rounds (the README's older tables)
    python bench/decisions.py --json     # one JSON object (with the commit it ran on)
    python bench/decisions.py --markdown # the README's table of the default run
    python bench/decisions.py --from-json bench/results/decisions.json.gz --markdown
        # the same from a saved --json run (gzipped or not): the default run's, which the
        # README's table comes from (after a change to the judge: --json | gzip > that file)
    python bench/decisions.py --quick    # a tenth of the windows, while iterating
    python bench/decisions.py --families errors_x2,aa   # only these families (same seeds)
    python bench/decisions.py --rates 10 --windows-per-cell 200 --seed-offset 1000
        # 200 windows per regression cell at 10 req/s, on seeds other than the default run's
        # (out of sample: a goal of +-5 points needs 100+ windows; detection prints its
        # 95% Clopper-Pearson interval)
    python bench/decisions.py --goal-windows 20   # the goals' cells at 20 windows, as the
        # runs saved before they had 100

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from scipy import stats as sc_stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule
from agent.settings import EnvironmentSettings
from agent.windows.foresight import background_baseline
from checks.base import Sample

SEED = 20261130
ROUND_S = 1.0
"""The simulator's step: traffic, bursts and drift are drawn per second."""
ROUNDS = 900
"""The window's length in steps (15 min)."""
BASELINE_S = 1800
PERIOD_S = 30
"""The baseline's periods: background runs, or a provider's buckets."""
TRAFFIC = (1, 10, 100)
LATENCY_MEDIAN_S = 0.080
LATENCY_SIGMA = 0.6
KAPPA = 100.0
"""Beta-binomial concentration: a round's error probability ~ Beta(mu K, (1 - mu) K)."""
BURSTY_KAPPA = 10.0
DRIFT = 0.03
CONFIDENCE = 0.99
TOLERANCE = 0.1
PEER_INTERVAL = 60
FLAGGER_THRESHOLD = 5
NOISE_SIGMAS = 3.0
"""Flagger/Argo thresholds: the baseline's per-minute mean x (1 + tolerance) plus this many
standard deviations of its per-minute figures (the noise a user sees on a dashboard)."""
KAYENTA_CONFIDENCE = 0.98
KAYENTA_FRACTION = 0.25
"""The Mann-Whitney classifier's `fraction` of the Hodges-Lehmann estimate (Kayenta's
NetflixACAJudge: `MannWhitneyClassifier(fraction = 0.25, confLevel = 0.98)`)."""
KAYENTA_INTERVAL = 300
KAYENTA_STEP = 10
ONSET_S = 300
AA_WINDOWS = 100
"""Per A/A-like family, error level and traffic level."""
REGRESSION_WINDOWS = 20
ALL_DETECTED_CELLS = tuple(
    f"{key}@{rps}rps" for key in ("errors_x5", "latency_x2") for rps in (10, 100)
)
"""The cells of the goals of detecting every window (and of a median of at most 30 s)."""
MOST_DETECTED_CELLS = ("errors_x2@10rps", "rare_errors_x5@10rps")
"""The cells of the goals of detecting 95% of the windows or more."""
GOAL_WINDOWS = 100
"""Per cell a detection goal is judged on (`ALL_DETECTED_CELLS`, `MOST_DETECTED_CELLS`): on
20 windows a cell at 95% has the 95% interval [75%, 100%], a coin flip for a goal of 95%; on
100, [89%, 98%]. The first 20 are the other regression cells' seeds' (`window_seeds`)."""
GOAL_CELLS = frozenset((*ALL_DETECTED_CELLS, *MOST_DETECTED_CELLS))
ONSET_PAIRS = (("onset_errors_x5", "errors_x5"), ("onset_latency_x2", "latency_x2"))
"""Each onset family and the same regression present from the deploy (the goal's ratio)."""
ONSET_GOAL_CELLS = frozenset(f"{key}@10rps" for pair in ONSET_PAIRS for key in pair)
"""The cells of the goals of a median from the onset at most 1.5x the one from the deploy:
on 20 windows a cell the ratio's bootstrap interval spans 1.5 (`onset_ratios`)."""
GOAL_WINDOW_CELLS = GOAL_CELLS | ONSET_GOAL_CELLS
"""The cells that run `GOAL_WINDOWS` windows: every cell a goal is judged on."""
FRR_GOAL = "frr_le_1pct_every_aa_cell"

ENVIRONMENT = EnvironmentSettings(
    base_url="http://127.0.0.1:9", background_interval=PERIOD_S, lookback=BASELINE_S
)
"""What the watcher reads to build a checks rule's baseline (`background_baseline`)."""
DAEMON_ROUND_S = int(EnvironmentSettings(base_url="http://127.0.0.1:9").interval)
"""The daemon's default `interval` (30 s): one round of checks and the judge's step."""
ERRORS = Rule("errors", "checks", "error_rate", max_increase=TOLERANCE)
LATENCY = Rule("latency", "checks", "latency_p95", max_increase=TOLERANCE)
RULES = (ERRORS, LATENCY)
POLICY = Policy("sequential", confidence=CONFIDENCE)
PEERS = ("flagger", "argo", "kayenta")
POLICIES = ("sequential", *PEERS)


@dataclass(frozen=True, slots=True)
class Family:
    key: str
    error_base: float
    error_factor: float = 1.0
    latency_factor: float = 1.0
    tail_share: float = 0.0
    """A share of the deploy's requests made `latency_factor` slower (the rest unchanged)."""
    kappa: float = KAPPA
    drift: float = DRIFT
    onset_s: int = 0
    aa_like: bool = False
    """No regression past the rules' tolerance: a rollback is a false one."""


FAMILIES = (
    Family("aa", 0.01, aa_like=True),
    Family("aa", 0.001, aa_like=True),
    # exactly at the tolerance against the baseline's level: without drift, which would push
    # half of these windows past it
    Family("boundary", 0.01, 1 + TOLERANCE, 1 + TOLERANCE, drift=0.0, aa_like=True),
    Family("bursty_aa", 0.01, kappa=BURSTY_KAPPA, aa_like=True),
    *(Family(f"errors_x{f:g}", 0.01, error_factor=f) for f in (1.5, 2.0, 5.0)),
    *(Family(f"rare_errors_x{f:g}", 0.001, error_factor=f) for f in (1.5, 2.0, 5.0)),
    *(Family(f"latency_x{f:g}", 0.01, latency_factor=f) for f in (1.2, 1.5, 2.0)),
    Family("latency_tail_x3", 0.01, latency_factor=3.0, tail_share=0.1),
    Family("onset_errors_x5", 0.01, error_factor=5.0, onset_s=ONSET_S),
    Family("onset_latency_x2", 0.01, latency_factor=2.0, onset_s=ONSET_S),
)
AA_KEYS = tuple(dict.fromkeys(f.key for f in FAMILIES if f.aa_like))
REGRESSION_KEYS = tuple(dict.fromkeys(f.key for f in FAMILIES if not f.aa_like))


@dataclass(frozen=True, slots=True)
class Stream:
    """Per second: requests, failed requests, and every request's latency."""

    total: np.ndarray
    count: np.ndarray
    latency: np.ndarray
    edges: np.ndarray
    """Request i of second s is latency[edges[s]:edges[s + 1]]."""

    def second(self, s: int) -> tuple[int, int, np.ndarray]:
        return (
            int(self.total[s]),
            int(self.count[s]),
            self.latency[self.edges[s] : self.edges[s + 1]],
        )

    def figures(self, start: int, end: int) -> tuple[float | None, float | None]:
        """(error rate, p95) of seconds [start, end), None without requests."""
        n = int(self.total[start:end].sum())
        if n == 0:
            return None, None
        lat = self.latency[self.edges[start] : self.edges[end]]
        return float(self.count[start:end].sum()) / n, float(np.percentile(lat, 95))


@dataclass(frozen=True, slots=True)
class Drift:
    """A service's slow drift (`Family.drift` of its level): one period, and a phase each for
    its errors and its latency. Streams running at the same time (a deploy and Kayenta's
    concurrent baseline) share it: the same hours of the same day."""

    period: float
    phase: tuple[float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Drift:
        period = float(rng.uniform(3600.0, 3 * 3600.0))
        errors, latency = rng.uniform(0.0, 2 * math.pi, size=2).tolist()
        return cls(period, (errors, latency))

    def factors(self, amplitude: float, start: int, seconds: int) -> tuple[np.ndarray, np.ndarray]:
        """(errors, latency) level factors of seconds [start, start + seconds)."""
        t = (start + np.arange(seconds, dtype=np.float64)) * ROUND_S
        angle = 2 * math.pi * t / self.period
        return (
            np.exp(amplitude * np.sin(angle + self.phase[0])),
            np.exp(amplitude * np.sin(angle + self.phase[1])),
        )


def simulate(
    rng: np.random.Generator,
    rps: float,
    family: Family,
    seconds: int,
    regress_from: int | None,
    drift: Drift | None = None,
    start: int = 0,
) -> Stream:
    """One stream of seconds [start, start + seconds) of `drift` (None: one of its own); the
    regression (if any) applies from second `regress_from` of the stream on."""
    drift_err, drift_lat = (drift or Drift.draw(rng)).factors(family.drift, start, seconds)
    total = rng.poisson(rps * ROUND_S, size=seconds)
    mu = family.error_base * drift_err
    regressed = np.zeros(seconds, dtype=bool)
    if regress_from is not None:
        regressed[regress_from:] = True
        mu[regressed] *= family.error_factor
    mu = np.minimum(mu, 0.5)
    p = rng.beta(mu * family.kappa, (1.0 - mu) * family.kappa)
    count = rng.binomial(total, p)
    scale = LATENCY_MEDIAN_S * drift_lat
    if not family.tail_share:
        scale = np.where(regressed, scale * family.latency_factor, scale)
    latency = np.repeat(scale, total) * np.exp(LATENCY_SIGMA * rng.standard_normal(total.sum()))
    if family.tail_share:
        slow = np.repeat(regressed, total) & (rng.uniform(size=latency.size) < family.tail_share)
        latency[slow] *= family.latency_factor
    edges = np.concatenate([[0], np.cumsum(total)]).astype(np.int64)
    return Stream(total, count, latency, edges)


def samples(stream: Stream, start: int, end: int) -> list[Sample]:
    """The requests of seconds [start, end) as the samples a check (or provider) yields."""
    lat = stream.latency[stream.edges[start] : stream.edges[end]]
    ok = np.ones(lat.size, dtype=bool)
    count = stream.count[start:end]
    if count.any():
        # the first `count` requests of each second fail (latency is independent of failing)
        first = np.repeat(stream.edges[start:end] - stream.edges[start], count)
        within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        ok[first + within] = False
    # each sample made by tuple.__new__ (C), where the named tuple's own __new__ (Python)
    # was a tenth of a 100 req/s window's time: the same tuples, every field given
    fields = zip(
        itertools.repeat("service"),
        ok.tolist(),
        lat.tolist(),
        itertools.repeat("deploy"),
        itertools.repeat(None),
        strict=False,
    )
    return cast(list[Sample], list(map(tuple.__new__, itertools.repeat(_Sample), fields)))


class _Sample(NamedTuple):
    """The fields of `checks.base.Sample` that `observe()` reads, built 15x faster than the
    frozen dataclass (a 100 req/s window is 270,000 of them); `observe()` runs unchanged."""

    check: str
    ok: bool
    latency_s: float | None
    target: str = "deploy"
    error: str | None = None


# -- ours -------------------------------------------------------------------------------------


def window_judge(pre: Stream, round_s: int = 1, rules: frozenset[str] | None = None) -> Judge:
    """The window's judge, its baselines built from the pre-deploy stream as the watcher
    builds them (`background_baseline` over `PERIOD_S` periods), its horizon the window's
    rounds of `round_s` seconds. `rules`: only these rules get a baseline (the others are
    judged without one, and their rounds without data: `observed`), each rule's share of
    the budget unchanged."""
    if rules is not None and "latency" not in rules:
        baselines: dict[str, Observation] = {}
        periods = [counted(pre, s, s + PERIOD_S) for s in range(0, BASELINE_S, PERIOD_S)]
        with_data = [o for o in periods if o.has_data]
        if "errors" in rules:
            baselines["errors"] = merge(with_data) if with_data else observe(ERRORS, [], BASELINE_S)
        return Judge(RULES, baselines, POLICY, horizon=ROUNDS // round_s)
    periods_samples = [samples(pre, s, s + PERIOD_S) for s in range(0, BASELINE_S, PERIOD_S)]
    baselines = {
        rule.name: background_baseline(rule, periods_samples, ENVIRONMENT)
        for rule in RULES
        if rules is None or rule.name in rules
    }
    return Judge(RULES, baselines, POLICY, horizon=ROUNDS // round_s)


def counted(stream: Stream, start: int, end: int) -> Observation:
    """The error-rate rule's observation of seconds [start, end), from the stream's counts:
    what `observe()` makes of their samples, without building them (`--rules errors`)."""
    n = int(stream.total[start:end].sum())
    if n == 0:
        return observe(ERRORS, [], float(end - start))
    failed = int(stream.count[start:end].sum())
    return Observation(value=failed / n, count=failed, total=n, seconds=float(end - start))


def observed(
    deploy: Stream, k: int, round_s: int = 1, rules: frozenset[str] | None = None
) -> dict[str, Observation]:
    """Round `k` of the deploy stream (seconds [k round_s, (k + 1) round_s)) as the daemon
    would fold it (rule → observation); only `rules`' when given."""
    if rules is not None and "latency" not in rules:
        chosen = {"errors": counted(deploy, k * round_s, (k + 1) * round_s)}
        return {name: obs for name, obs in chosen.items() if name in rules}
    round_samples = samples(deploy, k * round_s, (k + 1) * round_s)
    return {
        r.name: observe(r, round_samples, float(round_s))
        for r in RULES
        if rules is None or r.name in rules
    }


def ours(
    pre: Stream, deploy: Stream, round_s: int = 1, rules: frozenset[str] | None = None
) -> float | None:
    """Seconds to rollback (from the deploy), None when the window ended without one."""
    return our_window(pre, deploy, round_s, rules)[0]


def our_window(
    pre: Stream, deploy: Stream, round_s: int = 1, rules: frozenset[str] | None = None
) -> tuple[float | None, str]:
    """(seconds to rollback from the deploy, None without one; the window's decision, the
    verdict a user sees: `fail`, or at its end `pass` or `inconclusive`); the judge steps
    once per round of `round_s` seconds, as the daemon at that `interval`; only `rules`
    judged with data when given."""
    judge = window_judge(pre, round_s, rules)
    state = judge.start()
    rounds = ROUNDS // round_s
    for k in range(rounds):
        # folded in place, as the daemon folds it (no copy of the state a round)
        state = judge.advance(
            state, observed(deploy, k, round_s, rules), in_place=True, final=k == rounds - 1
        )
        at = judge.failed_round(state)
        if at is not None:
            return float((at + 1) * round_s), "fail"
    return None, str(judge.glance(state, final=True).decision)


# -- peers ------------------------------------------------------------------------------------


def thresholds(pre: Stream) -> tuple[float, float]:
    """Absolute (error rate, p95) thresholds sized to the noise of the pre-deploy minutes."""
    minutes = [pre.figures(s, s + PEER_INTERVAL) for s in range(0, BASELINE_S, PEER_INTERVAL)]
    out = []
    for i in (0, 1):
        values = np.array([m[i] for m in minutes if m[i] is not None])
        if values.size < 2:
            out.append(math.inf)
            continue
        floor = 1.0 / max(float(pre.total.mean()) * PEER_INTERVAL, 1.0) if i == 0 else 0.0
        out.append(
            max(float(values.mean()) * (1 + TOLERANCE) + NOISE_SIGMAS * float(values.std()), floor)
        )
    return out[0], out[1]


def interval_ratios(pre: Stream, deploy: Stream) -> list[float]:
    """Per 60 s interval: how far past its threshold the worse metric is (inf: no data)."""
    err_thr, lat_thr = thresholds(pre)
    ratios = []
    for start in range(0, ROUNDS, PEER_INTERVAL):
        rate, p95 = deploy.figures(start, start + PEER_INTERVAL)
        if rate is None or p95 is None:
            ratios.append(math.inf)
            continue
        err = rate / err_thr if err_thr > 0 else (math.inf if rate > 0 else 0.0)
        ratios.append(max(err, p95 / lat_thr))
    return ratios


def kayenta_scores(deploy: Stream, control: Stream) -> list[float]:
    """Per analysis interval end, over the series so far: the largest `kayenta_strictness`
    of the metrics whose effect size passes (none: -inf)."""
    steps = range(0, ROUNDS, KAYENTA_STEP)
    series = [
        [deploy.figures(s, s + KAYENTA_STEP) for s in steps],
        [control.figures(s, s + KAYENTA_STEP) for s in steps],
    ]
    scores = []
    for end in range(KAYENTA_INTERVAL, ROUNDS + 1, KAYENTA_INTERVAL):
        upto = end // KAYENTA_STEP
        best = -math.inf
        for i in (0, 1):
            canary = np.array([v for f in series[0][:upto] if (v := f[i]) is not None])
            base = np.array([v for f in series[1][:upto] if (v := f[i]) is not None])
            if len(canary) < 3 or len(base) < 3:
                continue
            control_mean, canary_mean = float(base.mean()), float(canary.mean())
            ratio = canary_mean / control_mean if control_mean > 0 else math.inf * canary_mean
            if ratio >= 1 + TOLERANCE:  # the effect size: meanRatio >= allowedIncrease
                best = max(best, kayenta_strictness(canary, base))
        scores.append(best)
    return scores


def kayenta_strictness(canary: np.ndarray, control: np.ndarray) -> float:
    """Kayenta's Mann-Whitney classifier calls a metric High when the lower end of the
    confidence interval of the shift (Hodges-Lehmann, as R's wilcox.test: normal
    approximation with continuity correction) lies above `KAYENTA_FRACTION` x |the shift's
    estimate|; the interval's end is past that point while its normal quantile z is below
    the value returned here (z = 2.326 at the default confidence 0.98, two-sided)."""
    differences = np.subtract.outer(canary, control).ravel()
    threshold = KAYENTA_FRACTION * abs(float(np.median(differences)))
    above = int(differences.size - np.searchsorted(np.sort(differences), threshold, "right"))
    n, m = canary.size, control.size
    sd = math.sqrt(n * m * (n + m + 1) / 12.0)
    return (above - n * m / 2.0 - 0.5) / sd


def flagger_time(ratios: list[float], scale: float) -> float | None:
    failed = 0
    for i, r in enumerate(ratios):
        failed += r > scale
        if failed >= FLAGGER_THRESHOLD:
            return float((i + 1) * PEER_INTERVAL)
    return None


def argo_time(ratios: list[float], scale: float) -> float | None:
    for i, r in enumerate(ratios):
        if r > scale:
            return float((i + 1) * PEER_INTERVAL)
    return None


def kayenta_time(scores: list[float], cutoff: float) -> float | None:
    for i, s in enumerate(scores):
        if s > cutoff:
            return float((i + 1) * KAYENTA_INTERVAL)
    return None


PEER_TIME: dict[str, Callable[[list[float], float], float | None]] = {
    "flagger": flagger_time,
    "argo": argo_time,
    "kayenta": kayenta_time,
}
PEER_DEFAULT = {
    "flagger": 1.0,
    "argo": 1.0,
    "kayenta": float(sc_stats.norm.ppf(1.0 - (1.0 - KAYENTA_CONFIDENCE) / 2.0)),
}


# -- one window -------------------------------------------------------------------------------


def window_streams(
    rng: np.random.Generator, rps: float, family: Family, drift: Drift | None = None
) -> tuple[Stream, Stream]:
    """A window's (pre-deploy, deploy) streams: one stream cut at the deploy, the
    regression (if any) from `family.onset_s` after it; `drift`: the service's (None: one
    of its own)."""
    both = simulate(rng, rps, family, BASELINE_S + ROUNDS, BASELINE_S + family.onset_s, drift)
    pre = Stream(
        both.total[:BASELINE_S],
        both.count[:BASELINE_S],
        both.latency[: both.edges[BASELINE_S]],
        both.edges[: BASELINE_S + 1],
    )
    split = int(both.edges[BASELINE_S])
    deploy = Stream(
        both.total[BASELINE_S:],
        both.count[BASELINE_S:],
        both.latency[split:],
        both.edges[BASELINE_S:] - split,
    )
    return pre, deploy


def window_traffic(
    rng: np.random.Generator, rps: float, family: Family
) -> tuple[Stream, Stream, Stream]:
    """A window's (pre-deploy, deploy, control) streams: the control is Kayenta's baseline
    running beside the deploy, the same service without the regression over the same
    seconds, so it drifts with it (`Drift`); each draws its own traffic and noise."""
    drift = Drift.draw(rng)
    pre, deploy = window_streams(rng, rps, family, drift)
    same = Family("control", family.error_base, kappa=family.kappa, drift=family.drift)
    return pre, deploy, simulate(rng, rps, same, ROUNDS, None, drift, start=BASELINE_S)


def run_window(
    rps: float,
    family: Family,
    seed: np.random.SeedSequence,
    round_s: int = 1,
    rules: frozenset[str] | None = None,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pre, deploy, control = window_traffic(rng, rps, family)
    rollback, verdict = our_window(pre, deploy, round_s, rules)
    return {
        "sequential": rollback,
        "verdict": verdict,
        "ratios": interval_ratios(pre, deploy),
        "kayenta": kayenta_scores(deploy, control),
        "onset": float(family.onset_s),
    }


Task = tuple[int, int, int, int, int, int, int, str]
"""(family index, requests/s, windows in the cell, cell number, chunk start, seed offset,
our judge's round in seconds, the rules it judges: comma-separated, empty for all)."""
CHUNK = 10


def run_chunk(task: Task) -> list[dict[str, Any]]:
    """A slice of one cell; each window's seed depends only on (SEED + offset, cell, index):
    a cell's first n windows are the same whatever its size."""
    family_index, rps, windows, cell, start, offset, round_s, names = task
    family = FAMILIES[family_index]
    seeds = window_seeds(cell, windows, offset)[start : start + CHUNK]
    rules = frozenset(names.split(",")) if names else None
    # the cyclic garbage collector off while windows run: it traversed their hundreds of
    # thousands of samples, a third of the CPU of a 100 req/s cell, for no cycle (the
    # figures are the same; memory too: nothing is left for it to find)
    gc.disable()
    try:
        return [run_window(rps, family, s, round_s, rules) for s in seeds]
    finally:
        gc.enable()


def window_seeds(cell: int, windows: int, offset: int = 0) -> list[np.random.SeedSequence]:
    """A cell's windows' seeds: the i-th depends on (SEED + offset, cell, i) only."""
    return np.random.SeedSequence([SEED + offset, cell]).spawn(windows)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which cells run, with how many windows each, on which seeds."""

    scale: float = 1.0
    families: frozenset[str] | None = None
    rates: frozenset[int] | None = None
    regression_windows: int = REGRESSION_WINDOWS
    aa_windows: int = AA_WINDOWS
    goal_windows: int = GOAL_WINDOWS
    """At least this many windows in each cell a goal is judged on (`GOAL_WINDOW_CELLS`)."""
    seed_offset: int = 0
    """0: the benchmark's own seeds; any other: a different set (out of sample)."""
    round_s: int = DAEMON_ROUND_S
    """Our judge's round: the daemon's default `interval` unless asked (`--round-s 1`: the
    README's older tables); the simulated traffic is the same."""
    rules: frozenset[str] | None = None
    """Only these of our rules are judged (`--rules`); None: all."""


def tasks(plan: Plan) -> list[Task]:
    """Every cell's chunks, or only those of the plan's families and rates: cells keep their
    numbers (and so their seeds) either way, so a subset's figures are the full run's for
    those cells."""
    out = []
    for cell, ((fi, family), rps) in enumerate(itertools.product(enumerate(FAMILIES), TRAFFIC)):
        if plan.families is not None and family.key not in plan.families:
            continue
        if plan.rates is not None and rps not in plan.rates:
            continue
        size = plan.aa_windows if family.aa_like else plan.regression_windows
        if f"{family.key}@{rps}rps" in GOAL_WINDOW_CELLS:
            size = max(size, plan.goal_windows)
        n = max(1, round(size * plan.scale))
        out += [
            (
                fi,
                rps,
                n,
                cell,
                start,
                plan.seed_offset,
                plan.round_s,
                ",".join(sorted(plan.rules or ())),
            )
            for start in range(0, n, CHUNK)
        ]
    return sorted(out, key=lambda t: -t[1])  # the heaviest (100 req/s) first


# -- figures ----------------------------------------------------------------------------------

Times = dict[tuple[str, int], list[float | None]]
"""(family key, requests/s) → each window's time to detect (None: no rollback)."""
Verdicts = dict[tuple[str, int], list[str]]
"""(family key, requests/s) → each window's verdict: `pass`, `inconclusive` or `fail`."""
VERDICTS = ("pass", "inconclusive", "fail")


def verdict_shares(times: Times, verdicts: Verdicts | None = None) -> dict[str, dict[str, Any]]:
    """Per cell (`aa@10rps`), the shares of its windows each verdict a user sees ended
    them with, and how many windows: a peer's is `fail` where it rolled back and `pass`
    elsewhere (none of them says inconclusive); ours is the judge's own (`verdicts`), which
    a window short of evidence ends `inconclusive` (the defaults' pass_on evidence), where
    the false-rollback and detection figures count only its rollbacks."""
    out: dict[str, dict[str, Any]] = {}
    for key in (*AA_KEYS, *REGRESSION_KEYS):
        for rps in TRAFFIC:
            if (key, rps) not in times:
                continue
            said = (verdicts or {}).get((key, rps)) or [
                "pass" if t is None else "fail" for t in times[(key, rps)]
            ]
            n = len(said)
            out[f"{key}@{rps}rps"] = {v: said.count(v) / n for v in VERDICTS} | {"windows": n}
    return out


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    ci = sc_stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def peer_times(
    results: dict[tuple[str, int], list[dict[str, Any]]], peer: str, cut: dict[int, float]
) -> Times:
    field = "kayenta" if peer == "kayenta" else "ratios"
    out: Times = {}
    for (key, rps), windows in results.items():
        times = []
        for w in windows:
            t = PEER_TIME[peer](w[field], cut[rps])
            times.append(None if t is None else t - w["onset"])
        out[(key, rps)] = times
    return out


def calibrate(
    results: dict[tuple[str, int], list[dict[str, Any]]], peer: str, target: dict[int, int]
) -> dict[int, float]:
    """Per traffic level, the strictness at which `peer` rolls back exactly as many A/A-like
    windows as ours did (never fewer than zero: then it rolls back none)."""
    cut = {}
    for rps in target:
        levels = []
        for key in AA_KEYS:
            for w in results.get((key, rps), []):
                if peer == "kayenta":
                    levels.append(max(w["kayenta"]))
                else:
                    ranked = sorted(w["ratios"], reverse=True)
                    k = FLAGGER_THRESHOLD if peer == "flagger" else 1
                    levels.append(ranked[k - 1])
        levels.sort(reverse=True)
        m = target[rps]
        # fails iff level > cut: exactly the m largest levels exceed it
        cut[rps] = levels[m] if m < len(levels) else -1e300
        if not math.isfinite(cut[rps]):
            cut[rps] = math.copysign(1e300, cut[rps])
    return cut


def ran(times: Times, keys: tuple[str, ...]) -> tuple[str, ...]:
    """The families of `keys` that ran (all of them unless `--families` chose some)."""
    return tuple(key for key in keys if any((key, rps) in times for rps in TRAFFIC))


def rates(times: Times) -> tuple[int, ...]:
    """The traffic levels that ran (all of them unless `--rates` chose some)."""
    return tuple(rps for rps in TRAFFIC if any(cell[1] == rps for cell in times))


def summarise(times: Times, verdicts: Verdicts | None = None) -> dict[str, Any]:
    aa_keys, regression_keys = ran(times, AA_KEYS), ran(times, REGRESSION_KEYS)
    traffic = rates(times)
    aa = [t for key in aa_keys for rps in traffic for t in times[(key, rps)]]
    k = sum(t is not None for t in aa)
    by_traffic, by_family = {}, {}
    for rps in traffic if aa else ():
        cell = [t for key in aa_keys for t in times[(key, rps)]]
        kk = sum(t is not None for t in cell)
        by_traffic[f"{rps}rps"] = {
            "rate": kk / len(cell),
            "ci95": list(clopper_pearson(kk, len(cell))),
            "windows": len(cell),
        }
        for key in aa_keys:
            fam = times[(key, rps)]
            by_family[f"{key}@{rps}rps"] = sum(t is not None for t in fam) / len(fam)
    detection: dict[str, float] = {}
    detection_ci: dict[str, list[float]] = {}
    ttd: dict[str, dict[str, float | None]] = {}
    early: dict[str, int] = {}
    for key in regression_keys:
        for rps in traffic:
            cell_times = times[(key, rps)]
            # a rollback before any regressed round (an onset family's first minutes) is a
            # false one, not a detection
            hit = [t for t in cell_times if t is not None and t > 0]
            if before := sum(t is not None and t <= 0 for t in cell_times):
                early[f"{key}@{rps}rps"] = before
            detection[f"{key}@{rps}rps"] = len(hit) / len(cell_times)
            detection_ci[f"{key}@{rps}rps"] = list(clopper_pearson(len(hit), len(cell_times)))
            ttd[f"{key}@{rps}rps"] = {
                "median": float(np.median(hit)) if hit else None,
                "p90": float(np.percentile(hit, 90)) if hit else None,
                "median_counting_misses": median_counting_misses(hit, len(cell_times)),
            }
    by_traffic_ttd = {}
    for rps in traffic if regression_keys else ():
        cell_times = [t for key in regression_keys for t in times[(key, rps)]]
        hit = [t for t in cell_times if t is not None and t > 0]
        everything = [math.inf if t is None or t <= 0 else t for t in cell_times]
        by_traffic_ttd[f"{rps}rps"] = {
            "detected": float(np.median(hit)) if hit else math.inf,
            "all": float(np.median(everything)),
        }
    return {
        "false_rollback_rate": k / len(aa) if aa else None,
        "false_rollback_ci95": list(clopper_pearson(k, len(aa))) if aa else None,
        "false_rollback_by_traffic": by_traffic,
        "false_rollback_by_family": by_family,
        "detection": detection,
        "detection_ci95": detection_ci,
        "time_to_detect_s": ttd,
        "median_ttd_by_traffic": by_traffic_ttd,
        "rolled_back_before_onset": early,
        "verdicts_by_family": verdict_shares(times, verdicts),
    }


DETAIL: dict[str, list[str]] = {}
"""The cells behind a missed goal, for the report."""


def acceptance(
    policies: dict[str, Any], calibrated: dict[str, Any], both: dict[str, dict[str, Any]]
) -> dict[str, bool]:
    """The goals whose cells ran (all of them unless `--families` chose some); `both`: the
    medians over the windows both we and a peer detected (`paired`), which the goal of a
    median below the peers' is judged on."""
    ours_ = policies["sequential"]
    detection = ours_["detection"]
    checks: dict[str, bool] = {}
    if ours_["false_rollback_by_family"]:
        checks[FRR_GOAL] = all(v <= 0.01 for v in ours_["false_rollback_by_family"].values())
    for cell in ALL_DETECTED_CELLS:
        if cell not in detection:
            continue
        checks[detection_goal(cell)] = detection[cell] >= 1.0
        median = ours_["time_to_detect_s"][cell]["median"]
        checks[f"median_ttd_{cell}_le_30s"] = median is not None and median <= 30
    for cell in MOST_DETECTED_CELLS:
        if cell in detection:
            checks[detection_goal(cell)] = detection[cell] >= 0.95
    if calibrated:
        behind = [
            cell
            for cell, det in detection.items()
            if det < calibrated["kayenta"]["detection"][cell] - 0.05
        ]
        checks["detection_within_5pts_of_calibrated_kayenta_every_cell"] = not behind
        DETAIL["behind_calibrated_kayenta"] = behind
    # the "wherever both detect": on the windows both detected, each median over
    # the same windows (over each policy's own detections, one that also finds the hard
    # windows, late, looks slower than one that finds only the easy ones: printed beside)
    slower = slower_on_windows_both_detect(both)
    checks["median_ttd_below_flagger_and_kayenta_where_both_detect"] = not slower
    DETAIL["slower_than_peer"] = slower_than_peers(policies, "median")
    DETAIL["slower_than_peer_on_windows_both_detect"] = slower
    for key, start in ONSET_PAIRS:
        if f"{key}@10rps" not in detection or f"{start}@10rps" not in detection:
            continue
        onset = ours_["time_to_detect_s"][f"{key}@10rps"]["median"]
        first = ours_["time_to_detect_s"][f"{start}@10rps"]["median"]
        checks[f"{key}@10rps_median_le_1.5x_from_start"] = (
            onset is not None and first is not None and onset <= 1.5 * first
        )
    return checks


def detection_goal(cell: str) -> str:
    """The name of the goal on the share of `cell`'s windows detected."""
    return f"detect_{cell}_100pct" if cell in ALL_DETECTED_CELLS else f"detect_{cell}_ge_95pct"


def goal_intervals(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per goal on a share of windows, the share it was judged on with its 95%
    Clopper-Pearson interval: a detection goal's cell, and for the false rollbacks the
    A/A-like cell with the most (the first of a tie). Read from the report's summaries, so a
    report saved before this was added gives them too (`--from-json`)."""
    ours_ = report["policies"]["sequential"]
    windows = {cell: v["windows"] for cell, v in ours_["verdicts_by_family"].items()}
    chosen = [
        (detection_goal(cell), cell, ours_["detection"][cell])
        for cell in (*ALL_DETECTED_CELLS, *MOST_DETECTED_CELLS)
        if detection_goal(cell) in report["acceptance"]
    ]
    aa_like: dict[str, float] = ours_["false_rollback_by_family"]
    if FRR_GOAL in report["acceptance"] and aa_like:
        worst = max(aa_like, key=lambda cell: aa_like[cell])
        chosen.append((FRR_GOAL, worst, aa_like[worst]))
    out = {}
    for goal, cell, rate in chosen:
        n = windows[cell]
        hits = round(rate * n)
        out[goal] = {
            "cell": cell,
            "hits": hits,
            "windows": n,
            "rate": rate,
            "ci95": list(clopper_pearson(hits, n)),
        }
    return dict(sorted(out.items(), key=lambda item: list(report["acceptance"]).index(item[0])))


def goal_line(name: str, ok: bool, interval: dict[str, Any] | None) -> str:
    """`  ok   detect_errors_x2@10rps_ge_95pct  95/100 = 95.0% [88.7%, 98.4%]` (the cell
    named where the goal's name does not: the false rollbacks' worst cell)."""
    line = f"  {'ok  ' if ok else 'MISS'} {name}"
    if interval is None:
        return line
    low, high = interval["ci95"]
    where = "" if interval["cell"] in name else f" ({interval['cell']})"
    return (
        f"{line}  {interval['hits']}/{interval['windows']} = {interval['rate']:.1%} "
        f"[95% CI {low:.1%}, {high:.1%}]{where}"
    )


def slower_than_peers(policies: dict[str, Any], median: str) -> list[str]:
    """The cells where our `median` time to detect (a key of `time_to_detect_s`) is not
    below Flagger's or Kayenta's, where both have one."""
    slower = []
    for cell, t in policies["sequential"]["time_to_detect_s"].items():
        for peer in ("flagger", "kayenta"):
            theirs = policies[peer]["time_to_detect_s"][cell][median]
            if t[median] is not None and theirs is not None and t[median] >= theirs:
                slower.append(f"{cell} vs {peer}")
    return slower


def slower_on_windows_both_detect(both: dict[str, dict[str, Any]]) -> list[str]:
    """The cell-peer pairs (`paired`) where our median over the windows both detected is not
    below the peer's over the same windows."""
    return [
        f"{cell} vs {peer}"
        for cell, peers in both.items()
        for peer, m in peers.items()
        if m["ours"] >= m["theirs"]
    ]


def median_counting_misses(hit: list[float], windows: int) -> float | None:
    """The median time to detect over every window of a cell, a miss counted as never (the
    Kaplan-Meier median with the window's end as censoring): None when half or more were
    missed. Unlike the median over a policy's own detections, finding one more window,
    however late, never makes it later."""
    if 2 * len(hit) <= windows:
        return None
    times = sorted(hit) + [math.inf] * (windows - len(hit))
    return float(np.median(times))


def paired(ours_: Times, theirs: dict[str, Times]) -> dict[str, dict[str, Any]]:
    """Per regression cell and peer, the median times to detect over the windows *both*
    detected (`windows`: how many), which the goal of a median below the peers' is judged
    on: medians each over a policy's own detections make a policy that also finds the hard
    windows, late, look slower than one that finds only the easy ones (those are printed
    beside it, `slower_than_peer`)."""
    out: dict[str, dict[str, Any]] = {}
    for (key, rps), mine in ours_.items():
        if key not in REGRESSION_KEYS:
            continue
        cell = f"{key}@{rps}rps"
        for peer, times in theirs.items():
            pairs = [
                (a, b)
                for a, b in zip(mine, times[(key, rps)], strict=True)
                if a is not None and b is not None and a > 0 and b > 0
            ]
            if pairs:
                out.setdefault(cell, {})[peer] = {
                    "windows": len(pairs),
                    "ours": float(np.median([a for a, _ in pairs])),
                    "theirs": float(np.median([b for _, b in pairs])),
                }
    return out


def onset_ratios(times: Times, rps: int = 10) -> dict[str, dict[str, Any]]:
    """Per onset family at `rps`, the goal's ratio (its median time to detect from the onset
    over the same regression's from the deploy) with a 95% bootstrap interval: windows
    resampled within each cell (`scipy.stats.bootstrap`, percentile, a fixed seed). Twenty
    windows a cell put a median within a few rounds, so a ratio near 1.5 may land on either
    side of it: the default run gives both cells 100 (`ONSET_GOAL_CELLS`), and the interval
    says how far its figure can be trusted."""
    out: dict[str, dict[str, Any]] = {}
    for key, start in ONSET_PAIRS:
        if (key, rps) not in times or (start, rps) not in times:
            continue
        onset, first = (
            np.array([t for t in times[(k, rps)] if t is not None and t > 0]) for k in (key, start)
        )
        if len(onset) < 2 or len(first) < 2:
            continue
        ci = sc_stats.bootstrap(
            (onset, first),
            lambda a, b, axis: np.median(a, axis=axis) / np.median(b, axis=axis),
            n_resamples=4000,
            method="percentile",
            random_state=np.random.default_rng(SEED),
        ).confidence_interval
        out[f"{key}@{rps}rps"] = {
            "ratio": float(np.median(onset) / np.median(first)),
            "ci95": [float(ci.low), float(ci.high)],
            "windows_detected": [len(onset), len(first)],
        }
    return out


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def tables(report: dict[str, Any], section: str, title: str) -> list[str]:
    pol = report[section]
    names = [n for n in POLICIES if n in pol]
    lines = [
        title,
        "False-rollback rate on A/A-like windows",
        f"{'cell':<22}" + "".join(f"{n:>14}" for n in names),
    ]
    for cell in pol[names[0]]["false_rollback_by_family"]:
        lines.append(
            f"{cell:<22}"
            + "".join(f"{pct(pol[n]['false_rollback_by_family'][cell]):>14}" for n in names)
        )
    if pol[names[0]]["false_rollback_rate"] is not None:
        lines.append(
            f"{'all':<22}" + "".join(f"{pct(pol[n]['false_rollback_rate']):>14}" for n in names)
        )
    lines += [
        "",
        "Detection [95% Clopper-Pearson interval], median time to detect (s; onset families "
        "from the onset)",
        f"{'regression':<26}" + "".join(f"{n:>26}" for n in names),
    ]
    for cell in pol[names[0]]["detection"]:
        row = f"{cell:<26}"
        for n in names:
            det = pol[n]["detection"][cell]
            low, high = pol[n]["detection_ci95"][cell]
            median = pol[n]["time_to_detect_s"][cell]["median"]
            ci = f"[{low * 100:.0f}-{high * 100:.0f}]"
            row += f"{pct(det)} {ci} {'-' if median is None else f'{median:g}'}".rjust(26)
        lines.append(row)
    if "verdicts_by_family" in pol[names[0]]:  # not in a report saved before they were kept
        lines += [
            "",
            "Verdicts users see: pass / inconclusive / fail, % of windows",
            f"{'cell':<26}" + "".join(f"{n:>20}" for n in names),
        ]
        for cell in pol[names[0]]["verdicts_by_family"]:
            shares = [pol[n]["verdicts_by_family"][cell] for n in names]
            lines.append(
                f"{cell:<26}"
                + "".join("/".join(f"{s[v] * 100:.0f}" for v in VERDICTS).rjust(20) for s in shares)
            )
    return lines


def text(report: dict[str, Any]) -> str:
    lines = [
        f"Decision benchmark: {report['windows']} windows of {ROUNDS // report['round_s']} x "
        f"{report['round_s']}s rounds, "
        f"{BASELINE_S // 60} min baseline in {PERIOD_S}s periods; seed {SEED}"
        f"{' + ' + str(report['seed_offset']) if report['seed_offset'] else ''}; "
        f"{report['elapsed_s']:.0f}s; commit {ran_on(report)}",
        "Rules: error_rate and latency_p95, max_increase 10% over the baseline",
        "Policies: sequential (ours, defaults) | flagger (60s, 5 failed checks, thresholds "
        f"mean x1.1 + {NOISE_SIGMAS:g} sd) | argo (same, failureLimit 0) | kayenta (MW 0.98 "
        f"interval past {KAYENTA_FRACTION:g} x the shift, mean ratio >= 1.1, {KAYENTA_STEP}s "
        f"series vs a concurrent baseline, every {KAYENTA_INTERVAL}s)",
        "",
    ]
    lines += tables(report, "policies", "== As configured by their docs ==")
    if report["calibrated"]:
        lines += [""]
        lines += tables(
            report
            | {
                "calibrated": {"sequential": report["policies"]["sequential"]}
                | report["calibrated"]
            },
            "calibrated",
            "== Peers calibrated to our false-rollback rate (per traffic level) ==",
        )
    lines += ["", "Goals (issue 10)"]
    intervals = goal_intervals(report)
    lines += [goal_line(name, ok, intervals.get(name)) for name, ok in report["acceptance"].items()]
    lines += [
        f"  {name}: {', '.join(cells)}" for name, cells in report["acceptance_detail"].items()
    ]
    lines += [
        f"  onset ratio {cell}: {r['ratio']:.2f}x [95% bootstrap {r['ci95'][0]:.2f}-"
        f"{r['ci95'][1]:.2f}] over {r['windows_detected'][0]} and {r['windows_detected'][1]} "
        "windows detected"
        for cell, r in report["onset_ratio"].items()
    ]
    return "\n".join(lines)


MARKDOWN_CELLS = (
    (
        "errors_x5@10rps",
        "errors_x2@10rps",
        "errors_x1.5@100rps",
        "latency_x2@10rps",
        "onset_errors_x5@10rps",
    ),
    (
        "latency_x2@10rps",
        "onset_latency_x2@10rps",
        "latency_x1.2@10rps",
        "latency_x1.2@1rps",
        "latency_tail_x3@1rps",
    ),
)
"""The README's columns (the goals' cells and the hard ones), a table per row of these: the
cells of its `--round-s 1` tables, so the two runs read side by side."""
PEER_LABELS = {
    "sequential": "sequential (ours)",
    "flagger": "Flagger-style",
    "argo": "Argo-style",
    "kayenta": "Kayenta-style",
}
BY_TRAFFIC = ("errors_x5", "onset_errors_x5", "latency_x2", "onset_latency_x2")


def cell_label(cell: str) -> str:
    """`onset_errors_x5@10rps` → `errors ×5 from minute 5 @10 rps`."""
    key, rps = cell.split("@")
    onset = key.startswith("onset_")
    words = key.removeprefix("onset_").replace("_x", " ×").replace("_", " ")
    when = f" from minute {ONSET_S // 60}" if onset else ""
    return f"{words}{when} @{rps.removesuffix('rps')} rps"


def markdown(report: dict[str, Any]) -> str:
    """The README's tables of a full run: each policy (as configured, then calibrated to our
    false-rollback rate) by its false rollbacks and its detected share and median time to
    detect in the chosen cells; ours by traffic level; ours per A/A-like cell."""

    def detected(summary: dict[str, Any], cell: str) -> str:
        median = summary["time_to_detect_s"][cell]["median"]
        return f"{summary['detection'][cell] * 100:g}%, " + (
            "-" if median is None else f"{median:g} s"
        )

    def false_rollbacks(summary: dict[str, Any]) -> str:
        low, high = summary["false_rollback_ci95"]
        return f"{summary['false_rollback_rate']:.1%} [{low:.1%}, {high:.1%}]"

    rows = [(PEER_LABELS[n], report["policies"][n]) for n in POLICIES]
    rows += [(f"{PEER_LABELS[n]}, calibrated to ours", report["calibrated"][n]) for n in PEERS]
    lines = [
        f"`--round-s {report['round_s']}`, {report['windows']:,} windows, "
        f"{report['elapsed_s']:.0f} s, commit {ran_on(report)}:"
    ]
    for cells in MARKDOWN_CELLS:
        header = ["policy", "false rollbacks, A/A-like (95% CI)", *map(cell_label, cells)]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += [
            f"| {label} | {false_rollbacks(s)} | "
            + " | ".join(detected(s, cell) for cell in cells)
            + " |"
            for label, s in rows
        ]
    ours_ = report["policies"]["sequential"]
    lines += ["", "| sequential (ours) | " + " | ".join(f"{r} rps" for r in TRAFFIC) + " |"]
    lines.append("|" + "---|" * (len(TRAFFIC) + 1))
    lines += [
        f"| {cell_label(f'{key}@0rps').removesuffix(' @0 rps')} | "
        + " | ".join(detected(ours_, f"{key}@{rps}rps") for rps in TRAFFIC)
        + " |"
        for key in BY_TRAFFIC
    ]
    by_cell = ours_["false_rollback_by_family"]
    missed = [name for name, ok in report["acceptance"].items() if not ok]
    lines += [
        "",
        "False rollbacks per A/A-like cell (ours): "
        + ", ".join(
            f"`{key}` @{rps.removesuffix('rps')} rps {pct(rate)}"
            for key, rps, rate in ((*c.split("@"), rate) for c, rate in by_cell.items())
        )
        + ".",
        "",
        f"Goals: {len(missed)} of {len(report['acceptance'])} false"
        + (f" ({', '.join(f'`{name}`' for name in missed)})." if missed else "."),
    ]
    return "\n".join(lines)


def commit_of(tree: Path) -> dict[str, Any] | None:
    """The commit a run ran on (`git rev-parse --short HEAD`) and whether the tree had
    uncommitted changes, so a saved report says which judge made it; None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        )
        status = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:  # no git installed
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def ran_on(report: dict[str, Any]) -> str:
    """`4264050`, `4264050 + uncommitted changes`, or `no git tree` (older reports: `-`)."""
    if "commit" not in report:
        return "-"
    commit = report["commit"]
    if commit is None:
        return "no git tree"
    sha: str = commit["commit"]  # a report's JSON: the hash `commit_of` wrote
    return sha + (" + uncommitted changes" if commit["dirty"] else "")


RESULTS = Path(__file__).resolve().parent / "results" / "decisions.json.gz"
"""The default run's `--json` report, which the README's table of it is printed from."""


def read_report(path: Path) -> str:
    """A saved `--json` report, gzipped (`.gz`) or not."""
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def add_names(parser: argparse.ArgumentParser, flag: str, note: str) -> None:
    """An option of comma-separated names, read as a set (None: all)."""
    parser.add_argument(
        flag,
        type=lambda v: frozenset(v.split(",")),
        default=None,
        metavar="NAME[,NAME...]",
        help=note,
    )


def add_round_s(parser: argparse.ArgumentParser, note: str, divides: int = ROUNDS) -> None:
    """`--round-s`, our judge's round in seconds (the daemon's `interval`): by default the
    daemon's own, what a user runs; a whole number of seconds dividing `divides` (the
    window, or whatever else must fall on a round's boundary)."""

    def seconds(value: str) -> int:
        round_s = int(value)
        if round_s < 1 or divides % round_s:
            raise argparse.ArgumentTypeError(f"must divide {divides} s (got {value})")
        return round_s

    parser.add_argument(
        "--round-s",
        type=seconds,
        default=DAEMON_ROUND_S,
        metavar="S",
        help=f"our judge's round in seconds, the daemon's `interval` (default {DAEMON_ROUND_S}, "
        f"the daemon's: what a user runs; {note}); a divisor of {divides}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a tenth of the windows")
    parser.add_argument(
        "--fraction", type=float, default=None, help="this share of the windows (overrides --quick)"
    )
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)"
    )
    add_names(
        parser,
        "--families",
        "only these families, every rate, same seeds (peers are calibrated only when an "
        "A/A-like family is among them)",
    )
    parser.add_argument(
        "--rates",
        type=lambda v: frozenset(int(r) for r in v.split(",")),
        default=None,
        metavar="RPS[,RPS...]",
        help=f"only these traffic levels (of {', '.join(map(str, TRAFFIC))}), same seeds",
    )
    parser.add_argument(
        "--windows-per-cell",
        type=int,
        default=REGRESSION_WINDOWS,
        metavar="N",
        help=f"windows per regression cell (default {REGRESSION_WINDOWS}; the first "
        f"{REGRESSION_WINDOWS} are the default run's)",
    )
    parser.add_argument(
        "--goal-windows",
        type=int,
        default=GOAL_WINDOWS,
        metavar="N",
        help=f"at least this many windows in each cell a goal is judged on "
        f"(default {GOAL_WINDOWS}; {REGRESSION_WINDOWS} for the runs saved before it)",
    )
    parser.add_argument(
        "--aa-windows",
        type=int,
        default=AA_WINDOWS,
        metavar="N",
        help=f"windows per A/A-like cell (default {AA_WINDOWS})",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        metavar="K",
        help="another set of seeds (0: the benchmark's own): figures out of sample",
    )
    add_round_s(parser, "1 for the README's older 1 s tables; the simulated traffic is the same")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the README's tables of the run (policies by cell, ours by traffic level)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="FILE",
        help="print the report a `--json` run saved in FILE instead of running (with "
        "--markdown: regenerate the README's tables)",
    )
    add_names(
        parser,
        "--rules",
        "judge only these of our rules (errors, latency), the others without data and "
        "their share of the budget unchanged; `errors` alone reads each round's counts "
        "without building its samples (a tenth of the time); the peers are unchanged",
    )
    args = parser.parse_args()
    if args.from_json is not None:
        saved = json.loads(read_report(args.from_json))
        print(markdown(saved) if args.markdown else text(saved))
        return 0
    if args.rules is not None and (unknown_rules := args.rules - {r.name for r in RULES}):
        parser.error(f"unknown rules: {', '.join(sorted(unknown_rules))}")
    if args.families is not None and (unknown := args.families - {f.key for f in FAMILIES}):
        parser.error(f"unknown families: {', '.join(sorted(unknown))}")
    if args.rates is not None and (unknown_rates := args.rates - set(TRAFFIC)):
        parser.error(f"unknown rates: {', '.join(map(str, sorted(unknown_rates)))}")
    started = time.perf_counter()
    plan = Plan(
        scale=args.fraction or (0.1 if args.quick else 1.0),
        families=args.families,
        rates=args.rates,
        regression_windows=args.windows_per_cell,
        aa_windows=args.aa_windows,
        goal_windows=args.goal_windows,
        seed_offset=args.seed_offset,
        round_s=args.round_s,
        rules=args.rules,
    )
    work = tasks(plan)
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            outputs = list(pool.map(run_chunk, work))
    else:
        outputs = [run_chunk(t) for t in work]
    results: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for (fi, rps, *_), out in sorted(
        zip(work, outputs, strict=True), key=lambda pair: (pair[0][3], pair[0][4])
    ):
        results[(FAMILIES[fi].key, rps)].extend(out)
    ours_times: Times = {
        cell: [None if w["sequential"] is None else w["sequential"] - w["onset"] for w in windows]
        for cell, windows in results.items()
    }
    verdicts: Verdicts = {
        cell: [w["verdict"] for w in windows] for cell, windows in results.items()
    }
    policies = {"sequential": summarise(ours_times, verdicts)}
    as_configured = {
        peer: peer_times(results, peer, dict.fromkeys(TRAFFIC, PEER_DEFAULT[peer]))
        for peer in PEERS
    }
    for peer in PEERS:
        policies[peer] = summarise(as_configured[peer])
    target = {
        rps: sum(t is not None for key in ran(ours_times, AA_KEYS) for t in ours_times[(key, rps)])
        for rps in rates(ours_times)
    }
    calibrated = {}
    for peer in PEERS if ran(ours_times, AA_KEYS) else ():
        cut = calibrate(results, peer, target)
        calibrated[peer] = summarise(peer_times(results, peer, cut)) | {
            "strictness": {f"{rps}rps": cut[rps] for rps in target}
        }
    report: dict[str, Any] = {
        "policies": policies,
        "calibrated": calibrated,
        "windows": sum(len(v) for v in results.values()),
        "elapsed_s": round(time.perf_counter() - started, 2),
        "seed": SEED,
        "seed_offset": plan.seed_offset,
        "round_s": plan.round_s,
        "commit": commit_of(Path(__file__).resolve().parent),
        "rules_judged": sorted(plan.rules) if plan.rules else [r.name for r in RULES],
        "windows_per_cell": {"regression": plan.regression_windows, "aa_like": plan.aa_windows},
        "rules": [f"{r.name}: {r.metric} max_increase 10% over the baseline" for r in RULES],
        "noise": {
            "latency": {"median_s": LATENCY_MEDIAN_S, "sigma": LATENCY_SIGMA},
            "errors": {
                "base_rates": [0.01, 0.001],
                "beta_binomial_concentration": KAPPA,
                "bursty_concentration": BURSTY_KAPPA,
            },
            "drift": DRIFT,
            "traffic_rps": list(TRAFFIC),
            "window_s": ROUNDS * ROUND_S,
            "baseline_s": BASELINE_S,
            "baseline_period_s": PERIOD_S,
        },
    }
    both = paired(ours_times, {p: as_configured[p] for p in ("flagger", "kayenta")})
    report["acceptance"] = acceptance(policies, calibrated, both)
    report["goal_windows"] = plan.goal_windows
    report["goal_intervals"] = goal_intervals(report)
    report["time_to_detect_on_windows_both_detect"] = both
    DETAIL["slower_than_peer_counting_misses"] = slower_than_peers(
        policies, "median_counting_misses"
    )
    report["acceptance_detail"] = DETAIL
    report["onset_ratio"] = onset_ratios(ours_times)
    print(json.dumps(report) if args.json else markdown(report) if args.markdown else text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

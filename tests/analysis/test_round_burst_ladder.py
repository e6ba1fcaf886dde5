"""The two-sample count test's ladder keeps its baseline e-value's mean at most 1 when errors
burst for whole rounds (`bench/round_bursts.py`: each 30 s period draws its error rate once,
Beta with intra-round correlation rho, and the baseline pools 60 of them).

The ladder's proof needs, at the true rate p, E[e_base(p)] <= 1 over the baselines, and p
past the farthest limit no more often than the tail share. A quasi-binomial limit divides
the count by the inflation its periods measured, which shrinks in proportion with the count
when a baseline under-drew its bursts: its limits sat at a fixed multiple of an estimate 6x
too low (100 req/s, rho 0.2: E[e_base(p)] 3.1, p past the 0.00025 limit in 31 of 600
baselines; 2 of 200 A/A windows rolled back by the ladder). A short baseline (10-20 periods),
or one of few errors (1 req/s), that missed its bursts holds its few errors in a few periods
and measures a calm spread from them, which Student's correction on k - 1 degrees of
freedom took at its word: 10 periods at 10 req/s had E[e_base(p)] 7.8 and p past the
farthest limit in 5 of 300. The spread's uncertainty is now read from the periods that
hold events (`BaselineData.measured_periods`). Simulated with fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Policy, Rule

RULE = Rule("errors", "checks", "error_rate", max_increase=0.1)
ALPHA = 0.005
"""One rule's share of the default budget with two rules (confidence 0.99)."""
RATE = 0.01
PERIODS = 60
ROUND_S = 30.0


def _rounds(
    rng: np.random.Generator, rps: float, rate: float, rho: float, k: int
) -> list[Observation]:
    """`k` periods (or rounds) of 30 s, each with its error rate drawn once (Beta, mean
    `rate`, rho)."""
    n = rng.poisson(rps * ROUND_S, size=k)
    kappa = 1.0 / rho - 1.0
    bad = rng.binomial(n, rng.beta(rate * kappa, (1.0 - rate) * kappa, size=k))
    return [
        Observation(value=c / t if t else None, count=int(c), total=int(t), seconds=ROUND_S)
        for c, t in zip(bad, n, strict=True)
    ]


def _baseline(
    rng: np.random.Generator, rps: float, rho: float, periods: int = PERIODS
) -> BaselineData:
    base = BaselineData.from_observation(merge(_rounds(rng, rps, RATE, rho, periods)))
    assert base is not None
    return base


def _e_base(
    rng: np.random.Generator, rps: float, rho: float, periods: int, windows: int, alpha: float
) -> tuple[float, int]:
    """(the mean over `windows` baselines of e_base at the true rate, how many put it past
    the farthest limit); a baseline that prices no ladder counts e_base 0."""
    e_sum, past = 0.0, 0
    for _ in range(windows):
        base = _baseline(rng, rps, rho, periods)
        tests = SequentialRule(RULE, base, "proportion", alpha, horizon=30)
        comp = next((c for c in tests.components if c.ladder), None)
        if comp is None:
            continue  # the baseline cannot price the bound: no test, e_base 0
        limits = [level / (1.0 + 0.1) for level, _, _ in comp.ladder]
        rung = next((k for k, v in enumerate(limits) if v >= RATE), None)
        if rung is None:
            past += 1
        else:
            e_sum += math.exp(comp.ladder[rung][2])
    return e_sum / windows, past


@pytest.mark.parametrize(("rps", "rho"), [(100.0, 0.2), (10.0, 0.05)])
def test_the_ladders_baseline_e_value_holds_under_whole_round_bursts(
    rps: float, rho: float
) -> None:
    """Over 400 baselines: the mean of e_base at the true rate at most 1 (it was 3.1 at
    100 req/s rho 0.2, 2.1 at 10 req/s rho 0.05), the true rate past the farthest limit at
    most twice (0.1 expected at the tail share; it was about 20 and 5)."""
    rng = np.random.default_rng([20261205, int(rps), int(rho * 1e4)])
    mean, past = _e_base(rng, rps, rho, PERIODS, 400, ALPHA)
    assert mean <= 1.0
    assert past <= 2


@pytest.mark.parametrize(
    ("periods", "rps", "rho"),
    [
        (10, 10.0, 0.2),
        (10, 100.0, 0.2),
        (20, 10.0, 0.2),
        (10, 10.0, 0.05),
        (60, 1.0, 0.2),
        (30, 3.0, 0.2),
    ],
)
def test_a_short_or_sparse_bursty_baseline_keeps_the_ladders_e_value(
    periods: int, rps: float, rho: float
) -> None:
    """Over 300 baselines at a rule's share of 0.01 (tail 0.0005: 0.15 expected past it):
    the mean of e_base at the true rate at most 1 and the true rate past the farthest limit
    at most once. Failed before (mean, past): 10 periods at 10 req/s rho 0.2 (7.8, 5), at
    100 req/s (0.03, 6), 20 periods at 10 req/s (0.07, 8), 10 at 10 req/s rho 0.05 (2.4,
    8), 60 at 1 req/s rho 0.2 (1.85, 4); after 0.17, 0.13, 0.35, 0.22, 0.18, none past.
    Not pinned: 20 periods at 10 req/s rho 0.05, 1.35 in these 300 (8 baselines price a
    ladder, one of them e 130), 0.59-0.85 over three other seeds' 1,000, 1-4 past (0.5
    expected): at the limit (0.18 with 9-18 past before). 30 periods at 3 req/s rho 0.2 (0.20)
    guards the dof against the sample's kurtosis: 1 + 2 (k - 1) / (kappa - 1), kappa at least
    Poisson's (zero periods as evidence), from 30 periods up, gave 1.07 (failed), and it
    bought rare errors x5 @10 rps only 94% -> 95% (96% on seed offset 5000). Tried and
    refused too: the same below mean 1 event a period (a baseline that missed its bursts
    looks sparse: 10 periods at 100 req/s 4 past, 20 at 10 req/s 1.10 and 3 past), dof D
    for D - 1 (10 periods at 100 req/s 1.23, 20 at 10 req/s 1.11; rare x5 95%)."""
    rng = np.random.default_rng([20261206, periods, int(rps), int(rho * 1e4)])
    mean, past = _e_base(rng, rps, rho, periods, 300, 0.01)
    print(f"{periods} periods {rps:g} req/s rho {rho:g}: e_base mean {mean:.2f}, past {past}")
    assert mean <= 1.0
    assert past <= 1


def test_good_deploys_at_the_bound_against_ten_bursty_periods_fail_within_the_level() -> None:
    """300 windows of 30 rounds exactly at +10%, 10 periods of 100 req/s with Beta bursts
    (rho 0.2), one rule at confidence 0.99 (its share 0.01: 3 of 300 expected at most).
    Failed before: 11 of 300, all by the two-sample test."""
    rng = np.random.default_rng([20261206, 10, 100, 2000])
    failed = 0
    for _ in range(300):
        base = merge(_rounds(rng, 100.0, RATE, 0.2, 10))
        judge = Judge((RULE,), {"errors": base}, Policy("sequential", confidence=0.99), horizon=30)
        state = judge.start()
        for k, obs in enumerate(_rounds(rng, 100.0, RATE * 1.1, 0.2, 30)):
            state = judge.advance(state, {"errors": obs}, final=k == 29)
            if judge.failed_round(state) is not None:
                failed += 1
                break
    print(f"failed {failed} of 300")
    assert failed <= 3

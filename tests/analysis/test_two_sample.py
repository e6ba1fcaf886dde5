"""The two-sample count test of a relative error bound: valid at the boundary, and powerful.

Simulated with fixed seeds (derandomised): the baseline is itself a noisy estimate, drawn
afresh for every window, and the deploy's rate is exactly baseline rate x (1 + max_increase).
"""

from __future__ import annotations

import numpy as np

from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

RULE = Rule("errors", "checks", "error_rate", max_increase=0.1)


def _window(
    rng: np.random.Generator, alpha: float, rate: float, factor: float, per_round: int
) -> bool:
    """One window of 60 rounds against a baseline of 20,000 requests: did it fail?"""
    base_n = 20_000
    base_count = int(rng.binomial(base_n, rate))
    base = Observation(value=base_count / base_n, count=base_count, total=base_n)
    rule = SequentialRule(
        RULE, BaselineData.from_observation(base), "proportion", alpha, horizon=60
    )
    state = rule.start()
    for i, bad in enumerate(rng.binomial(per_round, rate * factor, size=60)):
        rule.step(state, Observation(value=bad / per_round, count=int(bad), total=per_round), i)
    return rule.failed_at(state)[0] is not None


def test_a_deploy_exactly_at_the_bound_fails_at_most_alpha_of_the_time() -> None:
    rng = np.random.default_rng(20261130)
    alpha = 0.1
    fails = sum(_window(rng, alpha, 0.01, 1.1, 300) for _ in range(300))
    assert fails / 300 <= alpha


def test_a_doubled_error_rate_is_caught_in_almost_every_window() -> None:
    rng = np.random.default_rng(7)
    caught = sum(_window(rng, 0.005, 0.01, 2.0, 150) for _ in range(40))
    assert caught >= 38


def test_the_baseline_uncertainty_is_tested_not_added_to_the_bound() -> None:
    """The previous design (the baseline's Clopper-Pearson limit x 1.1 as a fixed null) caught
    7 of these 20 windows of +60%; the two-sample test catches most."""
    rng = np.random.default_rng(3)
    caught = sum(_window(rng, 0.005, 0.01, 1.6, 300) for _ in range(20))
    assert caught >= 12


def test_a_sentry_baselines_buckets_change_the_judges_evidence() -> None:
    """Sentry's per-bucket failure rates, pooled (`bucketed_baseline`), say how bursty the
    baseline was; the count test then trusts the baseline's rate less and needs more."""
    from agent.analysis import Policy
    from agent.analysis.judge import judge
    from agent.providers.sentry import bucketed_baseline

    whole = Observation(value=0.01, count=600, total=60_000)
    steady = [Observation(value=0.01, count=10, total=1_000) for _ in range(60)]
    bursty = [Observation(value=c / 1_000, count=c, total=1_000) for c in [0, 0, 30] * 20]
    rounds = [
        {"errors": Observation(value=0.016, count=16, total=1_000, seconds=1.0)} for _ in range(20)
    ]
    policy = Policy("sequential", confidence=0.99)

    def evidence(baseline: Observation) -> float:
        verdict = judge([RULE], {"errors": baseline}, rounds, policy, final=False)
        return float(verdict.rules[0].evidence["likelihood_ratio"])

    calm, burst = bucketed_baseline(whole, steady), bucketed_baseline(whole, bursty)
    assert calm.dispersion == 0.0 and burst.dispersion is not None and burst.dispersion > 0.01
    assert evidence(burst) < evidence(calm) / 10


LATENCY = Rule("p95", "checks", "latency_p95", max_increase=0.1)
CRASH_FREE = Rule(
    "crash-free", "sentry", "crash_free_rate", max_increase=0.01, direction="decrease"
)


def _latency_window(rng: np.random.Generator, alpha: float, factor: float, tail: float) -> bool:
    """60 rounds of 20 samples against a baseline of 600 (lognormal): did it fail? `tail`:
    the share of the deploy's samples made `factor` slower (1: all of them)."""
    values = tuple(float(v) for v in rng.lognormal(-2.5, 0.6, 600))
    base = Observation(float(np.percentile(values, 95)), values=values, quantile=0.95)
    rule = SequentialRule(
        LATENCY, BaselineData.from_observation(base), "distribution", alpha, horizon=60
    )
    window = np.empty((60, 20))
    for i in range(60):  # drawn round by round (the lognormal and uniform draws take turns)
        window[i] = rng.lognormal(-2.5, 0.6, 20)
        window[i, rng.uniform(size=20) < tail] *= factor
    # each round's p95 in one call (numpy's, row by row, to the last bit): a call a round
    # was a third of these windows' time
    tops = np.percentile(window, 95, axis=1).tolist()
    state = rule.start()
    for i, (top, x) in enumerate(zip(tops, window.tolist(), strict=True)):
        rule.step(state, Observation(top, values=tuple(x), quantile=0.95), i)
    return rule.failed_at(state)[0] is not None


def test_latency_exactly_at_the_bound_fails_at_most_alpha_of_the_time() -> None:
    """Every sample exactly +10% (the rank and the exceedance test at their boundary), with
    the baseline a fresh noisy sample each window."""
    rng = np.random.default_rng(11)
    alpha = 0.1
    fails = sum(_latency_window(rng, alpha, 1.1, 1.0) for _ in range(200))
    assert fails / 200 <= alpha


def test_latency_regressions_are_caught_against_a_finite_baseline() -> None:
    rng = np.random.default_rng(12)
    assert sum(_latency_window(rng, 0.005, 1.5, 1.0) for _ in range(20)) >= 18
    assert sum(_latency_window(rng, 0.005, 3.0, 0.2) for _ in range(20)) >= 18  # the tail


def _crash_window(rng: np.random.Generator, alpha: float, drop: float) -> bool:
    """Crash-free sessions at 99.5% in the baseline (20,000); the deploy's share of crashed
    sessions is `drop` times the baseline's (crash-free 1 - 0.005 x drop)."""
    base_n = 20_000
    ok = int(rng.binomial(base_n, 0.995))
    base = Observation(value=ok / base_n, count=ok, total=base_n)
    rule = SequentialRule(
        CRASH_FREE, BaselineData.from_observation(base), "proportion", alpha, horizon=60
    )
    state = rule.start()
    rate = 1.0 - 0.005 * drop
    for i, good in enumerate(rng.binomial(500, rate, size=60)):
        rule.step(state, Observation(value=good / 500, count=int(good), total=500), i)
    return rule.failed_at(state)[0] is not None


def test_the_decrease_side_is_two_sample_too() -> None:
    rng = np.random.default_rng(13)
    component = SequentialRule(
        CRASH_FREE,
        BaselineData.from_observation(Observation(value=0.995, count=19_900, total=20_000)),
        "proportion",
        0.01,
        horizon=60,
    ).components[0]
    assert component.ladder and component.bets == "two_sample"  # not only its words
    # at the boundary: crash-free exactly 1% lower than the baseline's (the failure share x ~3)
    at_bound = 1.0 + 0.01 * 0.995 / 0.005
    fails = sum(_crash_window(rng, 0.1, at_bound) for _ in range(200))
    assert fails / 200 <= 0.1
    assert sum(_crash_window(rng, 0.005, 6.0) for _ in range(20)) >= 19

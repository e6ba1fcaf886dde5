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
    from agent.analysis import Policy, judge
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

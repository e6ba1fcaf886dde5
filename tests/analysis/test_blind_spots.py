"""Whether an absolute rate bound is below what its rule can detect does not depend on
whether the background runs happened to see an error (the audit's 12 identical
environments: 3 warned, the 9 whose baseline was clean did not)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.observe import merge

RULE = Rule("errors", "checks", "error_rate", max=0.03)


def runs(errors: int, periods: int = 6, size: int = 10) -> Observation:
    """`periods` background runs of `size` probes, `errors` of them failed in all."""
    return merge(
        [
            Observation(value=(1 if i < errors else 0) / size, count=int(i < errors), total=size)
            for i in range(periods)
        ]
    )


@pytest.mark.parametrize("errors", [0, 1, 2])
def test_an_absolute_bound_it_cannot_see_is_said_whatever_the_baseline_saw(errors: int) -> None:
    judge = Judge([RULE], {"errors": runs(errors)}, Policy("sequential"), horizon=30)
    said = judge.blind_spots({"errors": 10.0})
    assert len(said) == 1 and said[0].startswith("rule errors: its max bound is tighter"), said


def test_an_absolute_bound_it_can_see_is_not_said() -> None:
    judge = Judge([RULE], {"errors": runs(0)}, Policy("sequential"), horizon=600)
    assert judge.blind_spots({"errors": 100.0}) == []


def latency_runs(quantile: float, periods: int = 12, size: int = 10) -> Observation:
    """`periods` background runs of `size` latencies around 30 ms (fixed seed)."""
    rng = np.random.default_rng(1)
    found = []
    for _ in range(periods):
        values = rng.lognormal(np.log(0.03), 0.3, size)
        value = float(np.quantile(values, quantile))
        found.append(Observation(value, values=tuple(values.tolist()), quantile=quantile))
    return merge(found)


@pytest.mark.parametrize(
    ("rule", "quantile", "per_round", "said"),
    [
        # it read "latency_p95 +99% or more" (and "+14286%" for a max far above a fast
        # baseline): a percentage of the baseline for a bound written in seconds
        (Rule("p95", "checks", "latency_p95", max=0.06), 0.95, 1.0, "latency_p95 82ms or more"),
        (Rule("p50", "checks", "latency_p50", min=0.028), 0.5, 10.0, "latency_p50 24ms or less"),
    ],
)
def test_an_absolute_latency_bound_says_what_it_can_see_in_the_rules_units(
    rule: Rule, quantile: float, per_round: float, said: str
) -> None:
    judge = Judge([rule], {rule.name: latency_runs(quantile)}, Policy("sequential"), horizon=10)
    [warning] = judge.blind_spots({rule.name: per_round})
    # what it can see ends its first clause; whether it can pass is said after it
    assert warning.partition("; and it cannot pass")[0].endswith(f": {said}"), warning
    assert "%" not in warning


def test_a_relative_latency_bound_still_says_a_change_from_its_baseline() -> None:
    rule = Rule("p95", "checks", "latency_p95", max_increase=0.2)
    judge = Judge([rule], {"p95": latency_runs(0.95)}, Policy("sequential"), horizon=10)
    [warning] = judge.blind_spots({"p95": 2.0})
    # the figure itself is test_detectable's: here, that it is a change from the baseline
    seen = warning.partition("; and it cannot pass")[0]
    assert re.search(r": latency_p95 \+\d+% or more$", seen), warning

"""A rule's `min_samples` as each policy reads it, through the judge: `threshold` counts
them in each round, `sequential` (either `pass_on`) and `fixed` over the window so far;
the README's rules paragraph says so."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge

THRESHOLD = Policy("threshold", failure_limit=3)
OVER_THE_WINDOW = [
    Policy("sequential", confidence=0.99),
    Policy("sequential", confidence=0.99, pass_on="no_failure"),
    Policy("fixed", confidence=0.98),
]
ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.01, min_samples=500)
P95 = Rule("p95", "checks", "latency_p95", max=0.1, min_samples=20)
BARE = Rule("http-5xx", "prometheus", "error_rate", max=0.01, min_samples=5)


def rate(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def slow(probes: int) -> Observation:
    values = (0.5,) * probes
    return Observation(0.5, values=values, quantile=0.95, total=probes)


def rounds_of(rule: Rule, obs: Observation, count: int) -> list[dict[str, Observation]]:
    return [{rule.name: obs}] * count


def test_threshold_counts_them_in_each_round() -> None:
    """800 probes at 50% errors over 8 rounds, never 500 in one: no round is judged; one
    round of 500 is (`no round with …` is the threshold policy's own words)."""
    small = judge([ERRORS], {}, rounds_of(ERRORS, rate(50, 100), 8), THRESHOLD, final=True)
    assert small.decision == "inconclusive"
    assert small.rules[0].detail.startswith("no round with at least 500 samples")
    big = rounds_of(ERRORS, rate(250, 500), 3)
    assert judge([ERRORS], {}, big, THRESHOLD, final=True).decision == "fail"
    latency = judge([P95], {}, rounds_of(P95, slow(5), 8), THRESHOLD, final=True)
    assert latency.decision == "inconclusive", latency.reason
    assert latency.rules[0].detail.startswith("no round with at least 20 samples")


@pytest.mark.parametrize("policy", OVER_THE_WINDOW, ids=["sequential", "no_failure", "fixed"])
def test_sequential_and_fixed_count_them_over_the_window(policy: Policy) -> None:
    """100 probes a round at 50% errors: 4 rounds hold 400 of the 500 needed and the rule
    is not judged, even at the window's end; 8 rounds fail it, no round holding 500."""
    short = judge([ERRORS], {}, rounds_of(ERRORS, rate(50, 100), 4), policy, final=True)
    assert short.decision == "inconclusive"
    assert short.rules[0].detail == "400 samples so far, 500 needed"
    enough = rounds_of(ERRORS, rate(50, 100), 8)
    assert judge([ERRORS], {}, enough, policy, final=True).decision == "fail"
    # a latency's samples are its probe times: 4 rounds of 5 slow probes are 20
    latency = judge([P95], {}, rounds_of(P95, slow(5), 3), policy, final=True)
    assert latency.rules[0].detail == "15 samples so far, 20 needed"
    latency = judge([P95], {}, rounds_of(P95, slow(5), 4), policy, final=True)
    assert latency.decision == "fail", latency.reason


@pytest.mark.parametrize("policy", OVER_THE_WINDOW, ids=["sequential", "no_failure", "fixed"])
def test_a_bare_value_counts_its_rounds_with_data(policy: Policy) -> None:
    """A Prometheus figure has no count: each round with data is one sample over the
    window, and the threshold policy, which counts a round's, judges every round."""
    bad = Observation(0.2)
    short = judge([BARE], {}, rounds_of(BARE, bad, 3), policy, final=True)
    assert short.rules[0].detail == "3 samples so far, 5 needed"
    assert judge([BARE], {}, rounds_of(BARE, bad, 6), policy, final=True).decision == "fail"
    assert judge([BARE], {}, rounds_of(BARE, bad, 3), THRESHOLD, final=True).decision == "fail"

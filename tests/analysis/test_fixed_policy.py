"""The fixed policy (Kayenta-like): one test at the end, significance and effect size."""

from __future__ import annotations

import numpy as np

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge

FIXED = Policy("fixed", confidence=0.98)
ERRORS = Rule("errors", "checks", "error_rate", max_increase=0.2)
P95 = Rule("p95", "checks", "latency_p95", max_increase=0.1)


def rate(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def latency(values: np.ndarray) -> Observation:
    vals = tuple(float(v) for v in values)
    return Observation(float(np.percentile(vals, 95)), values=vals, quantile=0.95, total=len(vals))


def test_nothing_is_decided_before_the_end() -> None:
    rounds = [{"errors": rate(50, 100)}] * 10
    verdict = judge([ERRORS], {"errors": rate(1, 1000)}, rounds, FIXED, final=False)
    assert verdict.decision == "continue"
    assert verdict.rules[0].outcome == "pass"


def test_a_clear_regression_fails_at_the_end() -> None:
    rounds = [{"errors": rate(5, 100)}] * 10
    verdict = judge([ERRORS], {"errors": rate(10, 1000)}, rounds, FIXED, final=True)
    assert verdict.decision == "fail"
    assert verdict.reason.startswith("errors: error_rate 0.05 past max_increase 20% at the end")
    assert verdict.rules[0].evidence["test"] == "two-proportion z"
    assert verdict.rules[0].evidence["p_value"] < 0.01


def test_significant_but_smaller_than_allowed_passes() -> None:
    base = {"errors": rate(100_000, 10_000_000)}  # 1.0%
    rounds = [{"errors": rate(11_000, 1_000_000)}] * 10  # 1.1%: p ~ 0, effect +10% < 20%
    assert judge([ERRORS], base, rounds, FIXED, final=True).decision == "pass"


def test_latency_uses_mann_whitney() -> None:
    rng = np.random.default_rng(2)
    base = {"p95": latency(rng.lognormal(-2.5, 0.6, 2000))}
    slow = [{"p95": latency(1.5 * rng.lognormal(-2.5, 0.6, 100))} for _ in range(10)]
    same = [{"p95": latency(rng.lognormal(-2.5, 0.6, 100))} for _ in range(10)]
    failed = judge([P95], base, slow, FIXED, final=True)
    assert failed.decision == "fail"
    assert failed.rules[0].evidence["test"] == "mann-whitney"
    assert judge([P95], base, same, FIXED, final=True).decision == "pass"


def test_bare_values_are_compared_once_as_the_window_mean() -> None:
    rule = Rule("http-5xx", "prometheus", "error_rate", max=0.01)
    spiky = [{"http-5xx": Observation(v)} for v in (0.0, 0.05, 0.0, 0.0)]  # mean 0.0125
    calm = [{"http-5xx": Observation(v)} for v in (0.0, 0.02, 0.0, 0.0)]  # mean 0.005
    assert judge([rule], {}, spiky, FIXED, final=False).decision == "continue"
    verdict = judge([rule], {}, spiky, FIXED, final=True)
    assert verdict.decision == "fail" and verdict.rules[0].evidence["test"] == "threshold"
    assert judge([rule], {}, calm, FIXED, final=True).decision == "pass"

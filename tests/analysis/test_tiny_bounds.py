"""A bound so small that a round's allowed share of it underflows (an error-rate `max` of
1e-309, as hypothesis draws one) is judged as a small one is: its evidence and its "can
detect" figure are worked out without the ratio count / (n x level), which overflowed. The
overflow gave a NaN bet (0 x inf: 25 rounds of errors never failed) or an infinite one (a
fail on the first error), and a NaN "can detect" search."""

from __future__ import annotations

import math
import warnings

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.analysis.sequential import BaselineData, SequentialRule

POLICY = Policy("sequential", confidence=0.99)
TINY = [5e-324, 1e-320, 2.2250738585072014e-309, 1e-300]


def _decision(bound: float, count: int, total: int, rounds: int) -> str:
    rule = Rule("errors", "checks", "error_rate", max=bound)
    obs = Observation(count / total, count=count, total=total)
    base = {"errors": Observation(0.0, count=0, total=1)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        return judge([rule], base, [{"errors": obs}] * rounds, POLICY, final=True).decision


@pytest.mark.parametrize("bound", TINY)
def test_a_tiny_max_is_judged_as_a_small_one(bound: float) -> None:
    """Before: 5e-324 never failed 25 rounds all errors; 1e-320 and 2.2e-309 failed on one
    error (1e-300: inconclusive, as a round's bet is capped)."""
    assert _decision(bound, 1, 1, 25) == _decision(1e-20, 1, 1, 25) == "fail"
    assert _decision(bound, 1, 1, 1) == _decision(1e-20, 1, 1, 1) == "inconclusive"
    assert _decision(bound, 0, 500, 25) == "inconclusive"
    assert _decision(bound, 1, 500, 25) == "fail"


@pytest.mark.parametrize("bound", TINY)
@pytest.mark.parametrize("per_round", [1.0, 500.0])
def test_what_a_tiny_max_can_detect_is_a_number_or_nothing(bound: float, per_round: float) -> None:
    """Before: overflow in the binomial moments' ratio, then NaN evidence in the search."""
    rule = Rule("errors", "checks", "error_rate", max=bound)
    seq = SequentialRule(
        rule, BaselineData(value=0.0, count=0.0, total=1.0), "proportion", 0.01, horizon=25
    )
    state = seq.start()
    state["samples"] = per_round * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        found = seq.detectable(state, 5)
    assert found is not None
    assert not math.isnan(found.value) and not math.isnan(found.effect), found
    assert "nan" not in found.text.lower(), found

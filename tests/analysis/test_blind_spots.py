"""Whether an absolute rate bound is below what its rule can detect does not depend on
whether the background runs happened to see an error (the audit's 12 identical
environments: 3 warned, the 9 whose baseline was clean did not)."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule, merge
from agent.analysis.judge import Judge

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

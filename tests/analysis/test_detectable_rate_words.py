"""What a rate rule can detect is said in % in free text, as the rule's observed value and
bound are beside it (`common.units.format_value`): registration's warning said `error_rate
0.0918 or more` beside `max 5%`, leaving the sum to the reader."""

from __future__ import annotations

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.types import Observation, Policy, Rule


def _warning(rule: Rule, base: Observation, per_round: float) -> str:
    (said,) = Judge([rule], {rule.name: base}, Policy("sequential"), horizon=10).blind_spots(
        {rule.name: per_round}
    )
    return said


def test_a_rates_detectable_change_is_said_in_percent_at_registration() -> None:
    """Failed before: '... (20 samples a round): error_rate 0.824 or more'."""
    rule = Rule("errors", "checks", "error_rate", max_increase=1.0)
    base = merge([Observation(value=0.0, count=0, total=20) for _ in range(15)])
    said = _warning(rule, base, 20.0).partition("; and")[0]
    assert said.endswith("(20 samples a round): error_rate 82.4% or more"), said


def test_an_absolute_rates_detectable_value_is_said_in_percent() -> None:
    """Failed before: '... (3 samples a round): error_rate 0.212 or more'."""
    rule = Rule("errors", "checks", "error_rate", max=0.01)
    base = merge([Observation(value=0.002, count=1, total=500) for _ in range(10)])
    said = _warning(rule, base, 3.0).partition("; and")[0]
    assert said.endswith("(3 samples a round): error_rate 21.2% or more"), said

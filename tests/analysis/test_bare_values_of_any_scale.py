"""A provider's bare figure (a New Relic p95 in seconds, a Prometheus query) is judged by
the sequential policy whatever its scale and sign. The value test bet only on bounds below
1 (a proportion's levels): a p95 of 3 s against `max: 2s`, or three times its baseline of
1 s, ended every window `inconclusive` under the default policy, where threshold and fixed
failed it; a bound below 0 (a Prometheus delta's `max: -1`) had no test at all."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge

SEQUENTIAL = Policy("sequential", confidence=0.99)
ROUNDS = 20


def decide(rule: Rule, values: list[float], baseline: float | None = None) -> str:
    rounds = [{rule.name: Observation(v)} for v in values]
    base = {rule.name: Observation(baseline)} if baseline is not None else {}
    return judge([rule], base, rounds, SEQUENTIAL, final=True, horizon=ROUNDS).decision


@pytest.mark.parametrize(
    ("rule", "bad", "good", "baseline"),
    [
        (Rule("p95", "newrelic", "p95_duration", max=2.0), 6.0, 1.5, None),
        (Rule("queue", "prometheus", "query", max=100.0), 300.0, 40.0, None),
        (Rule("p95", "newrelic", "p95_duration", max_increase=0.5), 3.0, 1.1, 1.0),
        (Rule("queue", "prometheus", "query", max_increase=0.5), 30.0, 11.0, 10.0),
    ],
    ids=["max-2s", "max-100", "relative-1s", "relative-10"],
)
def test_a_bare_value_past_a_bound_of_1_or_more_fails(
    rule: Rule, bad: float, good: float, baseline: float | None
) -> None:
    assert decide(rule, [bad] * ROUNDS, baseline) == "fail"
    assert decide(rule, [good] * ROUNDS, baseline) == "pass"


def test_a_value_that_goes_negative_is_judged_against_a_bound_below_0() -> None:
    """A Prometheus `deriv()` or delta bounded by `max: -1`: every round at 0 fails it (as
    threshold and fixed do), every round at -3 passes; a negative value under a positive
    `max` counts as within it."""
    rule = Rule("drift", "prometheus", "query", max=-1.0)
    assert decide(rule, [0.0] * ROUNDS) == "fail"
    assert decide(rule, [-3.0] * ROUNDS) == "pass"
    assert decide(Rule("drift", "prometheus", "query", max=10.0), [-3.0] * ROUNDS) == "pass"

"""A relative error bound judged at rounds far smaller than its baseline's periods (1 s
rounds against 30 s background runs, 30 s rounds against a provider's minute buckets):
its period-rank test could never score a round, so its levels go back to the two-sample
test from the first round (`SequentialRule._unranked`), where they sat unused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis.observe import merge
from agent.analysis.period_ranks import PeriodRanks
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

RULE = Rule("errors", "checks", "error_rate", max_increase=0.1)
ALPHA = 0.005


def _baseline() -> BaselineData:
    """60 calm periods of 30 s at 10 req/s, 1% errors."""
    rng = np.random.default_rng(3)
    periods = [
        Observation(value=c / 300, count=int(c), total=300, seconds=30.0)
        for c in rng.binomial(300, 0.01, size=60)
    ]
    base = BaselineData.from_observation(merge(periods))
    assert base is not None
    return base


def _judged(rule: SequentialRule, rounds: list[tuple[int, int]]) -> tuple[float, int | None]:
    """(the rule's always-valid p-value, the round it failed at) after `rounds`."""
    state = rule.start()
    for k, (bad, n) in enumerate(rounds):
        rule.step(state, Observation(bad / n, count=bad, total=n, seconds=1.0), k)
    return rule.p_value(state), rule.failed_at(state)[0]


def test_one_second_rounds_give_the_period_ranks_level_back_to_the_two_sample_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Errors x3 in rounds of 10 requests (one second at 10 req/s): the rule's p-value and
    the round it fails at are those of the same rule with no period-rank test at all.
    Failed before: its p-value was 1 / 0.65 times theirs (the ranks' 0.35 of the
    two-sample e-process, never spent), and it failed later."""
    base = _baseline()
    ranked = SequentialRule(RULE, base, "proportion", ALPHA, horizon=900)
    assert any(c.test == "periods" for c in ranked.components)
    rng = np.random.default_rng(4)
    rounds = [(int(rng.binomial(10, 0.03)), 10) for _ in range(400)]
    p, failed = _judged(ranked, rounds)
    monkeypatch.setattr(PeriodRanks, "of", lambda *_: None)
    alone = SequentialRule(RULE, base, "proportion", ALPHA, horizon=900)
    assert not any(c.test == "periods" for c in alone.components)
    p_alone, failed_alone = _judged(alone, rounds)
    assert math.log(p) == pytest.approx(math.log(p_alone), abs=1e-9)
    assert failed == failed_alone


def test_rounds_as_large_as_the_periods_keep_their_period_rank_test() -> None:
    """30 s rounds at the periods' traffic are ranked: the ranks test keeps its level, and
    the two-sample test's wealth starts at 1."""
    rule = SequentialRule(RULE, _baseline(), "proportion", ALPHA, horizon=30)
    state = rule.start()
    rule.step(state, Observation(3 / 310, count=3, total=310, seconds=30.0), 0)
    assert "off" not in state["tests"]["max_increase:periods"]
    assert state["tests"]["max_increase:periods"]["seen"][1] == [1]

"""A clean release watched briefly passes on evidence: the pass side's binomial sequence puts
weight on no event at all (`stats.binomial_cs_end`'s `none_weight`), sized to the window
(`stats.no_event_weight`), so a window of 20 rounds of 5 probes with none failed shows a
rate under 5% (the uniform mixture alone needed 126 probes: 0 of 100 read 6.24%), and a
release at the bound still passes in at most alpha of its windows, however often read."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis import Observation, Policy, Rule, stats
from agent.analysis.judge import Judge
from agent.analysis.sequential import SequentialRule


def _clean_window(rule: Rule, rounds: int, probes: int) -> tuple[str, str]:
    """(decision, the rule's detail) of a window of `rounds` rounds of `probes` probes,
    none failed, none slow (50 ms)."""
    judge = Judge([rule], {}, Policy(), horizon=rounds)
    state = judge.start()
    for k in range(rounds):
        if rule.metric == "error_rate":
            obs = Observation(0.0, count=0, total=probes)
        else:
            obs = Observation(0.05, values=(0.05,) * probes, quantile=0.95)
        state, verdict = judge.step(state, {rule.name: obs}, final=k == rounds - 1)
    return verdict.decision, verdict.rules[0].detail


@pytest.mark.parametrize(
    "rule",
    [
        Rule("probe-errors", "checks", "error_rate", max=0.05),
        Rule("health-latency", "checks", "latency_p95", max=0.5),
    ],
    ids=["error_rate", "latency_p95"],
)
def test_a_clean_10s_window_of_5_probes_a_round_passes(rule: Rule) -> None:
    """Failed before: `inconclusive`, 'error_rate upper bound 6.24% vs max 5%: not enough
    evidence' (0 of 100 probes failed), as the p95's share past 500 ms."""
    decision, detail = _clean_window(rule, 20, 5)
    assert decision == "pass", detail
    assert "upper bound 4.58%" in detail or "upper bound 0.0458" in detail, detail


def test_19_rounds_pass_and_18_do_not() -> None:
    """95 probes show it (at weight 0.9: 92 the least), 90 do not: the exact bound with no
    failure needs 90 at confidence 0.99 ((1 - 0.05)^90 < 0.01), more than any sequence can
    beat."""
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05)
    assert _clean_window(rule, 19, 5)[0] == "pass"
    assert _clean_window(rule, 18, 5)[0] == "inconclusive"


@pytest.mark.parametrize(
    ("limit", "least", "before"), [(0.05, 92, 126), (0.02, 233, 321), (0.01, 467, 644)]
)
def test_the_fewest_trials_with_no_event_that_show_a_limit(
    limit: float, least: int, before: int
) -> None:
    """At the most weight on no event (`NONE_WEIGHT_MOST`, 0.9) against the uniform mixture
    (`before`), and the exact bound 1 - alpha^(1/N) (weight 1, what no sequence beats)
    short of it by 2.5% of them."""

    def end(n: int, w: float) -> float:
        return stats.binomial_cs_end(0.0, n, 0.01, upper=True, none_weight=w)

    assert end(least, 0.9) <= limit < end(least - 1, 0.9)
    assert end(before, 0.0) <= limit < end(before - 1, 0.0)
    exact = math.ceil(math.log(0.01) / math.log1p(-limit))
    assert exact <= least <= exact * 1.025
    assert end(exact, 1.0) == end(exact, 0.9)  # capped: one event still leaves a sequence


def test_the_weight_is_sized_to_the_window() -> None:
    """Nothing on no event where the uniform mixture shows the limit by 80% of the planned
    trials (the defaults' 30 rounds of 40: the same ends as before), all it may where even
    the exact bound cannot (100 planned: 80 < 90), and between, just enough."""
    assert stats.no_event_weight(0.05, 0.01, 1200) == 0.0
    assert stats.no_event_weight(0.05, 0.01, 158) == 0.0  # 126 / 0.8
    assert stats.no_event_weight(0.05, 0.01, 100) == stats.NONE_WEIGHT_MOST
    w = stats.no_event_weight(0.05, 0.01, 130)
    assert 0.0 < w < stats.NONE_WEIGHT_MOST
    assert stats.binomial_cs_end(0.0, 105, 0.01, upper=True, none_weight=w) <= 0.05
    assert stats.binomial_cs_end(0.0, 105, 0.01, upper=True) > 0.05


def test_the_judge_reads_the_weight_its_first_round_sized() -> None:
    """The weight is fixed at the window's first round (its rounds times that round's
    samples: nothing said of the rate), so later rounds' sizes leave it be; an event
    moves the end onto the uniform mixture at (1 - w) of the level."""
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05)
    tests = SequentialRule(rule, None, "proportion", 0.01, horizon=20, pass_alpha=0.01)
    state = tests.start()
    for k, (bad, total) in enumerate([(0, 5), (0, 50), (0, 5), (1, 50)]):
        tests.step(state, Observation(bad / total, count=bad, total=total), k)
    (key,) = state["passes"]
    assert state["passes"][key]["w0"] == stats.no_event_weight(0.05, 0.01, 100) == 0.9
    (test,) = tests.passes
    end = tests.interval(test, state)
    assert end is not None
    d = tests._spread(test, state["passes"][key])  # the rounds' design effect
    assert end[1] == stats.binomial_cs_end(1.0 / d, 110.0 / d, 0.01 * (1 - 0.9), upper=True)


def _most_passing(limit: float, alpha: float, w: float, per_round: int, rounds: int) -> list[int]:
    """After each round, the most events whose end is at or below `limit` (-1: none)."""
    out = []
    for t in range(1, rounds + 1):
        n, lo, hi = per_round * t, -1, per_round * t
        while hi - lo > 1:
            mid = (lo + hi) // 2
            end = stats.binomial_cs_end(mid, n, alpha, upper=True, none_weight=w)
            lo, hi = (mid, hi) if end <= limit else (lo, mid)
        out.append(lo)
    return out


@pytest.mark.parametrize("alpha", [0.05, 0.01])
@pytest.mark.parametrize(("rounds", "per_round"), [(20, 5), (26, 5), (60, 5), (30, 40)])
@pytest.mark.parametrize("times", [1.0, 1.2])
def test_a_release_at_or_past_the_bound_passes_in_at_most_alpha_of_its_windows(
    alpha: float, rounds: int, per_round: int, times: float
) -> None:
    """40,000 windows of each size (weights 0.9, 0.6, 0 and 0 at 0.01), events binomial at
    the bound (5%) or 1.2 times it, read after every round at the judge's weight for
    their size: the share ever showing the rate under the bound is at most alpha."""
    rng = np.random.default_rng(52)
    w = stats.no_event_weight(0.05, alpha, rounds * per_round)
    most = np.array(_most_passing(0.05, alpha, w, per_round, rounds))
    counts = rng.binomial(per_round, 0.05 * times, size=(40_000, rounds))
    passed = (np.cumsum(counts, axis=1) <= most).any(axis=1).mean()
    assert passed <= alpha, (w, passed)

"""The pass side's binomial confidence sequence (`stats.binomial_cs_end`): a share or rate
shows its bound holds on the binomial's own tail, and still at most alpha of the windows
of a release exactly at the bound ever pass, however often they are read."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis import Observation, Rule, stats
from agent.analysis.sequential import SequentialRule, _count_ends

ALPHA = 0.05
"""The simulations' level: large enough that a wrong pass is counted often (at 0.01 a
few thousand windows would see a handful)."""


def _least_passing(limit: float, per_round: int, rounds: int, design: float) -> list[int]:
    """After each round, the most events with the upper end at or below `limit`: the
    sequence's end only falls as events do, so a window passes then iff it holds no more."""
    out = []
    for t in range(1, rounds + 1):
        total, lo, hi = per_round * t, -1, per_round * t
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ends = _ends_of(mid, total, design)
            lo, hi = (mid, hi) if ends <= limit else (lo, mid)
        out.append(lo)
    return out


def _ends_of(bad: float, total: float, design: float) -> float:
    return stats.binomial_cs_end(bad / design, total / design, ALPHA, upper=True)


@pytest.mark.parametrize(
    ("limit", "per_round", "rho"),
    [(0.05, 40, 0.0), (0.01, 320, 0.0), (0.3, 12, 0.0), (0.05, 40, 0.05), (0.05, 320, 0.01)],
)
def test_a_release_exactly_at_the_bound_passes_in_at_most_alpha_of_its_windows(
    limit: float, per_round: int, rho: float
) -> None:
    """20,000 windows of 60 rounds, each round's events binomial at exactly the limit (or
    beta-binomial, correlated within the round by `rho`, its counts divided by the design
    effect 1 + (n - 1) rho, as the judge divides them): the share of windows whose upper
    end is ever at or below the limit, read after every round, is at most alpha."""
    rng = np.random.default_rng(47)
    windows, rounds = 20_000, 60
    design = 1.0 + (per_round - 1) * rho
    if rho:
        k = (1.0 - rho) / rho
        rates = rng.beta(limit * k, (1.0 - limit) * k, size=(windows, rounds))
        counts = rng.binomial(per_round, rates)
    else:
        counts = rng.binomial(per_round, limit, size=(windows, rounds))
    most = np.array(_least_passing(limit, per_round, rounds, design))
    passed = (np.cumsum(counts, axis=1) <= most).any(axis=1).mean()
    assert passed <= ALPHA


def test_the_judges_ends_are_that_sequence_at_its_level() -> None:
    """`SequentialRule`'s share ends read the same function: a `max` on a latency's p95
    after rounds of 40 samples, 7 of 400 past the bound, at the test's own alpha."""
    rule = Rule("p95", "checks", "latency_p95", max=0.3)
    tests = SequentialRule(rule, None, "distribution", 0.01, horizon=10)
    state = tests.start()
    for i in range(10):
        values = (0.5,) * (1 if i < 7 else 0) + (0.1,) * (40 if i >= 7 else 39)
        tests.step(state, Observation(0.1, values=values, quantile=0.95), i)
    (test,) = tests.passes
    (reached,) = tests.evidence_bounds(state)
    assert reached.value == _count_ends(test, 7.0, 400.0, 1.0, one=True)[1]
    assert reached.value == stats.binomial_cs_end(7.0, 400.0, 0.01, upper=True)


def test_seven_of_four_hundred_past_a_p95_bound_show_it_holds_in_ten_rounds() -> None:
    """A 5-minute window at 30 s rounds of 40 probes: 7 of its 400 samples past `max 300ms`
    (1.75% against the 5% a p95 allows) show the bound holds at confidence 0.99. The
    normal-mixture sequence floored at the limit's binomial variance reached an upper end
    of 0.0567 and showed at most 4 (`bench/aa_pass.py --window 5m`: 4% of healthy windows
    inconclusive on this rule alone)."""
    rule = Rule("health-latency", "checks", "latency_p95", max=0.3)
    tests = SequentialRule(rule, None, "distribution", 0.01, horizon=10)
    state = tests.start()
    for i in range(10):
        past = 1 if i < 7 else 0
        values = (0.5,) * past + (0.06,) * (40 - past)
        tests.step(state, Observation(0.06, values=values, quantile=0.95), i)
    (reached,) = tests.evidence_bounds(state)
    assert reached.holds, reached.value
    assert reached.value is not None and reached.value < 0.05


def test_a_pass_state_stored_before_its_counts_reads_and_folds_on() -> None:
    """A window's state stored by an agent before the counts were kept (no "bad": a daemon
    upgraded mid-window resumes it) counts its rounds so far at their mean, and folds on."""
    rule = Rule("errors", "checks", "error_rate", max=0.05)
    tests = SequentialRule(rule, None, "proportion", 0.01, horizon=30)
    new, old = tests.start(), tests.start()
    for state in (new, old):
        for i in range(5):
            tests.step(state, Observation(0.025, count=1, total=40), i)
    (key,) = old["passes"]
    del old["passes"][key]["bad"]
    assert tests.evidence_bounds(old) == tests.evidence_bounds(new)
    for state in (new, old):
        tests.step(state, Observation(0.0, count=0, total=40), 5)
    assert old["passes"][key]["bad"] == new["passes"][key]["bad"] == 5.0


def test_all_events_in_more_trials_than_it_computes_on_end_at_one() -> None:
    """Scaled down to `CS_LARGEST` trials, a rate 1e-16 short of all events starts its
    search at p = 1: the upper end is 1, not a math domain error (test_extreme_observations'
    hypothesis case: 1e18 of 1e18, then 0 of 65)."""
    assert stats.binomial_cs_end(1e18, 1e18 + 65, 0.01, upper=True) == 1.0
    assert stats.binomial_cs_end(0.0, 1e18 + 65, 0.01, upper=False) == 0.0


def test_the_upper_end_stops_once_newton_has_converged_on_the_ruled_out_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Newton's steps reach the end from above, where the bracket's foot (the observed
    rate) never moved: a stop on the bracket's width alone took ~25 halvings after them,
    ~20 betainc calls an end (40% of the judge's advance). The end stops on Newton's
    converged step instead, still a rate the sequence rules out (its log mixture at or past
    log(1 / alpha)) and within `CS_TOLERANCE` of the rate where it reaches it."""
    special = stats._special()
    calls = []

    class Counted:
        def __getattr__(self, name: str) -> object:
            return getattr(special, name)

        def betainc(self, a: float, b: float, p: float) -> float:
            calls.append(p)
            return float(special.betainc(a, b, p))

    monkeypatch.setattr(stats, "_special", Counted)
    cases = [
        (count, total, alpha)
        for total in (40.0, 400.0, 1e5, 1e9)
        for count in (0.0, 1.0, 7.0, total / 20, total / 2, total - 1)
        for alpha in (0.001, 0.01, 0.05)
    ]
    for count, total, alpha in cases:
        stats._binomial_upper_end.cache_clear()
        end = stats.binomial_cs_end(count, total, alpha, upper=True)
        if end >= 1.0:  # every rate ruled in: the top, nothing to search
            continue
        a, b = count + 1.0, total - count + 1.0

        def excess(p: float, a: float = a, b: float = b, alpha: float = alpha) -> float:
            """The search's own log mixture less log(1 / alpha), term for term."""
            needed = math.log(1.0 / alpha) - float(special.betaln(a, b))
            log_tail = math.log(float(special.betainc(a, b, p)))
            return log_tail - a * math.log(p) - (b - 1.0) * math.log1p(-p) - needed

        assert excess(end) >= 0.0, (count, total, alpha)  # ruled out: safe side
        below = end * (1.0 - 10 * stats.CS_TOLERANCE)
        assert below <= count / total or excess(below) < 0.0, (count, total, alpha)
    stats._binomial_upper_end.cache_clear()
    # measured: 20.4 calls an end before (a stop on the bracket at 1e-9), 7.2 now
    assert len(calls) / len(cases) <= 8.0

"""An absolute `max`/`min` on a proportion or a distribution looks once at the window's end
(`FINAL_SHARE`), as the relative tests do: 31 errors in 300 requests against `max: 0.05`
(exact binomial p 1.3e-4) ended inconclusive when no e-process crossed."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from agent.analysis.judge import judge
from agent.analysis.sequential import SequentialRule
from agent.analysis.types import Observation, Policy, Rule

ALPHA = 0.005
"""One rule's share of the default budget with two rules (confidence 0.99)."""
MAX_RATE = Rule("errors", "checks", "error_rate", max=0.05)


def _counts(total: int, rounds: int, seed: int) -> list[int]:
    """`total` errors placed at random among `rounds` rounds of 10 requests."""
    rng = np.random.default_rng(seed)
    at = rng.choice(rounds * 10, total, replace=False)
    return [int(c) for c in np.bincount(at // 10, minlength=rounds)]


def _run(rule: SequentialRule, counts: list[int], *, success: bool = False) -> dict[str, Any]:
    state = rule.start()
    for k, c in enumerate(counts):
        good = 10 - c if success else c
        rule.step(state, Observation(value=good / 10, count=good, total=10), k)
    assert rule.failed_at(state) == (None, None)  # no e-process crossed: the look decides
    rule.finish(state, len(counts) - 1)
    return state


@pytest.mark.parametrize("seed", [1, 11])
def test_31_errors_of_300_against_a_max_fail_at_the_end(seed: int) -> None:
    """Saw fail before the look (no `alpha_final` for `max`: the window ended inconclusive)."""
    rule = SequentialRule(MAX_RATE, None, "proportion", ALPHA, horizon=30)
    (comp,) = rule.components
    assert comp.alpha_final > 0
    state = _run(rule, _counts(31, 30, seed))
    assert rule.failed_at(state) == (29, comp)
    assert rule.failed_at_end(state, comp)


def test_a_min_looks_at_the_complement() -> None:
    """`min: 0.95` on a success rate: 31 failures of 300 are its bad events."""
    rule = SequentialRule(
        Rule("ok", "checks", "error_rate", min=0.95), None, "proportion", ALPHA, horizon=30
    )
    (comp,) = rule.components
    assert comp.flip and comp.alpha_final > 0
    state = _run(rule, _counts(31, 30, 1), success=True)
    assert rule.failed_at(state) == (29, comp)


def test_a_window_at_its_bound_is_not_failed() -> None:
    """15 errors of 300 (the bound's own rate): the look finds nothing."""
    rule = SequentialRule(MAX_RATE, None, "proportion", ALPHA, horizon=30)
    state = _run(rule, _counts(15, 30, 3))
    assert rule.failed_at(state) == (None, None)


def test_a_latency_max_looks_at_samples_past_it() -> None:
    """`latency_p95 max: 2s`: 31 of 300 latencies past 2 s (the p95 allows 15)."""
    rule = SequentialRule(
        Rule("slow", "checks", "latency_p95", max=2.0), None, "distribution", ALPHA, horizon=30
    )
    (comp,) = rule.components
    assert comp.alpha_final > 0
    state = rule.start()
    for k, c in enumerate(_counts(31, 30, 1)):
        values = tuple([3.0] * c + [0.5] * (10 - c))
        rule.step(state, Observation(value=max(values), values=values), k)
    assert rule.failed_at(state) == (None, None)
    rule.finish(state, 29)
    assert rule.failed_at(state) == (29, comp)


def test_the_shares_stay_within_the_rules_budget() -> None:
    """Union bound: from the deploy, the e-detector and the look add up to the share; a
    window of unknown length has no last round to look at."""
    for kind, rule in (
        ("proportion", MAX_RATE),
        ("distribution", Rule("s", "c", "latency_p95", max=2.0)),
    ):
        (comp,) = SequentialRule(rule, None, kind, ALPHA, horizon=30).components  # type: ignore[arg-type]
        assert comp.alpha + comp.alpha_detector + comp.alpha_final == pytest.approx(ALPHA)
        (unknown,) = SequentialRule(rule, None, kind, ALPHA, horizon=0).components  # type: ignore[arg-type]
        assert unknown.alpha_final == 0


def test_bursty_windows_at_the_bound_fail_within_the_looks_level() -> None:
    """A/A at exactly the bound, errors bursty within rounds (each round's rate
    Beta-distributed around 0.05): the look fails at most its level (3 sd of slack), at a
    large level so 600 windows measure it."""
    rng = np.random.default_rng(7)
    rule = SequentialRule(MAX_RATE, None, "proportion", 0.2, horizon=30)
    (comp,) = rule.components
    looks = 0
    for _ in range(600):
        counts = rng.binomial(10, rng.beta(0.05 * 5, 0.95 * 5, 30))
        state = rule.start()
        for k, c in enumerate(counts):
            rule.step(state, Observation(value=c / 10, count=int(c), total=10), k)
        rule.finish(state, 29)
        _, failed = rule.failed_at(state)
        looks += failed is not None and rule.failed_at_end(state, failed)
    level = comp.alpha_final
    assert looks / 600 <= level + 3 * (level * (1 - level) / 600) ** 0.5


def test_the_judge_says_it_was_the_count_against_the_bound() -> None:
    """Through the judge: the verdict names the look and its test (it read "the two-sample
    count test" for a `max`, which has no baseline to compare with)."""
    rounds = [{"errors": Observation(value=c / 10, count=c, total=10)} for c in _counts(31, 30, 1)]
    policy = Policy("sequential", confidence=0.995)
    verdict = judge([MAX_RATE], {}, rounds, policy, final=True, horizon=30)
    assert verdict.decision == "fail"
    assert re.search(
        r"at the window's end after [\d,]+ probes: p-value \S+, at most \S+ needed$", verdict.reason
    ), verdict.reason
    (rule_verdict,) = verdict.rules
    assert "the count of bad events against the bound over the whole window" in rule_verdict.detail
    (component,) = rule_verdict.evidence["components"]
    assert component["final_test"] == (
        "the count of bad events against the bound over the whole window"
    )
    assert component["final_p_value"] <= component["final_alpha"]

"""The sequential policy: evidence, not one noisy round; tolerance; the same code as the bench."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.analysis.observe import merge

SEQUENTIAL = Policy("sequential", confidence=0.99)
ERRORS = Rule("errors", "checks", "error_rate", max_increase=0.2)


def rate(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def baseline(failed: int, total: int) -> Observation:
    return rate(failed, total)


def rounds_of(rule: Rule, observations: list[Observation]) -> list[dict[str, Observation]]:
    return [{rule.name: o} for o in observations]


def first_failure(
    rules: list[Rule], baselines: dict[str, Observation], rounds: list[dict[str, Observation]]
) -> int | None:
    """Call the judge once per round, as the daemon does; the round (1-based) it fails at."""
    for i in range(1, len(rounds) + 1):
        if (
            judge(rules, baselines, rounds[:i], SEQUENTIAL, final=i == len(rounds)).decision
            == "fail"
        ):
            return i
    return None


def test_a_clear_error_regression_fails_within_a_few_rounds() -> None:
    base = {"errors": baseline(100, 10_000)}  # 1%
    rounds = rounds_of(ERRORS, [rate(10, 100)] * 20)  # 10%
    at = first_failure([ERRORS], base, rounds)
    assert at is not None and at <= 4
    verdict = judge([ERRORS], base, rounds[:at], SEQUENTIAL, final=False)
    # the bound: the baseline's estimate +20%, the baseline's uncertainty in the test itself
    head = "errors: error_rate 10% > 1.2% (baseline 1% +20%) after "
    assert verdict.reason.startswith(head)
    # what was found, how sure and against what, in words on-call reads (no method's jargon)
    assert re.search(r" probes: evidence [\d,.]+ to 1, [\d,.]+ needed$", verdict.reason)
    assert "likelihood ratio" not in verdict.reason
    evidence = verdict.rules[0].evidence
    assert evidence["likelihood_ratio"] >= evidence["likelihood_ratio_needed"]
    assert evidence["p_value"] <= evidence["alpha"] == pytest.approx(0.01)
    assert evidence["effect"] == pytest.approx(9.0)


def test_one_noisy_round_against_an_absolute_bound_is_not_enough() -> None:
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05)
    one = judge([rule], {}, rounds_of(rule, [rate(1, 5)]), SEQUENTIAL, final=False)
    assert one.decision == "continue"  # 20% of 5 probes: the threshold policy would count it
    many = rounds_of(rule, [rate(3, 10)] * 10)
    assert first_failure([rule], {}, many) is not None


def test_a_significant_change_within_the_tolerance_passes() -> None:
    base = {"errors": baseline(10_000, 1_000_000)}  # 1.00%
    rounds = rounds_of(ERRORS, [rate(1_100, 100_000)] * 30)  # 1.10%: +10%, over 3M requests
    verdict = judge([ERRORS], base, rounds, SEQUENTIAL, final=True)
    assert verdict.decision == "pass"
    # one rule: not "all 1 rules" (a slip on-call reads in every pass of such a window)
    assert verdict.reason == "1 of 1 rule within bounds on evidence over 30 rounds"
    # one bounded bet per round (valid whatever happens within a round) needs a clear margin
    beyond = rounds_of(ERRORS, [rate(1_600, 100_000)] * 30)  # +60%
    assert judge([ERRORS], base, beyond, SEQUENTIAL, final=True).decision == "fail"


def test_latency_regression_fails_and_names_its_evidence() -> None:
    rng = np.random.default_rng(1)
    rule = Rule("p95", "checks", "latency_p95", max_increase=0.25)
    base = {"p95": merge([latency_obs(rng.lognormal(-2.5, 0.6, 100)) for _ in range(20)])}
    slow = [latency_obs(2 * rng.lognormal(-2.5, 0.6, 50)) for _ in range(30)]
    at = first_failure([rule], base, rounds_of(rule, slow))
    assert at is not None and at <= 8
    verdict = judge([rule], base, rounds_of(rule, slow[:at]), SEQUENTIAL, final=False)
    tests = {c["test"] for c in verdict.rules[0].evidence["components"]}
    assert tests == {
        "betting e-process on each round's mean placement (Mann-Whitney)",
        "betting e-process on each round's samples past the bound",
    }
    same = [latency_obs(rng.lognormal(-2.5, 0.6, 50)) for _ in range(60)]
    assert judge([rule], base, rounds_of(rule, same), SEQUENTIAL, final=True).decision == "pass"


def latency_obs(values: np.ndarray) -> Observation:
    vals = tuple(float(v) for v in values)
    return Observation(
        float(np.percentile(vals, 95)), values=vals, quantile=0.95, count=len(vals), total=len(vals)
    )


def test_absolute_latency_bound_tests_the_share_of_slow_samples() -> None:
    rule = Rule("p95", "checks", "latency_p95", max=0.3)
    fast = [latency_obs(np.full(20, 0.1)) for _ in range(40)]
    slow = [latency_obs(np.r_[np.full(10, 0.1), np.full(10, 0.5)]) for _ in range(10)]
    assert judge([rule], {}, rounds_of(rule, fast), SEQUENTIAL, final=True).decision == "pass"
    assert first_failure([rule], {}, rounds_of(rule, slow)) is not None


def test_decrease_direction_fails_on_a_drop_of_crash_free_sessions() -> None:
    rule = Rule("crash-free", "sentry", "crash_free_rate", max_increase=0.01, direction="decrease")
    base = {rule.name: rate(9_990, 10_000)}  # 99.9% crash-free
    drop = rounds_of(rule, [rate(950, 1_000)] * 5)  # 95%
    same = rounds_of(rule, [rate(999, 1_000)] * 30)
    at = first_failure([rule], base, drop)
    assert at is not None and at <= 5
    assert judge([rule], base, same, SEQUENTIAL, final=True).decision == "pass"


def test_nan_and_missing_data_are_inconclusive() -> None:
    rounds = rounds_of(ERRORS, [Observation(math.nan), Observation(None, error="429")])
    verdict = judge([ERRORS], {"errors": baseline(1, 100)}, rounds, SEQUENTIAL, final=True)
    assert verdict.decision == "inconclusive"
    assert verdict.rules[0].outcome == "inconclusive"


def test_min_samples_holds_back_a_failure() -> None:
    rule = Rule("probe-errors", "checks", "error_rate", max=0.01, min_samples=500)
    rounds = rounds_of(rule, [rate(50, 100)] * 4)
    assert judge([rule], {}, rounds, SEQUENTIAL, final=False).decision == "continue"
    assert judge([rule], {}, rounds * 2, SEQUENTIAL, final=False).decision == "fail"


def test_bare_values_get_a_sequential_test_of_their_mean() -> None:
    rule = Rule("http-5xx", "prometheus", "error_rate", max=0.01)
    rounds = rounds_of(rule, [Observation(0.2)] * 3)
    verdict = judge([rule], {}, rounds, Policy("sequential", failure_limit=3), final=False)
    assert verdict.decision == "fail"
    assert verdict.reason.startswith("http-5xx: error_rate 20% > max 1% after 3 rounds: evidence ")
    assert "e+" not in verdict.reason  # "likelihood ratio 2.34e+03 >= 526" read as jargon
    # the rule's detail (a breach alert's "why") names the bound it crossed, as the reason
    # does: it read "...; likelihood ratio 1.2e+03 reached 526", no bound in sight (the
    # method's name and its likelihood ratio stay in the evidence)
    assert "; error_rate > max 1%: evidence " in verdict.rules[0].detail
    assert "likelihood_ratio" in verdict.rules[0].evidence
    one_spike = rounds_of(rule, [Observation(0.2)] + [Observation(0.002)] * 29)
    assert judge([rule], {}, one_spike, SEQUENTIAL, final=True).decision != "fail"


def test_a_min_on_a_bare_value_that_is_not_a_rate_keeps_the_threshold_streak() -> None:
    rule = Rule("rps", "prometheus", "throughput", min=10.0)
    rounds = rounds_of(rule, [Observation(1.0)] * 3)
    verdict = judge([rule], {}, rounds, Policy("sequential", failure_limit=3), final=False)
    assert verdict.reason == "rps: throughput 1 < min 10 for 3 rounds"


def test_the_error_budget_is_split_between_rules() -> None:
    other = Rule("other", "checks", "error_rate", max=0.5)
    rounds = [{"errors": rate(1, 100), "other": rate(1, 100)}]
    verdict = judge([ERRORS, other], {"errors": baseline(1, 100)}, rounds, SEQUENTIAL, final=False)
    assert verdict.rules[0].evidence["alpha"] == pytest.approx(0.005)


def test_malformed_figures_cannot_fabricate_evidence() -> None:
    """Counts above their total are clipped; NaN latencies are dropped, not ranked last."""
    rule = Rule("p95", "checks", "latency_p95", max_increase=0.1)
    base = {"p95": latency_obs(np.linspace(0.05, 0.2, 500))}
    nan_round = Observation(0.1, values=(math.nan,) * 50 + (0.1,), quantile=0.95, total=51)
    verdict = judge([rule], base, rounds_of(rule, [nan_round] * 40), SEQUENTIAL, final=True)
    assert verdict.decision != "fail"
    assert verdict.rules[0].evidence["samples"] == 40
    over = Observation(0.02, count=500, total=100)  # a provider bug: more errors than requests
    rounds = rounds_of(ERRORS, [over] * 3)
    verdict = judge([ERRORS], {"errors": baseline(1, 100)}, rounds, SEQUENTIAL, final=True)
    assert verdict.rules[0].detail.startswith("300 of 300 probes failed")


def test_the_evidence_carries_the_effects_confidence_band_against_the_tolerance() -> None:
    """The deploy page draws this band: it narrows round by round around the true change."""
    base = {"errors": baseline(200, 20_000)}  # 1%
    rounds = rounds_of(ERRORS, [rate(1, 100)] * 40)  # the same 1%
    early = judge([ERRORS], base, rounds[:3], SEQUENTIAL, final=False).rules[0].evidence
    late = judge([ERRORS], base, rounds, SEQUENTIAL, final=False).rules[0].evidence
    assert (
        judge([ERRORS], base, rounds[:1], SEQUENTIAL, final=False)
        .rules[0]
        .evidence.get("effect_interval")
        is None
    )  # one round: no band yet
    for evidence in (early, late):
        lo, hi = evidence["effect_interval"]
        assert evidence["effect"] == pytest.approx(0.0)
        assert lo < 0.0 < hi
        assert evidence["tolerance"] == pytest.approx(0.2)
    assert late["effect_interval"][1] - late["effect_interval"][0] < (
        early["effect_interval"][1] - early["effect_interval"][0]
    )

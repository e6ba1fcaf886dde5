"""A rate bounded at its very end (`error_rate max: 0`, `crash_free_rate min: 1`) under the
sequential policy: under that null no bad event can ever happen, so the first one refutes it
(an infinite likelihood ratio) and fails the rule; never falsely, since under the null none
comes. Before, the bound got no test at all (its level was 0): a deploy failing 10% of its
probes ended `inconclusive` where `threshold` and `fixed` failed it. Passing on evidence
never shows a rate of exactly 0, so a clean window stays `inconclusive` (`no_failure`: it
passes), and the configuration and registration say so (`tests/config`,
`tests/test_foresight.py`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge, judge
from agent.analysis.sequential import SequentialRule

SEQUENTIAL = Policy("sequential", confidence=0.99)
ERRORS = Rule("errors", "checks", "error_rate", max=0.0)


def _counts(errors: list[int], total: int = 10) -> list[dict[str, Observation]]:
    return [{"errors": Observation(e / total, count=e, total=total)} for e in errors]


@pytest.mark.parametrize("policy", ["sequential", "threshold", "fixed"])
def test_a_deploy_failing_a_tenth_of_its_probes_fails_max_0_under_every_policy(
    policy: str,
) -> None:
    """Before: sequential ended inconclusive ("upper bound 0.1 vs max 0")."""
    rounds = _counts([1] * 30)
    verdict = judge([ERRORS], {}, rounds, Policy(policy), final=True, horizon=30)
    assert verdict.decision == "fail", verdict.reason


def test_the_first_error_fails_the_rule_at_its_round() -> None:
    judge_ = Judge([ERRORS], {}, SEQUENTIAL, horizon=30)
    state = judge_.start()
    for k, errors in enumerate([0, 0, 0, 0, 1]):
        state = judge_.advance(state, _counts([errors])[0], final=False)
        decision = judge_.glance(state, final=False).decision
        assert decision == ("fail" if k == 4 else "continue"), (k, decision)
    assert judge_.failed_round(state) == 4  # the fifth round (0-based)
    assert "error_rate 2% > max 0%" in judge_.verdict(state, final=False).reason


def test_a_window_without_errors_never_fails_and_passes_only_on_no_failure() -> None:
    rounds = _counts([0] * 30)
    on_evidence = judge([ERRORS], {}, rounds, SEQUENTIAL, final=True, horizon=30)
    assert on_evidence.decision == "inconclusive", on_evidence.reason
    assert on_evidence.reason.endswith(
        "errors: error_rate upper bound 2.13% vs max 0%: not enough evidence"
        " (no number of probes shows a rate of exactly 0)"
    ), on_evidence.reason
    no_failure = Policy("sequential", pass_on="no_failure")
    assert judge([ERRORS], {}, rounds, no_failure, final=True, horizon=30).decision == "pass"


def test_min_1_fails_at_the_first_bad_event_counts_and_bare_rates() -> None:
    """The mirror: a `min: 1` on a rate (its complement's `max: 0`), over counts and over a
    provider's bare rate figure; a figure of exactly 1 never fails it."""
    rule = Rule("crash-free", "sentry", "crash_free_rate", min=1.0, direction="decrease")
    crashed = [{"crash-free": Observation(1.0, count=500, total=500)}] * 3 + [
        {"crash-free": Observation(0.998, count=499, total=500)}
    ]
    assert judge([rule], {}, crashed, SEQUENTIAL, final=True, horizon=4).decision == "fail"
    bare = [{"crash-free": Observation(v)} for v in (1.0, 1.0, 0.999)]
    assert judge([rule], {}, bare, SEQUENTIAL, final=True, horizon=3).decision == "fail"
    clean = [{"crash-free": Observation(1.0)}] * 3
    assert judge([rule], {}, clean, SEQUENTIAL, final=True, horizon=3).decision != "fail"
    rate = Rule("errors", "prometheus", "error_rate", max=0.0)
    bare_errors = [{"errors": Observation(v)} for v in (0.0, 0.0, 0.001)]
    assert judge([rate], {}, bare_errors, SEQUENTIAL, final=True).decision == "fail"


def test_min_samples_holds_the_fail_until_they_are_in() -> None:
    rule = Rule("errors", "checks", "error_rate", max=0.0, min_samples=40)
    judge_ = Judge([rule], {}, SEQUENTIAL, horizon=30)
    state = judge_.start()
    for errors in [1, 0, 0]:
        state = judge_.advance(state, _counts([errors])[0], final=False)
        assert judge_.glance(state, final=False).decision == "continue"
    state = judge_.advance(state, _counts([0])[0], final=False)
    assert judge_.glance(state, final=False).decision == "fail"


def test_a_resumed_window_keeps_its_refuted_bound() -> None:
    """The infinite wealth is stored as the store writes it (`json.dumps`: Infinity) and a
    new judge resumes from it to the same decision."""
    judge_ = Judge([ERRORS], {}, SEQUENTIAL, horizon=30)
    state: Any = judge_.advance(judge_.start(), _counts([1])[0], final=False)
    state = json.loads(json.dumps(state))
    again = Judge([ERRORS], {}, SEQUENTIAL, horizon=30)
    state = again.advance(state, _counts([0])[0], final=False)
    assert again.glance(state, final=False).decision == "fail"
    assert again.failed_round(state) == 0  # the first round's error, before the restart


def test_it_can_detect_a_rate_caught_four_times_in_five_and_is_not_warned_blind() -> None:
    """It fails at the first error: a rate r is caught when one comes in the window's
    samples, 1 - (1 - r)^300 = 0.8 at 10 probes a round over 30 rounds; no test sees more,
    so the "bound below what it can detect" warning, which fired for any figure above 0,
    is not given (the rule's own warning is: `exact_rate_bounds`)."""
    rule = SequentialRule(ERRORS, None, "proportion", 0.01, horizon=30)
    state = rule.start()
    state["samples"] = 50.0
    found = rule.detectable(state, 5)
    assert found is not None
    assert found.value == pytest.approx(1 - 0.2 ** (1 / 300))
    assert found.text == "error_rate 0.535% or more", found
    base = {"errors": Observation(0.0, count=0, total=200, periods=20)}
    verdict = judge([ERRORS], base, _counts([0] * 5), SEQUENTIAL, final=False, horizon=30)
    can = verdict.rules[0].evidence["detectable"]
    assert can["bound_below_detectable"] is False, can


def test_registration_names_the_bound_that_can_only_fail_at_any_traffic() -> None:
    """One sentence for the rule, with a baseline or without, on evidence only."""
    judge_ = Judge([ERRORS], {}, SEQUENTIAL, horizon=30)
    said = judge_.blind_spots({})
    assert said == [
        "rule errors: error_rate max 0 can only fail: no number of probes shows a rate of"
        " exactly 0, so with pass_on: evidence every window it does not fail ends"
        " inconclusive, however good the release; use a bound such as max 0.001, or"
        " pass_on: no_failure"
    ]
    with_base = Judge(
        [ERRORS], {"errors": Observation(0.0, count=0, total=200, periods=20)}, SEQUENTIAL
    )
    assert with_base.blind_spots({"errors": 10.0}) == said
    sentry = Rule("errors", "sentry", "error_rate", max=0.0)
    [provider] = Judge([sentry], {}, SEQUENTIAL, horizon=30).blind_spots({})
    assert "no number of events shows a rate of exactly 0" in provider, provider
    assert "however good the release, unless its answers are bare figures; use" in provider
    no_failure = Judge([ERRORS], {}, Policy("sequential", pass_on="no_failure"), horizon=30)
    assert no_failure.blind_spots({}) == []


def test_a_tiny_bound_is_still_judged_as_a_small_one() -> None:
    """Only 0 itself is refuted by one event: 1e-300 still bets per expected event
    (`tests/analysis/test_tiny_bounds.py`), so one error in one round does not fail it."""
    tiny = Rule("errors", "checks", "error_rate", max=1e-300)
    one = [{"errors": Observation(1.0, count=1, total=1)}]
    assert judge([tiny], {}, one, SEQUENTIAL, final=True).decision == "inconclusive"
    assert judge([ERRORS], {}, one, SEQUENTIAL, final=True).decision == "fail"


@pytest.mark.parametrize("counted", [True, False])
def test_a_relative_bound_on_a_bare_zero_baseline_takes_the_threshold_policys_floor(
    counted: bool,
) -> None:
    """A provider's rate figure of exactly 0 without counts, `max_increase: 50%`: 0 x 1.5
    left the sequential test a level of 0, so it had none (can detect "no regression of
    any size") and a deploy failing 10% ended inconclusive, where threshold and fixed fail
    it past the floor they share, max(baseline x 1.5, baseline + 0.001). Now it is that
    bound's test; a deploy within it is not failed and passes on evidence in time."""
    rule = Rule("errors", "newrelic", "error_rate", max_increase=0.5)
    base = {"errors": Observation(0.0)}

    def rounds(rate: float, n: int = 30) -> list[dict[str, Observation]]:
        if counted:
            return [{"errors": Observation(rate, count=round(rate * 1000), total=1000)}] * n
        return [{"errors": Observation(rate)}] * n

    for policy in ("sequential", "threshold", "fixed"):
        verdict = judge([rule], base, rounds(0.1), Policy(policy), final=True, horizon=30)
        assert verdict.decision == "fail", (policy, verdict.reason)
    verdict = judge([rule], base, rounds(0.1), SEQUENTIAL, final=True, horizon=30)
    assert "0.1% (baseline 0% +50%)" in verdict.reason, verdict.reason
    clean = judge([rule], base, rounds(0.0, 300), SEQUENTIAL, final=True, horizon=300)
    assert clean.decision == "pass", clean.reason


@pytest.mark.parametrize("metric", ["error_count", "p95_duration", "error_rate"])
def test_a_bare_value_above_max_0_fails_and_zeros_pass_on_evidence(metric: str) -> None:
    """A provider's bare figure that is never negative (a count, a duration, a rate):
    under `max: 0` every one is 0 and the first above it fails the rule (it had no test: 30
    rounds of 5 ended inconclusive where threshold and fixed failed them). Figures of
    exactly 0 have no spread, so they pass on evidence. A value of either sign (a query's
    `cpu`, a delta) keeps the threshold streak: tests/analysis/test_signed_bare_values.py."""
    rule = Rule("m", "prometheus", metric, max=0.0)
    high = [{"m": Observation(v)} for v in (0.0, 0.0, 5.0)]
    verdict = judge([rule], {}, high, SEQUENTIAL, final=False, horizon=30)
    assert verdict.decision == "fail", verdict.reason
    zeros = [{"m": Observation(0.0)}] * 30
    assert judge([rule], {}, zeros, SEQUENTIAL, final=True, horizon=30).decision == "pass"

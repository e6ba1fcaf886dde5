"""A provider's bare figure of unknown sign (a Prometheus `deriv()` or delta, any query) is
judged by the sequential policy as threshold and fixed judge it where no test of its mean
is valid. `max: 0` failed at the first value above 0 (the test of a rate's `max: 0`, which
holds only where no value is below 0): a delta alternating -0.2 and +0.1, its mean below
0, was rolled back at its second round. And a relative bound over a negative baseline had
no test: it ended `inconclusive` where threshold failed it."""

from __future__ import annotations

import json

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.describe import never_negative
from agent.analysis.judge import Judge, judge
from agent.settings import LATENCY_METRICS, NEVER_NEGATIVE

SEQUENTIAL = Policy("sequential")
THRESHOLD = Policy("threshold")
ROUNDS = 20


def decide(
    rule: Rule,
    values: list[float],
    baseline: float | None = None,
    policy: Policy = SEQUENTIAL,
    *,
    final: bool = True,
) -> str:
    rounds = [{rule.name: Observation(v)} for v in values]
    base = {rule.name: Observation(baseline)} if baseline is not None else {}
    return judge([rule], base, rounds, policy, final=final, horizon=ROUNDS).decision


def test_a_noisy_delta_below_0_on_average_is_not_rolled_back_by_max_0() -> None:
    rule = Rule("drift", "prometheus", "query", max=0.0)
    noisy = [-0.2, 0.1] * (ROUNDS // 2)
    assert decide(rule, noisy, policy=THRESHOLD) == "pass"
    assert decide(rule, noisy) == "pass"
    # still failed as threshold fails it: `failure_limit` rounds in a row above 0
    assert decide(rule, [0.0, 0.5, 0.5, 0.5], policy=THRESHOLD, final=False) == "fail"
    assert decide(rule, [0.0, 0.5, 0.5, 0.5], final=False) == "fail"
    assert decide(rule, [0.0, 0.5, 0.5], final=False) == "continue"
    # nor is it warned as a rate's `max: 0` is (that can only fail on evidence): it passes
    assert Judge([rule], {}, SEQUENTIAL, horizon=ROUNDS).blind_spots({}) == []
    rate = Rule("drift", "prometheus", "error_rate", max=0.0)
    assert "can only fail" in Judge([rate], {}, SEQUENTIAL, horizon=ROUNDS).blind_spots({})[0]


@pytest.mark.parametrize("metric", ["error_rate", "error_count", "p95_duration", "throughput"])
def test_a_value_never_below_0_still_fails_max_0_at_its_first_value_above_it(
    metric: str,
) -> None:
    rule = Rule("m", "sentry", metric, max=0.0)
    assert decide(rule, [0.0, 0.0, 5.0], final=False) == "fail"


@pytest.mark.parametrize("policy", [SEQUENTIAL, THRESHOLD], ids=["sequential", "threshold"])
def test_a_relative_bound_over_a_negative_baseline_reads_as_threshold_reads_it(
    policy: Policy,
) -> None:
    """Threshold's limit is max(baseline x (1 + max_increase), baseline + floor): over a
    baseline of -1, +50% is -1.5, below the baseline itself, so the limit is the baseline:
    any increase breaches. Rounds at 0 fail it; rounds at -2 (a decrease) pass."""
    rule = Rule("drift", "prometheus", "query", max_increase=0.5)
    assert decide(rule, [0.0] * ROUNDS, -1.0, policy) == "fail"
    assert decide(rule, [-2.0] * ROUNDS, -1.0, policy) == "pass"


def test_a_relative_bound_over_a_negative_baseline_is_said_at_registration() -> None:
    rule = Rule("drift", "prometheus", "query", max_increase=0.5)
    said = Judge([rule], {"drift": Observation(-1.0)}, SEQUENTIAL, horizon=ROUNDS).blind_spots(
        {"drift": 1.0}
    )
    assert len(said) == 1, said
    assert said[0].startswith("rule drift: max_increase 50% over a baseline of -1"), said
    assert "any value above -1 breaches it" in said[0], said
    assert "3 rounds in a row" in said[0], said
    positive = Judge([rule], {"drift": Observation(1.0)}, SEQUENTIAL, horizon=ROUNDS)
    assert positive.blind_spots({"drift": 1.0}) == []


def test_the_judge_knows_every_metric_the_configuration_calls_never_negative() -> None:
    assert all(never_negative(m) for m in (*NEVER_NEGATIVE, *LATENCY_METRICS))
    assert not any(never_negative(m) for m in ("query", "nrql", "cpu", "queue_delta"))


def test_a_count_over_a_baseline_of_0_fails_its_relative_bound_at_its_first_count() -> None:
    """A count's relative bound over a baseline of 0 is its `max: 0` (its floor is 0):
    none is below 0, so the first count above it fails the rule, as `max: 0` does (it had
    no test: 20 rounds of 5 errors over a clean baseline ended `inconclusive`)."""
    rule = Rule("m", "sentry", "error_count", max_increase=0.5)
    assert decide(rule, [0.0, 5.0], 0.0, final=False) == "fail"
    assert decide(rule, [0.0] * ROUNDS, 0.0) == "pass"


@pytest.mark.parametrize("policy", [SEQUENTIAL, THRESHOLD], ids=["sequential", "threshold"])
def test_a_bare_values_relative_decrease_is_judged_as_its_min_is(policy: Policy) -> None:
    """A provider's throughput (its bad side is a decrease) bounded `max_increase: 50%`
    below a baseline of 100: rounds at 10 fail it, rounds at 90 pass. Under sequential it
    had no test (a bare value's low side is not bounded, as for its `min`): 20 rounds at 10
    ended `inconclusive` where threshold failed them."""
    rule = Rule("rps", "prometheus", "throughput", max_increase=0.5, direction="decrease")
    assert decide(rule, [10.0] * ROUNDS, 100.0, policy) == "fail"
    assert decide(rule, [90.0] * ROUNDS, 100.0, policy) == "pass"


SIGNED_MAX = Rule("drift", "prometheus", "query", max=1.0)
ALTERNATING = [6.0, -7.0] * (ROUNDS // 2)
"""Mean -0.5, below `max: 1`: counting -7 as 0 made its mean 3."""


@pytest.mark.parametrize("policy", [SEQUENTIAL, THRESHOLD], ids=["sequential", "threshold"])
def test_a_value_of_either_sign_below_its_max_on_average_is_not_failed(policy: Policy) -> None:
    """The value test bets on each value over its bound with a value below 0 counting as 0,
    which overstates the mean of a value that may be negative: `max: 1` over values
    alternating 6 and -7 (mean -0.5) failed under sequential (a false rollback) where
    threshold passed it. From its first value below 0 the rule keeps the streak."""
    assert decide(SIGNED_MAX, ALTERNATING, policy=policy) == "pass"


def test_the_verdict_says_from_which_round_the_streak_judges_a_value_below_0() -> None:
    rounds = [{"drift": Observation(v)} for v in [0.5, -7.0, 6.0, 6.0, 6.0]]
    verdict = judge([SIGNED_MAX], {}, rounds, SEQUENTIAL, final=False, horizon=ROUNDS)
    note = "drift went below 0 (-7): the sequential bound covers values ≥ 0, threshold streak"
    assert verdict.decision == "fail", verdict.reason
    assert f"{note} from round 2" in verdict.reason, verdict.reason
    (rule,) = verdict.rules
    assert f"{note} from round 2" in rule.detail, rule.detail
    assert rule.evidence["policy"] == "threshold"
    assert rule.evidence["failing_rounds"] == [3, 4, 5]
    assert rule.evidence["streak_from_round"] == 2
    assert rule.evidence["value_below_0"] == -7.0
    passing = judge([SIGNED_MAX], {}, rounds[:3], SEQUENTIAL, final=True, horizon=ROUNDS)
    assert passing.decision == "pass", passing.reason
    assert f"{note} from round 2" in passing.rules[0].detail, passing.rules[0].detail


def test_a_failure_before_the_first_value_below_0_stands() -> None:
    """The rounds before stay judged as they were: far above its bound on average (though
    never 3 rounds in a row), the rule failed on evidence, and a value below 0 after it
    changes nothing."""
    values = [40.0, 0.0] * 5
    before = decide(SIGNED_MAX, values, final=False)
    assert before == "fail"
    rounds = [{"drift": Observation(v)} for v in [*values, -7.0, 0.0]]
    verdict = judge([SIGNED_MAX], {}, rounds, SEQUENTIAL, final=False, horizon=ROUNDS)
    assert verdict.decision == "fail"
    assert "evidence" in verdict.reason and "below 0" not in verdict.reason, verdict.reason


def test_a_value_of_either_sign_that_stays_at_0_or_above_keeps_the_sequential_test() -> None:
    """Mean 2.25 above `max: 1`, never 3 rounds in a row past it: the value test fails it
    on evidence where threshold passes it."""
    values = [0.5, 4.0] * (ROUNDS // 2)
    assert decide(SIGNED_MAX, values, policy=THRESHOLD) == "pass"
    rounds = [{"drift": Observation(v)} for v in values]
    verdict = judge([SIGNED_MAX], {}, rounds, SEQUENTIAL, final=True, horizon=ROUNDS)
    assert verdict.decision == "fail", verdict.reason
    assert verdict.rules[0].evidence["policy"] == "sequential"


def test_a_relative_bound_on_a_value_of_either_sign_keeps_the_streak_below_0() -> None:
    """max_increase 50% over a baseline of 2 (limit 3), values alternating 20 and -23 (mean
    -1.5): failed as the `max` was, by counting -23 as 0."""
    rule = Rule("drift", "prometheus", "query", max_increase=0.5)
    assert decide(rule, [20.0, -23.0] * (ROUNDS // 2), 2.0) == "pass"
    assert decide(rule, [20.0, -23.0] * (ROUNDS // 2), 2.0, THRESHOLD) == "pass"


@pytest.mark.parametrize("metric", ["throughput", "p95_duration", "error_count"])
def test_a_value_never_below_0_reported_below_0_still_counts_as_0(metric: str) -> None:
    """A provider bug (a negative throughput): the value is still counted as 0, as before,
    and the rule keeps its sequential test."""
    rule = Rule("m", "prometheus", metric, max=1.0)
    rounds = [{"m": Observation(v)} for v in ALTERNATING]
    verdict = judge([rule], {}, rounds, SEQUENTIAL, final=True, horizon=ROUNDS)
    assert verdict.decision == "fail", verdict.reason
    assert verdict.rules[0].evidence["policy"] == "sequential"


def test_a_value_below_0_resumes_from_a_stored_state_as_it_folded() -> None:
    """The switch is in the state (JSON-able): a restart after it judges as one fold."""
    values = [0.5, -7.0, 6.0, 6.0, 6.0]
    one = Judge([SIGNED_MAX], {}, SEQUENTIAL, horizon=ROUNDS)
    state = one.start()
    for v in values[:2]:
        state, _ = one.step(state, {"drift": Observation(v)}, final=False)
    stored = json.loads(json.dumps(state))
    again = Judge([SIGNED_MAX], {}, SEQUENTIAL, horizon=ROUNDS)
    for v in values[2:]:
        stored, verdict = again.step(stored, {"drift": Observation(v)}, final=False)
    rounds = [{"drift": Observation(v)} for v in values]
    whole = judge([SIGNED_MAX], {}, rounds, SEQUENTIAL, final=False, horizon=ROUNDS)
    assert verdict == whole
    assert verdict.decision == "fail"

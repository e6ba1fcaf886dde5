"""The threshold policy: per-round bounds, consecutive breaches, no data skipped."""

from __future__ import annotations

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.analysis.threshold import breaches, relative_limit

THRESHOLD = Policy("threshold", failure_limit=3)
ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)


def rate(failed: int, total: int = 100) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def rounds_of(rule: Rule, *observations: Observation) -> list[dict[str, Observation]]:
    return [{rule.name: o} for o in observations]


def test_three_breaching_rounds_fail_with_the_contract_reason() -> None:
    verdict = judge([ERRORS], {}, rounds_of(ERRORS, *[rate(31)] * 3), THRESHOLD, final=False)
    assert verdict.decision == "fail"
    assert verdict.reason == "probe-errors: error_rate 0.31 > max 0.05 for 3 rounds"
    rule = verdict.rules[0]
    assert (rule.outcome, rule.observed, rule.threshold) == ("fail", 0.31, "max 0.05")
    assert rule.detail == "31 of 100 probes failed"
    assert rule.evidence["failing_rounds"] == [1, 2, 3]  # round numbers, as `rounds` counts


def test_a_passing_round_breaks_the_streak() -> None:
    rounds = rounds_of(ERRORS, rate(31), rate(31), rate(1), rate(31), rate(31))
    verdict = judge([ERRORS], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "pass"
    assert verdict.reason == "1 of 1 rule passed over 5 rounds"  # not "1 of 1 rules"
    assert verdict.rules[0].evidence["streak"] == 2


def test_rounds_without_data_neither_break_nor_extend_a_streak() -> None:
    gap = Observation(None, error="timeout")
    rounds = rounds_of(ERRORS, rate(31), gap, rate(31), gap, rate(31))
    verdict = judge([ERRORS], {}, rounds, THRESHOLD, final=False)
    assert verdict.decision == "fail"
    assert verdict.rules[0].evidence["failed_at_round"] == 5  # the fifth round
    assert judge([ERRORS], {}, rounds[:4], THRESHOLD, final=False).decision == "continue"


def test_a_percentile_round_without_fresh_samples_is_still_judged_on_its_figure() -> None:
    # Sentry's p95 of a round whose duration pages failed (or brought nothing new) comes
    # without samples: it was skipped as "no samples", and a release at 900ms against
    # max 500ms passed on the one round that had them
    p95 = Rule("sentry-p95", "sentry", "p95_duration", max=0.5)
    first = Observation(0.9, count=50, total=50, values=(0.8, 0.9, 0.95), quantile=0.95)
    later = Observation(0.9, count=50, total=50, quantile=0.95)
    rounds = rounds_of(p95, first, *[later] * 5)
    verdict = judge([p95], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "fail"
    assert verdict.rules[0].evidence["failed_at_round"] == 3  # the third round


def test_no_data_is_inconclusive_never_a_failure() -> None:
    rounds = rounds_of(ERRORS, *[Observation(None, error="provider timeout")] * 10)
    verdict = judge([ERRORS], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "inconclusive"
    assert verdict.rules[0].outcome == "inconclusive"
    assert "provider timeout" in verdict.rules[0].detail


def test_relative_bound_uses_the_baseline_with_a_floor() -> None:
    rule = Rule("errors", "sentry", "error_rate", max_increase=1.0)
    assert relative_limit(rule, 0.02) == 0.04
    assert relative_limit(rule, 0.0) == 0.001  # a zero baseline does not make 0.0001 a breach
    assert breaches(rule, 0.0005, 0.0) == []
    assert [b.text for b in breaches(rule, 0.05, 0.02)] == ["max 0.04 (baseline 0.02 +100%)"]


def test_relative_latency_reason_reads_in_durations() -> None:
    rule = Rule("feed-p95", "checks", "latency_p95", max_increase=0.5)
    rounds = rounds_of(rule, *[Observation(0.412, total=50)] * 3)
    verdict = judge([rule], {rule.name: Observation(0.25)}, rounds, THRESHOLD, final=False)
    assert verdict.reason == (
        "feed-p95: latency_p95 412ms > max 375ms (baseline 250ms +50%) for 3 rounds"
    )
    assert verdict.rules[0].threshold == "max_increase 50%"


def test_a_value_just_past_its_bound_reads_past_it() -> None:
    """Seen at a real daemon: `slow: latency_p95 1ms > max 1ms for 2 rounds` (1.4 ms, cut
    to whole milliseconds) in the API, the alerts and the rollback's reason; the value
    keeps the digits that show it past the bound, and only then."""
    latency = Rule("slow", "checks", "latency_p95", max=0.001)
    rounds = rounds_of(latency, *[Observation(0.0014, total=50)] * 3)
    verdict = judge([latency], {}, rounds, THRESHOLD, final=False)
    assert verdict.reason == "slow: latency_p95 1.4ms > max 1ms for 3 rounds"
    p95 = Rule("p95", "checks", "latency_p95", max=0.3)
    rounds = rounds_of(p95, *[Observation(0.30004, total=50)] * 3)
    verdict = judge([p95], {}, rounds, THRESHOLD, final=False)
    assert verdict.reason == "p95: latency_p95 300.04ms > max 300ms for 3 rounds"
    long = Rule("long", "checks", "latency_p95", max=2.0)
    rounds = rounds_of(long, *[Observation(2.0002, total=50)] * 3)
    assert judge([long], {}, rounds, THRESHOLD, final=False).reason == (
        "long: latency_p95 2.0002s > max 2s for 3 rounds"
    )
    errors = Rule("errors", "sentry", "error_rate", min=0.05)
    rounds = rounds_of(errors, *[Observation(0.049996)] * 3)
    assert judge([errors], {}, rounds, THRESHOLD, final=False).reason == (
        "errors: error_rate 0.049996 < min 0.05 for 3 rounds"
    )
    far = rounds_of(latency, *[Observation(0.412, total=50)] * 3)
    assert judge([latency], {}, far, THRESHOLD, final=False).reason == (
        "slow: latency_p95 412ms > max 1ms for 3 rounds"
    )


def test_a_computed_bound_rounded_up_still_reads_below_the_value() -> None:
    """Seen at a real daemon (session 34): `latency_p95 4.7ms > max 5ms (baseline 3ms
    +50%)`, the value given its digits and the computed bound (4.6 ms) rounded up to whole
    milliseconds, so the breach read as no breach; both now keep the digits that part them."""
    rule = Rule("fast", "checks", "latency_p95", max_increase=0.5)
    rounds = rounds_of(rule, *[Observation(0.0047, total=50)] * 3)
    verdict = judge([rule], {rule.name: Observation(0.0031)}, rounds, THRESHOLD, final=False)
    assert verdict.reason == (
        # three significant digits below 10 ms: the sum adds up (3.1ms +50% = 4.65ms)
        "fast: latency_p95 4.7ms > max 4.65ms (baseline 3.1ms +50%) for 3 rounds"
    )


def test_direction_decrease_fails_on_a_drop() -> None:
    rule = Rule("crash-free", "sentry", "crash_free_rate", max_increase=0.01, direction="decrease")
    base = {rule.name: Observation(0.999)}
    low = rounds_of(rule, *[Observation(0.95)] * 3)
    high = rounds_of(rule, *[Observation(1.0)] * 3)
    assert judge([rule], base, low, THRESHOLD, final=False).decision == "fail"
    assert judge([rule], base, high, THRESHOLD, final=True).decision == "pass"


def test_relative_rule_without_baseline_is_inconclusive() -> None:
    rule = Rule("feed-p95", "checks", "latency_p95", max_increase=0.5)
    rounds = rounds_of(rule, *[Observation(9.0)] * 5)
    verdict = judge([rule], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "inconclusive"
    assert "no baseline" in verdict.rules[0].detail


def test_rounds_below_min_samples_do_not_count() -> None:
    rule = Rule("probe-errors", "checks", "error_rate", max=0.05, min_samples=20)
    small = rounds_of(rule, *[rate(5, 10)] * 5)
    assert judge([rule], {}, small, THRESHOLD, final=True).decision == "inconclusive"


def test_failure_limit_one_fails_on_the_first_breach() -> None:
    verdict = judge(
        [ERRORS],
        {},
        rounds_of(ERRORS, rate(0), rate(9)),
        Policy("threshold", failure_limit=1),
        final=False,
    )
    assert verdict.decision == "fail" and verdict.reason.endswith("for 1 round")


def test_a_rule_past_its_bound_short_of_the_limit_is_not_counted_passing() -> None:
    """An open window's reason (a superseded window's verdict, `register --wait`) said
    `no rule failed after 2 rounds (1 passing)` beside that very rule shown `! breach 0.9
    (max 0.1, 1 of 2 rounds)`: it is `pass` in the progress, as the window would pass if it
    ended now, but it is past its bound, and says so."""
    other = Rule("slow", "checks", "error_rate", max=0.5)
    rounds = [
        {ERRORS.name: rate(1), other.name: rate(1)},
        {ERRORS.name: rate(90), other.name: rate(1)},
    ]
    verdict = judge([ERRORS, other], {}, rounds, THRESHOLD, final=False)
    assert verdict.decision == "continue"
    assert verdict.reason == (
        "no rule failed after 2 rounds (1 passing; 1 past its bound, short of failure_limit)"
    )
    alone = judge([ERRORS], {}, rounds_of(ERRORS, rate(90)), THRESHOLD, final=False)
    assert alone.reason == "no rule failed after 1 round (1 past its bound, short of failure_limit)"
    calm = judge([ERRORS], {}, rounds_of(ERRORS, rate(1)), THRESHOLD, final=False)
    assert calm.reason == "no rule failed after 1 round (1 passing)"  # as before


def test_a_rule_whose_every_round_judged_breached_is_not_passed_at_the_end() -> None:
    """Rounds without data neither break nor extend a streak, so a rule whose only round
    with data was past its bound passed the window on it ("2 of 2 rules passed"): a pass
    must rest on a round within the bound. It is `inconclusive`, and so is the window,
    saying so; a rule back within its bound in an earlier round still passes."""
    other = Rule("slow", "checks", "error_rate", max=0.5)
    gap = Observation(None, error="provider timeout")
    rounds = [{ERRORS.name: rate(90), other.name: rate(1)}]
    rounds += [{ERRORS.name: gap, other.name: rate(1)}] * 4
    verdict = judge([ERRORS, other], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "inconclusive", verdict.reason
    # said first, past its bound (`test_unproven_reason.py`)
    assert verdict.reason == (
        "probe-errors: error_rate 90% past max 5% in the only round judged, short of the"
        " evidence to fail (1 of 3 rounds needed)"
    )
    rule = verdict.rules[0]
    assert rule.outcome == "inconclusive" and rule.observed == 0.9
    assert rule.detail == (
        "90 of 100 probes failed; past max 0.05 in the only round judged, none within it:"
        " 1 of 3 rounds, too few to fail, and no evidence of a pass"
    )
    # while the window runs it is past its bound, short of the limit, as before
    assert judge([ERRORS, other], {}, rounds, THRESHOLD, final=False).decision == "continue"
    alone = judge([ERRORS], {}, rounds_of(ERRORS, rate(90), rate(80)), THRESHOLD, final=True)
    assert alone.decision == "inconclusive"
    assert alone.reason.startswith("probe-errors: error_rate 85% past max 5% in each of the 2 ")
    assert "in each of the 2 rounds judged" in alone.rules[0].detail
    within = rounds_of(ERRORS, rate(1), rate(90), gap)
    assert judge([ERRORS], {}, within, THRESHOLD, final=True).decision == "pass"


def test_a_streak_judged_rule_under_sequential_is_not_passed_without_a_round_within() -> None:
    """The sequential policy judges a bare value's `min` (throughput) by the threshold
    streak: a rule whose only round with data was past it passed by the streak alone
    ("1 of 1 rule passed over 6 rounds by the threshold streak alone", or with `pass_on:
    no_failure` "1 of 1 rule passed"), though no round showed it within its bound. It is
    `inconclusive` under either, as under `threshold`; one within it in a round passes."""
    throughput = Rule("rps", "checks", "throughput", min=5.0)
    gap = Observation(None, error="provider timeout")
    rounds = rounds_of(throughput, Observation(1.0), *[gap] * 5)
    said = (
        "rps: throughput 1 past min 5 in the only round judged, short of the evidence to"
        " fail (1 of 3 rounds needed)"
    )
    evidence = judge([throughput], {}, rounds, Policy(), final=True)
    assert evidence.decision == "inconclusive", evidence.reason
    assert evidence.reason == said
    no_failure = judge([throughput], {}, rounds, Policy(pass_on="no_failure"), final=True)
    assert no_failure.decision == "inconclusive", no_failure.reason
    assert no_failure.reason == said
    within = rounds_of(throughput, Observation(9.0), Observation(1.0), gap)
    assert judge([throughput], {}, within, Policy(), final=True).decision == "pass"


def test_a_rule_no_round_of_which_had_its_min_samples_leaves_the_window_inconclusive() -> None:
    """A round with fewer samples than the rule's `min_samples` is not judged: a rule none
    of whose rounds had them was judged in none, and the window passed on its other rules
    ("1 of 2 rules passed over 4 rounds, 1 inconclusive"), the rule's 9 of 10 failed
    probes a round unread. Not judged at all is no pass, as a rule without data."""
    starved = Rule("probe-errors", "checks", "error_rate", max=0.05, min_samples=20)
    other = Rule("slow", "checks", "error_rate", max=0.5)
    rounds = [{starved.name: rate(9, 10), other.name: rate(1)}] * 4
    verdict = judge([starved, other], {}, rounds, THRESHOLD, final=True)
    assert verdict.decision == "inconclusive", verdict.reason
    assert verdict.reason == (
        "no rule failed over 4 rounds, but 1 of 2 had no round within its bound:"
        " probe-errors: no round with at least 20 samples, so none was judged against its bound"
    )
    assert verdict.rules[0].outcome == "inconclusive"
    assert verdict.rules[0].detail == "no round with at least 20 samples"
    assert judge([starved, other], {}, rounds, THRESHOLD, final=False).decision == "continue"
    enough = [*rounds, {starved.name: rate(0, 20), other.name: rate(1)}]
    assert judge([starved, other], {}, enough, THRESHOLD, final=True).decision == "pass"


def test_a_rule_not_failed_at_the_end_is_said_by_the_windows_counts() -> None:
    """At the window's end the rule's detail and observed are the window's (the alert's
    `over N rounds`), not its last round's: a pass after one breaching round, and a rule
    past its bound in each of its too few rounds (`inconclusive`)."""
    passed = judge(
        [ERRORS], {}, rounds_of(ERRORS, rate(90), rate(1), rate(1)), THRESHOLD, final=True
    )
    [rule] = passed.rules
    assert passed.decision == "pass" and rule.detail == "92 of 300 probes failed; within bounds"
    assert rule.observed == pytest.approx(92 / 300)
    short = judge([ERRORS], {}, rounds_of(ERRORS, rate(90), rate(80)), THRESHOLD, final=True)
    [rule] = short.rules
    assert rule.outcome == "inconclusive" and rule.detail.startswith("170 of 200 probes failed;")
    assert rule.observed == pytest.approx(0.85)
    # while the window runs, a round's figures, as before
    running = judge([ERRORS], {}, rounds_of(ERRORS, rate(90), rate(1)), THRESHOLD, final=False)
    assert running.rules[0].detail.startswith("1 of 100 probes failed;")


def _latencies(value: float, n: int = 20) -> Observation:
    return Observation(value, values=(value,) * n, total=n)


def test_a_latency_or_bare_value_not_failed_at_the_end_is_said_by_the_windows_figure() -> None:
    """As a rate's (above): at the window's end a latency rule not failed is said by the
    p95 of all its samples, a bare value by its rounds' mean, not by the last round's
    figure: a window of two 500 ms rounds and a 100 ms one read `latency_p95 100ms,
    within bounds` (observed 0.1), and one past its bound in each of its rounds was said
    by the last of them."""
    p95 = Rule("p95", "checks", "latency_p95", max=0.3)
    rounds = rounds_of(p95, _latencies(0.5), _latencies(0.5), _latencies(0.1))
    [rule] = judge([p95], {}, rounds, THRESHOLD, final=True).rules
    assert rule.outcome == "pass" and rule.observed == 0.5
    assert rule.detail == "latency_p95 500ms over 60 samples; within bounds"
    short = judge(
        [p95], {}, rounds_of(p95, _latencies(0.5), _latencies(0.4)), THRESHOLD, final=True
    )
    assert short.decision == "inconclusive" and short.rules[0].observed == 0.5
    assert short.reason.startswith("p95: latency_p95 500ms past max 300ms in each of the 2 ")
    assert short.rules[0].detail.startswith("latency_p95 500ms over 40 samples; past max 300ms")
    rps = Rule("rps", "checks", "throughput", min=5.0)
    bare = rounds_of(rps, Observation(1.0), Observation(9.0), Observation(20.0))
    [rule] = judge([rps], {}, bare, THRESHOLD, final=True).rules
    assert rule.outcome == "pass" and rule.observed == 10.0
    assert rule.detail == "throughput 10 over 3 samples; within bounds"
    # while the window runs, and at a failure, the round's figure, as before
    running = judge([p95], {}, rounds, THRESHOLD, final=False).rules[0]
    assert running.observed == 0.1 and running.detail == "latency_p95 100ms, within bounds"
    failed = rounds_of(p95, _latencies(0.9), _latencies(0.9), _latencies(0.4))
    verdict = judge([p95], {}, failed, THRESHOLD, final=True)
    assert verdict.reason == "p95: latency_p95 400ms > max 300ms for 3 rounds"

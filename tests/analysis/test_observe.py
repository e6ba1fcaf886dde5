"""observe(): samples of one round into an observation; merge(): periods into a baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis import Observation, Rule
from agent.analysis.observe import merge, observe
from checks.base import Sample

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
P95 = Rule("health-latency", "checks", "latency_p95", check="api-health", max=0.3)


def samples(check: str, latencies: list[float | None], failed: int = 0) -> list[Sample]:
    return [
        Sample(check, ok=i >= failed, latency_s=lat, error=None if i >= failed else "status")
        for i, lat in enumerate(latencies)
    ]


def test_error_rate_counts_failed_probes() -> None:
    obs = observe(ERRORS, samples("a", [0.1] * 100, failed=31), 10.0)
    assert (obs.value, obs.count, obs.total) == (0.31, 31, 100)
    assert obs.has_data


def test_latency_percentile_of_the_named_check_only() -> None:
    mine = samples("api-health", [0.1, 0.2, 0.3, 0.4, None])
    other = samples("feed", [9.0, 9.0])
    obs = observe(P95, mine + other, 10.0)
    assert obs.value == pytest.approx(float(np.percentile([0.1, 0.2, 0.3, 0.4], 95)))
    assert obs.values == (0.1, 0.2, 0.3, 0.4)
    assert (obs.count, obs.total, obs.quantile) == (4, 4, 0.95)


def test_throughput_is_requests_per_second() -> None:
    rule = Rule("rps", "checks", "throughput", min=1.0, direction="decrease")
    obs = observe(rule, samples("a", [0.1] * 50), 10.0)
    assert (obs.value, obs.count) == (5.0, 50)


def test_throughput_counts_only_the_requests_that_passed() -> None:
    """A refused, 5xx or timed-out probe served nothing: counted, a target that answered
    none kept the agent's own pace as its throughput."""
    rule = Rule("rps", "checks", "throughput", min=1.0, direction="decrease")
    obs = observe(rule, samples("a", [0.1] * 50, failed=20), 10.0)
    assert (obs.value, obs.count) == (3.0, 30)
    none = observe(rule, samples("a", [0.1] * 50, failed=50), 10.0)
    assert (none.value, none.count) == (0.0, 0)


def test_only_deploy_samples_count_and_baseline_reads_the_other_side() -> None:
    deploy = samples("a", [0.1] * 10, failed=5)
    stable = [Sample("a", ok=True, latency_s=0.1, target="baseline") for _ in range(20)]
    assert observe(ERRORS, deploy + stable, 1.0).value == 0.5
    base = observe(ERRORS, deploy + stable, 1.0, target="baseline")
    assert (base.value, base.total) == (0.0, 20)


def test_no_samples_is_no_data() -> None:
    obs = observe(ERRORS, [], 10.0)
    assert obs.value is None and obs.error == "no samples" and not obs.has_data
    assert observe(P95, samples("api-health", [None, None]), 10.0).error == "no latencies"


def test_merge_pools_counts_and_measures_burstiness() -> None:
    merged = merge(
        [
            Observation(0.0, count=0, total=100),
            Observation(0.2, count=20, total=100),
            Observation(None, error="timeout"),
        ]
    )
    assert (merged.value, merged.count, merged.total, merged.periods) == (0.1, 20, 200, 2)
    assert merged.dispersion is not None and merged.dispersion > 0.1


def test_merge_recomputes_a_percentile_from_pooled_values() -> None:
    a = Observation(0.2, values=(0.1, 0.2), quantile=0.5, count=2, total=2)
    b = Observation(0.4, values=(0.3, 0.4, 0.5), quantile=0.5, count=3, total=3)
    merged = merge([a, b])
    assert merged.value == pytest.approx(0.3)
    assert merged.values == (0.1, 0.2, 0.3, 0.4, 0.5)
    assert (merged.total, merged.quantile) == (5, 0.5)


def test_merge_keeps_how_many_values_each_period_gave() -> None:
    """So the judge can count each background run's samples past any cutoff (slow whole
    runs); a period pooled already gives its own sizes, one that lost them gives none."""
    a = Observation(0.2, values=(0.1, 0.2), quantile=0.5)
    b = Observation(0.4, values=(0.3, 0.4, 0.5), quantile=0.5)
    merged = merge([a, b])
    assert merged.period_sizes == (2, 3)
    assert merge([merged, a]).period_sizes == (2, 3, 2)
    pooled_without = Observation(0.4, values=(0.3, 0.4, 0.5), quantile=0.5, periods=2)
    assert merge([a, pooled_without]).period_sizes == ()
    assert merge([a]).period_sizes == ()  # one period: nothing to measure across


def test_merge_averages_rates_without_counts() -> None:
    assert merge([Observation(0.01), Observation(0.03)]).value == pytest.approx(0.02)
    weighted = merge([Observation(0.01, total=300), Observation(0.03, total=100)])
    assert weighted.value == pytest.approx(0.015)


def test_merge_pools_throughput_over_time() -> None:
    merged = merge([Observation(5.0, count=50, seconds=10), Observation(1.0, count=30, seconds=30)])
    assert merged.value == pytest.approx(2.0)


def test_merge_of_nothing_usable_is_no_data() -> None:
    merged = merge([Observation(None, error="timeout"), Observation(math.nan)])
    assert merged.value is None and "timeout" in (merged.error or "")


def test_merge_never_reads_latency_sample_counts_as_a_rate() -> None:
    sampled = Observation(0.2, values=(0.1, 0.2), quantile=0.95, count=2, total=2)
    bare = Observation(0.4, count=5, total=5, quantile=0.95)  # a provider's p95, no samples
    merged = merge([sampled, bare])
    assert merged.values == (0.1, 0.2) and merged.quantile == 0.95
    assert merged.value == pytest.approx(float(np.percentile([0.1, 0.2], 95)))
    only_bare = merge([bare, Observation(0.2, total=15, quantile=0.95)])
    assert only_bare.value == pytest.approx(0.25) and only_bare.quantile == 0.95


def test_a_round_mostly_of_timeouts_shows_a_latency_rule_past_its_bound_never_within() -> None:
    """A timeout's latency is its wait, a lower bound on the target's time: a round whose
    probes mostly timed out within the bound (150 ms waits, max 500ms) passed a target
    that answered nothing. It gives the rule no data, saying why; waits past the bound
    still fail it (the target took at least that long). Half of them timed out is no
    measure either: their waits give the p95 (the next test)."""
    from agent.analysis.judge import judge
    from agent.analysis.types import Policy

    p95 = Rule("p95", "checks", "latency_p95", max=0.5)
    answered = [Sample("c", ok=True, latency_s=0.02)]

    def round_of(waits: list[float], answers: int) -> list[Sample]:
        timed_out = [Sample("c", ok=False, latency_s=w, error="timeout") for w in waits]
        return timed_out + answered * answers

    silent = observe(p95, round_of([0.15] * 5, 0), 0.3)
    assert silent.lower_bounds == 5 and silent.value == pytest.approx(0.15)
    for policy in (Policy("threshold", failure_limit=2), Policy()):
        verdict = judge([p95], {}, [{p95.name: silent}] * 30, policy, final=True)
        assert verdict.decision == "inconclusive", verdict.reason
        assert verdict.rules[0].detail == (
            "no data (5 of 5 probes timed out: latency_p95 150ms rests on their waits, lower"
            " bounds on the target's time, which cannot show it within max 500ms)"
        )
        slow = observe(p95, round_of([0.8] * 5, 0), 1.6)
        assert judge([p95], {}, [{p95.name: slow}] * 30, policy, final=True).decision == "fail"
    half = observe(p95, round_of([0.15] * 2, 2), 0.3)  # 2 of 4: not most, but its p95's
    threshold = judge([p95], {}, [{p95.name: half}] * 3, Policy("threshold"), final=True)
    assert threshold.decision == "inconclusive", threshold.reason  # was passed


def test_a_round_whose_percentile_rests_on_a_timeouts_wait_is_a_lower_bound_too() -> None:
    """Not only most: a p95 of 5 probes is read off its slowest, so one timeout of 5 makes
    it a lower bound (a target hanging one request in four passed `max: 500ms` on 124 ms).
    A percentile the answers alone give (a median with 1 of 5 timed out, a p95 of 40 with
    1) is a measure, judged as before; waits below an answer count as well."""
    from agent.analysis.judge import judge
    from agent.analysis.types import Policy

    def round_of(waits: list[float], answers: list[float], rule: Rule) -> Observation:
        timed_out = [Sample("c", ok=False, latency_s=w, error="timeout") for w in waits]
        return observe(rule, timed_out + [Sample("c", ok=True, latency_s=a) for a in answers], 1)

    p95 = Rule("p95", "checks", "latency_p95", max=0.5)
    p50 = Rule("p50", "checks", "latency_p50", max=0.5)
    one = round_of([0.15], [0.02] * 4, p95)
    assert one.rests_on_waits and one.value == pytest.approx(0.124)
    assert not round_of([0.15], [0.02] * 4, p50).rests_on_waits  # the median is an answer
    assert not round_of([0.15], [0.02] * 39, p95).rests_on_waits  # 38.05 of 39: answers
    assert round_of([0.15] * 2, [0.02] * 38, p95).rests_on_waits
    assert round_of([0.1], [0.02, 0.02, 0.6, 0.6], p50).rests_on_waits  # its wait the median
    assert not round_of([], [0.02] * 5, p95).rests_on_waits
    for policy in (Policy("threshold"), Policy(), Policy(pass_on="no_failure")):
        verdict = judge([p95], {}, [{p95.name: one}] * 30, policy, final=True)
        assert verdict.decision == "inconclusive", verdict.reason
        assert verdict.rules[0].detail == (
            "no data (1 of 5 probes timed out: latency_p95 124ms rests on its wait, a lower"
            " bound on the target's time, which cannot show it within max 500ms)"
        )
    slow = round_of([0.8], [0.02] * 4, p95)  # past the bound: at least that, a fail
    assert (
        judge([p95], {}, [{p95.name: slow}] * 3, Policy("threshold"), final=True).decision == "fail"
    )

"""The judge takes any finite observation a provider can hand it without a raise: counts and
totals up to 2^64 (a Prometheus counter's end), values of any finite magnitude, tiny positive
ones. A raise in `Judge.step` is a round the daemon cannot judge. Before (each with
totals within 2^64): NaN Clopper-Pearson limits past ~1e17 events (scipy's betaincinv), so a
two-sample ladder of NaN levels (RuntimeWarning, an error here); `bdtrc`'s C long overflowing
on a pooled total past 2^63 (OverflowError, the fixed policy); a 59 GiB array summing a round
of 2^63 requests' binomial counts (MemoryError, the detectability figures); and the Poisson
ratio's Newton step dividing by log 1 (ZeroDivisionError) for an expected count past 2^64."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.windows.evidence import verdict_to_dict

BIG = 2**64
TOTALS = st.one_of(
    st.sampled_from([1, 10**6, 10**12, 10**18, 10**19, 2**63, BIG - 1, BIG]),
    st.integers(1, BIG),
)
VALUES = st.one_of(
    st.sampled_from([5e-324, 1e-300, 1e-30, 1e-9, 1.0, 1e20, 1e100, 1e300, 1.7e308]),
    st.floats(0.0, 1.7e308, allow_nan=False, allow_infinity=False),
)
RULES = st.sampled_from(
    [
        Rule("r", "sentry", "error_rate", max=0.05),
        Rule("r", "sentry", "error_rate", max_increase=0.5),
        Rule("r", "sentry", "error_rate", max_increase=0.0),
        Rule("r", "sentry", "crash_free_rate", min=0.99, direction="decrease"),
        Rule("r", "prometheus", "error_count", max_increase=0.2),
        Rule("r", "newrelic", "p95_duration", max=2.0),
        Rule("r", "newrelic", "p95_duration", max_increase=0.5),
        Rule("r", "checks", "latency_p95", max_increase=0.5),
        Rule("r", "checks", "throughput", max_increase=0.3, direction="decrease"),
    ]
)
POLICIES = st.sampled_from(
    [
        Policy("sequential"),
        Policy("sequential", pass_on="no_failure"),
        Policy("fixed"),
        Policy("threshold"),
    ]
)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    shape = draw(st.sampled_from(["counts", "counts", "samples", "bare"]))
    if shape == "counts":
        total = draw(TOTALS)
        count = draw(st.one_of(st.sampled_from([0, 1, total // 100, total]), st.integers(0, total)))
        return Observation(count / total, count=count, total=total)
    if shape == "samples":
        values = tuple(draw(st.lists(VALUES, min_size=1, max_size=8)))
        return Observation(max(values), values=values, quantile=0.95)
    return Observation(draw(VALUES))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rule=RULES,
    baseline=observations(),
    rounds=st.lists(observations(), min_size=1, max_size=5),
    policy=POLICIES,
    horizon=st.sampled_from([0, 5, 30]),
)
@example(  # before: a NaN ladder (betaincinv's NaN limits past ~1e17 events)
    rule=Rule("r", "sentry", "error_rate", max_increase=0.5),
    baseline=Observation(0.01, count=10**17, total=10**19),
    rounds=[Observation(0.01, count=10**17, total=10**19)] * 3,
    policy=Policy("sequential"),
    horizon=30,
)
def test_an_extreme_observation_is_judged_without_a_raise(
    rule: Rule,
    baseline: Observation,
    rounds: list[Observation],
    policy: Policy,
    horizon: int,
) -> None:
    judge = Judge([rule], {rule.name: baseline}, policy, horizon=horizon)
    state = judge.start()
    for k, obs in enumerate(rounds):
        state, verdict = judge.step(state, {rule.name: obs}, final=k == len(rounds) - 1)
        json.dumps(verdict_to_dict(verdict, decided_at=None), allow_nan=False)
    assert verdict.decision in ("pass", "fail", "inconclusive"), verdict

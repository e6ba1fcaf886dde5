"""No rule the configuration accepts makes the judge raise, whatever its baseline and rounds.

A rule is drawn as a configuration writes it and kept only if `RuleSettings` validates it
(so `direction: decrease` with `max_increase: 100%`, which the sequential judge cannot
test, `ValueError: math domain error`, never reaches it), then judged against baselines
and rounds of every shape the daemon hands in (counts, raw samples, bare figures, none;
values at the ends of floats included) under every policy, with registration's foresight
(`Judge.blind_spots`). A RuntimeWarning of `agent.analysis` is an error here (pyproject's
`filterwarnings`), so an overflow is found as a raise is. The verdict must be JSON as the
API writes it (`allow_nan=False`)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge, judge
from agent.settings import RuleSettings
from agent.windows.evidence import verdict_to_dict

POLICIES = st.sampled_from(
    [
        Policy("sequential", confidence=0.99),
        Policy("sequential", confidence=0.9, pass_on="no_failure"),
        Policy("threshold", failure_limit=2),
        Policy("fixed", confidence=0.95),
    ]
)
SHAPES = [
    ("checks", "error_rate"),
    ("checks", "latency_p50"),
    ("checks", "latency_p95"),
    ("checks", "latency_p99"),
    ("checks", "throughput"),
    ("sentry", "crash_free_rate"),
    ("sentry", "error_rate"),
    ("sentry", "p95_duration"),
    ("prometheus", "error_count"),
]
# the ends of floats and the round numbers a user writes
EDGES = [0.0, 5e-324, 1e-300, 1e-9, 0.001, 0.05, 0.5, 0.999, 1.0, 2.0, 300.0, 1e300, 1.7e308]
NUMBERS = st.one_of(st.sampled_from(EDGES), st.floats(0.0, 1e6, allow_nan=False))
FRACTIONS = st.one_of(st.sampled_from([0.0, 1e-9, 0.1, 0.5, 0.999, 1.0, 2.0, 1e6]), NUMBERS)


@st.composite
def rules(draw: st.DrawFn) -> RuleSettings:
    source, metric = draw(st.sampled_from(SHAPES))
    fields: dict[str, Any] = {"name": "r", "source": source, "metric": metric}
    for key, values in (("max", NUMBERS), ("min", NUMBERS), ("max_increase", FRACTIONS)):
        if draw(st.booleans()):
            fields[key] = draw(values)
    if draw(st.booleans()):
        fields["direction"] = draw(st.sampled_from(["increase", "decrease"]))
    fields["min_samples"] = draw(st.sampled_from([1, 1, 5, 100]))
    try:
        return RuleSettings.model_validate(fields)
    except ValidationError:
        assume(False)
        raise


@st.composite
def observations(draw: st.DrawFn) -> Observation | None:
    shape = draw(st.sampled_from(["counts", "samples", "bare", "none", "error"]))
    if shape == "none":
        return None
    if shape == "error":
        return Observation(None, error="provider down")
    if shape == "counts":
        total = draw(st.sampled_from([1, 10, 200, 10**6]))
        count = draw(st.integers(0, total))
        periods = draw(st.sampled_from([1, 2, 20]))
        return Observation(count / total, count=count, total=total, periods=periods)
    if shape == "samples":
        values = draw(st.lists(NUMBERS, min_size=1, max_size=12))
        return Observation(max(values), values=tuple(values), quantile=0.95)
    return Observation(draw(NUMBERS))


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    rule=rules(),
    baseline=observations(),
    rounds=st.lists(observations(), min_size=1, max_size=6),
    horizon=st.sampled_from([0, 1, 6, 30]),
    policy=POLICIES,
)
@example(  # before: OverflowError squaring the pass side's floor of a bare value
    rule=RuleSettings(name="r", source="checks", metric="latency_p50", max=1e300),
    baseline=None,
    rounds=[Observation(1.0), Observation(2.0)],
    horizon=6,
    policy=Policy("sequential"),
)
@example(  # the largest fall a decrease rule may allow (100% is refused: a math domain error)
    rule=RuleSettings(
        name="r", source="checks", metric="latency_p95", max_increase=0.999, direction="decrease"
    ),
    baseline=Observation(0.1, values=(0.05, 0.1, 0.2), quantile=0.95),
    rounds=[Observation(0.01, values=(0.01, 0.001), quantile=0.95)] * 3,
    horizon=30,
    policy=Policy("sequential"),
)
@example(  # before: an overflow warning moving the baseline's samples past float's end
    rule=RuleSettings(name="r", source="checks", metric="latency_p50", max_increase=0.0),
    baseline=Observation(1.7e308, values=(1.7e308,), quantile=0.95),
    rounds=[Observation(1.0, values=(1.0, 1.7e308), quantile=0.95)],
    horizon=0,
    policy=Policy("sequential"),
)
def test_a_valid_rule_is_judged_without_a_raise(
    rule: RuleSettings,
    baseline: Observation | None,
    rounds: list[Observation | None],
    horizon: int,
    policy: Policy,
) -> None:
    judged = rule.to_rule()
    baselines = {} if baseline is None else {judged.name: baseline}
    judge = Judge([judged], baselines, policy, horizon=horizon)
    judge.blind_spots({judged.name: 10.0})
    state = judge.start()
    for k, obs in enumerate(rounds):
        round_ = {} if obs is None else {judged.name: obs}
        final = k == len(rounds) - 1
        state = judge.advance(state, round_, final=final)
        verdict = judge.verdict(state, final=final)
        json.dumps(verdict_to_dict(verdict, decided_at=None), allow_nan=False)
    assert verdict.decision in ("pass", "fail", "inconclusive"), verdict


def test_a_decrease_of_100_percent_is_judged_without_a_raise_where_config_refuses_it() -> None:
    """The configuration refuses it (a fall of 100% leaves a bound of 0, which nothing falls
    below), but the judge is built from `Rule`s by the benchmark and tests too: its
    exceedance test divided by log(1 - 1) (`ValueError: math domain error`); now, like the
    rank test beside it, it has no test (it cannot fail), and says so."""
    rule = Rule("p95", "checks", "latency_p95", max_increase=1.0, direction="decrease")
    base = {"p95": Observation(0.1, values=(0.05, 0.1, 0.2) * 10, quantile=0.95)}
    fast = [{"p95": Observation(0.001, values=(0.001,) * 10, quantile=0.95)}] * 5
    verdict = judge([rule], base, fast, Policy("sequential"), final=True, horizon=5)
    assert verdict.decision != "fail", verdict.reason

"""Invariants of the judge under every policy, checked with hypothesis.

* a deploy identical to its baseline never fails;
* no data never fails (and ends inconclusive);
* making a regression worse never turns a failure into a pass.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.analysis.observe import merge

POLICIES = st.sampled_from(
    [
        Policy("threshold", failure_limit=1),
        Policy("threshold", failure_limit=3),
        Policy("sequential", confidence=0.99),
        Policy("sequential", confidence=0.9),
        Policy("fixed", confidence=0.98),
    ]
)
TOLERANCE = st.floats(min_value=0.0, max_value=1.0)
LATENCIES = st.lists(st.floats(min_value=0.001, max_value=10.0), min_size=1, max_size=40)
FAST = settings(max_examples=150, deadline=None)


@st.composite
def count_observations(draw: st.DrawFn) -> Observation:
    total = draw(st.integers(min_value=1, max_value=500))
    count = draw(st.integers(min_value=0, max_value=total))
    return Observation(count / total, count=count, total=total)


def latency_observation(values: list[float]) -> Observation:
    return merge([Observation(values[0], values=tuple(values), quantile=0.95)])


def decide(
    rule: Rule, baseline: Observation | None, rounds: list[Observation], policy: Policy
) -> str:
    baselines = {rule.name: baseline} if baseline is not None else {}
    return judge([rule], baselines, [{rule.name: o} for o in rounds], policy, final=True).decision


@FAST
@given(
    obs=count_observations(),
    rounds=st.integers(min_value=1, max_value=30),
    tolerance=TOLERANCE,
    direction=st.sampled_from(["increase", "decrease"]),
    policy=POLICIES,
)
def test_counts_identical_to_the_baseline_never_fail(
    obs: Observation, rounds: int, tolerance: float, direction: str, policy: Policy
) -> None:
    rule = Rule("errors", "checks", "error_rate", max_increase=tolerance, direction=direction)  # type: ignore[arg-type]
    assert decide(rule, obs, [obs] * rounds, policy) != "fail"


@FAST
@given(
    values=LATENCIES,
    rounds=st.integers(min_value=1, max_value=20),
    tolerance=st.floats(min_value=0.0, max_value=0.9),
    direction=st.sampled_from(["increase", "decrease"]),
    metric=st.sampled_from(["latency_p50", "latency_p95", "latency_p99"]),
    policy=POLICIES,
)
def test_latencies_identical_to_the_baseline_never_fail(
    values: list[float],
    rounds: int,
    tolerance: float,
    direction: str,
    metric: str,
    policy: Policy,
) -> None:
    rule = Rule("lat", "checks", metric, max_increase=tolerance, direction=direction)  # type: ignore[arg-type]
    q = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}[metric]
    obs = merge([Observation(values[0], values=tuple(values), quantile=q)])
    assert decide(rule, obs, [obs] * rounds, policy) != "fail"


NO_DATA = st.sampled_from(
    [
        Observation(None, error="timeout"),
        Observation(math.nan),
        Observation(0.5, error="429 from provider"),
        None,
    ]
)


@FAST
@given(
    rounds=st.lists(NO_DATA, max_size=30),
    baseline=st.one_of(st.none(), count_observations()),
    bound=st.floats(min_value=0.0, max_value=1.0),
    policy=POLICIES,
    final=st.booleans(),
)
def test_no_data_never_fails(
    rounds: list[Observation | None],
    baseline: Observation | None,
    bound: float,
    policy: Policy,
    final: bool,
) -> None:
    rules = [
        Rule("a", "checks", "error_rate", max=bound, max_increase=bound),
        Rule("b", "checks", "latency_p95", min=bound),
        Rule("c", "sentry", "throughput", max_increase=bound, direction="decrease"),
    ]
    window = [{r.name: o for r in rules if o is not None} for o in rounds]
    baselines = {r.name: baseline for r in rules if baseline is not None}
    verdict = judge(rules, baselines, window, policy, final=final)
    assert verdict.decision == ("inconclusive" if final else "continue")
    assert all(r.outcome == "inconclusive" for r in verdict.rules)


# a `max` whose share of a round underflows (the overflow in the "can detect" search and the
# NaN and infinite bets it gave: pyproject's filterwarnings make numpy's warnings errors)
@example(
    baseline=Observation(0.0, count=0, total=1),
    rounds=[Observation(0.0, count=0, total=1)],
    extra=[1] * 25,
    tolerance=0.0,
    bound=2.225073858507203e-309,
    policy=Policy("sequential", confidence=0.99, failure_limit=3),
)
@example(
    baseline=Observation(0.0, count=0, total=1),
    rounds=[Observation(0.0, count=0, total=1)] * 25,
    extra=[1] * 25,
    tolerance=0.0,
    bound=5e-324,
    policy=Policy("sequential", confidence=0.99),
)
@FAST
@given(
    baseline=count_observations(),
    rounds=st.lists(count_observations(), min_size=1, max_size=25),
    extra=st.lists(st.integers(min_value=0, max_value=500), min_size=25, max_size=25),
    tolerance=TOLERANCE,
    bound=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0)),
    policy=POLICIES,
)
def test_more_errors_never_turn_a_failure_into_a_pass(
    baseline: Observation,
    rounds: list[Observation],
    extra: list[int],
    tolerance: float,
    bound: float | None,
    policy: Policy,
) -> None:
    rule = Rule("errors", "checks", "error_rate", max_increase=tolerance, max=bound)
    worse = []
    for obs, more in zip(rounds, extra, strict=False):
        assert obs.count is not None and obs.total is not None
        count = min(obs.total, obs.count + more)
        worse.append(Observation(count / obs.total, count=count, total=obs.total))
    if decide(rule, baseline, rounds, policy) == "fail":
        assert decide(rule, baseline, worse, policy) == "fail"


@FAST
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=20, max_value=600),
    shifts=st.lists(st.floats(min_value=0.5, max_value=4.0), min_size=1, max_size=25),
    factor=st.floats(min_value=1.0, max_value=5.0),
    tolerance=st.floats(min_value=0.0, max_value=1.0),
    policy=POLICIES,
)
def test_slower_latencies_never_turn_a_failure_into_a_pass(
    seed: int,
    size: int,
    shifts: list[float],
    factor: float,
    tolerance: float,
    policy: Policy,
) -> None:
    """Rounds are scaled draws like the baseline's (a regression when > 1), then slowed further."""
    rng = np.random.default_rng(seed)
    rule = Rule("lat", "checks", "latency_p95", max_increase=tolerance)
    base = latency_observation(rng.lognormal(-2.5, 0.6, size).tolist())
    draws = [rng.lognormal(-2.5, 0.6, 20) * s for s in shifts]
    original = [latency_observation(d.tolist()) for d in draws]
    slower = [latency_observation((d * factor).tolist()) for d in draws]
    if decide(rule, base, original, policy) == "fail":
        assert decide(rule, base, slower, policy) == "fail"

"""The judge's glance (what the daemon does every round) says what its worded verdict says:
the same decision, and for every rule the same outcome and the same figures a stored round
keeps, round by round over the golden trace's windows (every policy, family and rule set)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.windows.evidence import rule_snapshot
from tests.analysis import judge_trace as trace

SPECS = trace.windows()


@pytest.mark.parametrize(
    "spec", SPECS, ids=[f"{s.family.key}-{s.rps}-{s.rules}-{s.policy}" for s in SPECS]
)
def test_the_glance_agrees_with_the_verdict_every_round(spec: trace.WindowSpec) -> None:
    rng = np.random.default_rng(spec.seed)
    rules = trace.RULE_SETS[spec.rules]
    seen = [
        trace._observe(rules, trace._second(rng, spec.rps, 1.0, 1.0), 1.0)
        | trace._provider(rng, 1.0)
        for _ in range(trace.BASELINE_PERIODS)
    ]
    baselines = {r.name: merge([s[r.name] for s in seen if r.name in s]) for r in rules}
    judge = Judge(rules, baselines, trace.POLICIES[spec.policy], horizon=spec.horizon)
    state = judge.start()
    for k in range(trace.ROUNDS):
        bad = k >= spec.family.onset
        errors, latency = (spec.family.errors, spec.family.latency) if bad else (1.0, 1.0)
        found = trace._second(rng, spec.rps, errors, latency)
        round_ = trace._observe(rules, found, 1.0) | trace._provider(rng, errors)
        if k % 7 == 3:
            round_.pop(rules[0].name)  # a round without data for a rule
        final = k == trace.ROUNDS - 1
        state = judge.advance(state, round_)
        glance, verdict = judge.glance(state, final=final), judge.verdict(state, final=final)
        assert glance.decision == verdict.decision, k
        assert [g.name for g in glance.rules] == [v.name for v in verdict.rules]
        assert [rule_snapshot(g) for g in glance.rules] == [
            rule_snapshot(v) for v in verdict.rules
        ], k
        if verdict.decision == "fail":
            break


@pytest.mark.parametrize("policy", ["sequential", "no_failure"])
def test_a_fresh_agent_without_baselines_glances_as_it_words(policy: str) -> None:
    """No background runs yet (the footprint benchmark's windows): the relative latency
    rule has no baseline, so no test; its glance is not worded but says what the words do,
    and its samples are still counted (NaN and infinite latencies left out)."""
    rng = np.random.default_rng(5)
    rules = trace.RULE_SETS["footprint"]
    judge = Judge(rules, {}, trace.POLICIES[policy], horizon=trace.ROUNDS)
    state = judge.start()
    finite = 0
    for k in range(trace.ROUNDS):
        round_ = trace._observe(rules, trace._second(rng, 10, 1.0, 1.0), 1.0)
        latency = round_["latency"]
        if k % 5 == 2 and latency.values:
            latency = replace(latency, values=(*latency.values, float("nan"), float("inf")))
            round_["latency"] = latency
        finite += sum(1 for v in latency.values if np.isfinite(v))
        final = k == trace.ROUNDS - 1
        state = judge.advance(state, round_)
        glance, verdict = judge.glance(state, final=final), judge.verdict(state, final=final)
        assert glance.decision == verdict.decision, k
        assert [rule_snapshot(g) for g in glance.rules] == [
            rule_snapshot(v) for v in verdict.rules
        ], k
        untested, worded = glance.rules[1], verdict.rules[1]
        assert (untested.outcome, untested.observed, untested.evidence) == (
            worded.outcome,
            worded.observed,
            worded.evidence,
        ), k
    assert verdict.rules[1].evidence == {"reason": "no baseline"}
    assert state["rules"]["latency"]["seq"]["samples"] == finite > 0

"""A rule an overloaded agent held (its fail within the agent's own delay, or a pass after
such a fail) reads as breached by neither policy's warning: not `breached` to the alerts,
no `! breach` in status or on the deploy page (`common.breaching`). The threshold streak
was dropped from a held rule's evidence, the sequential warning (`breaching`) was not;
the judge never writes one on a held rule (the second test says why), so this guards the
guard's own contract, not a path an interface reaches today."""

from __future__ import annotations

from typing import Any

import pytest

from agent.analysis.judge import Judge
from agent.analysis.types import Observation, RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from agent.settings_file import load_settings
from agent.windows.foresight import policy_of
from common.breaching import breaching, in_a_streak, warned
from tests.analysis.test_breach_warning import EXAMPLE, errors
from tests.test_agent_lag import LATENCY_UP, MS, _baseline, _latency_fail, _tally

WARNING = {"likelihood_ratio": 379.0, "likelihood_ratio_needed": 1500.0}
"""A sequential rule's `breaching` read-out, as the judge writes it beside a pass."""


def breached(outcome: str, evidence: dict[str, Any]) -> bool:
    """Whether the alerts (`_state_of`) or status and the deploy page (`breaching`) would
    say the rule is breached."""
    return in_a_streak(evidence) or warned(evidence) or breaching(outcome, evidence) is not None


@pytest.mark.parametrize(
    "evidence",
    [{"policy": "threshold", "streak": 1, "failure_limit": 3}, {"breaching": WARNING}],
    ids=["threshold", "sequential"],
)
def test_a_held_rules_pass_after_its_held_fail_reads_as_no_breach(
    evidence: dict[str, Any],
) -> None:
    tally, rules, base = _tally(100, 3, latencies=10), [LATENCY_UP], _baseline(1 * MS)
    glance, verdict = _latency_fail(6 * MS)
    assert tally.guard(glance, verdict, rules, base, final=False)[0].decision == "continue"
    sequential = {"policy": "sequential", **evidence} if "breaching" in evidence else evidence
    passing = RuleVerdict(
        "probe-latency",
        "checks",
        "latency_p95",
        "pass",
        MS,
        MS,
        "max_increase 20%",
        "ok",
        sequential,
    )
    assert breached("pass", sequential)  # the judge's words alone: a breach
    ended = Glance("pass", (RuleGlance("probe-latency", "pass", MS, evidence),))
    said = Verdict("pass", "1 of 1 rule passed over 8 rounds", (passing,))
    out_glance, out = tally.guard(ended, said, rules, base, final=True)
    assert out is not None and out.decision == "inconclusive"
    for rule in (out.rules[0], out_glance.rules[0]):
        assert rule.outcome == "inconclusive" and rule.evidence["agent_overloaded"]
        assert not breached(rule.outcome, rule.evidence), rule.evidence


def test_a_sequential_rule_that_failed_fails_every_later_round_without_a_warning(
    example_env: dict[str, str],
) -> None:
    """Why no held sequential rule carries a warning as the judge writes it: its fail, in
    glance and verdict alike, has no `breaching`, and good rounds after it leave it
    failed (its test's crossing is kept), so it is never a pass after a held fail."""
    env = load_settings(EXAMPLE).environments["production"]
    base = {"probe-errors": Observation(0.005, count=24, total=4800, periods=120)}
    judge = Judge(
        [r.to_rule() for r in env.rules],
        base,
        policy_of(env),
        horizon=round(env.window / env.interval),
    )
    state, failed = judge.start(), 0
    shares = [1.0] * 3 + [0.0] * 27
    for n, share in enumerate(shares, start=1):
        final = n == len(shares)
        state, verdict = judge.step(state, errors(share), final=final)
        glance = judge.glance(state, final=final)
        both: list[RuleVerdict | RuleGlance] = [*verdict.rules, *glance.rules]
        judged = [r for r in both if r.name == "probe-errors"]
        if failed or judged[0].outcome == "fail":
            failed += 1
            assert [r.outcome for r in judged] == ["fail", "fail"], (n, judged)
            assert all("breaching" not in r.evidence for r in judged), (n, judged)
    assert failed >= 27  # the third round all errors fails it, and it stays failed

"""The threshold policy: each round against the rule's bounds, `failure_limit` consecutive
breaching rounds fail it (what Flagger and Argo Rollouts do).

Pure: no I/O. The bounds themselves are `agent.analysis.threshold`; this module keeps the
streak in the judge's state and words the verdict. The sequential policy uses it too, for a
bare value with a `min` that is not a rate (no bounded bad side to test).
"""

from __future__ import annotations

from typing import Any

from agent.analysis import sketch
from agent.analysis.describe import format_past, format_value
from agent.analysis.policies.base import BasePolicy
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.threshold import breaches
from agent.analysis.types import Observation, Rule
from agent.analysis.verdicts import (
    Judged,
    State,
    count_detail,
    effect,
    needs_baseline,
    no_baseline,
    past_short_of_failing,
    round_number,
    rule_verdict,
    summary,
)
from common.words import counted


class ThresholdPolicy(BasePolicy):
    # each round's figure against the bounds: a p95 Sentry gave with no fresh duration
    # samples (its pages failed, or none were new) is still that round's figure
    needs_samples = False

    def start(self, rule: Rule) -> State:
        return {
            "streak": [],
            "streak_rounds": 0,
            "streak_value": None,
            "breaches": [],
            "failed_at": None,
        }

    def step(self, rule: Rule, st: State, obs: Observation, kind: Kind, index: int) -> None:
        if st["failed_at"] is not None:
            return  # the streak that failed the rule is its evidence
        if obs.total is not None and obs.total < rule.min_samples:
            return
        assert obs.value is not None
        st["streak_rounds"] += 1
        base = self.window.base[rule.name]
        found = breaches(rule, obs.value, base.value if base else None)
        st["breaches"] = [[b.op, b.text] for b in found]
        st["streak_value"] = float(obs.value)
        if not found:
            st["streak"] = []
            return
        limit = max(1, self.window.policy.failure_limit)
        st["streak"] = [*st["streak"], index][-limit:]
        if len(st["streak"]) >= limit:
            st["failed_at"] = index

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        base = self.window.base[rule.name]
        last_value = st["streak_value"]
        if needs_baseline(rule, base):
            return no_baseline(rule, last_value, st)
        limit = max(1, self.window.policy.failure_limit)
        streak = st["streak"]
        evidence: dict[str, Any] = {
            "policy": "threshold",
            "rounds_with_data": st["streak_rounds"],
            "streak": len(streak),
            "failure_limit": limit,
            # round numbers, as the deploy object's `rounds` counts them (the first is 1)
            "failing_rounds": [round_number(index) for index in streak],
            "failed_at_round": round_number(st["failed_at"]),
            "breaches": [text for _, text in st["breaches"]],
            "effect": effect(last_value, base),
        }
        # a rule not failed at the window's end is said by the window's figures (the
        # alert's `over N rounds`: its counts, a percentile of all its samples, a bare
        # value's mean), not its last round's; a failed one by the round that failed it
        window = final and st["failed_at"] is None
        counts = count_detail(rule, st, pooled=window)
        whole = self.pooled(rule, st) if window else None
        if st["streak_rounds"] == 0:
            # every round with data had fewer than `min_samples`: judged in none, which at
            # the window's end is no pass (`Judged.none_within`), as a rule without data
            detail = f"no round with at least {counted(rule.min_samples, 'sample')}"
            verdict = rule_verdict(rule, "inconclusive", None, base, detail, evidence)
            lacking = f"{rule.name}: {detail}, so none was judged against its bound"
            return Judged(verdict, lacking=lacking, none_within=final)
        metric = rule.metric
        value = format_value(metric, last_value)
        if st["failed_at"] is not None:
            op, text = st["breaches"][0]
            # the breach of the failing round again (pure: the same value and baseline),
            # for its limit: the value is written with the digits that show it past it
            past = breaches(rule, last_value, base.value if base else None)
            if past:
                value = format_past(metric, last_value, past[0].limit)
            n = len(streak)
            reason = f"{rule.name}: {metric} {value} {op} {text} for {counted(n, 'round')}"
            detail = counts or f"{metric} {value} {op} {text}"
            verdict = rule_verdict(rule, "fail", last_value, base, detail, evidence)
            return Judged(verdict, st["failed_at"], reason)
        shown = last_value if whole is None else whole
        said = summary(rule, st, whole, _samples(st, kind)) if whole is not None else counts
        if final and st["breaches"] and len(streak) == st["streak_rounds"]:
            figure = said or f"{metric} {value}"
            return _none_within(rule, st, base, limit, figure, shown, evidence)
        if st["breaches"]:
            state = f"past {st['breaches'][0][1]} for {len(streak)} of {counted(limit, 'round')}"
            shown = last_value  # past its bound at the end: shown by that round, as it says
            said = counts
        else:
            state = "within bounds"
        detail = f"{said}; {state}" if said else f"{metric} {value}, {state}"
        return Judged(rule_verdict(rule, "pass", shown, base, detail, evidence))


def _samples(st: State, kind: Kind) -> float:
    """What a rule's window figure rests on: its probes, its samples, its rounds with data."""
    if kind == "proportion":
        return float(st["total"])
    if kind == "distribution":
        return float(sketch.size(st["sketch"]))
    return float(st["with_data"])


def _none_within(
    rule: Rule,
    st: State,
    base: BaselineData | None,
    limit: int,
    figure: str,
    observed: float | None,
    evidence: dict[str, Any],
) -> Judged:
    """A rule every judged round of which was past its bound, too few of them to fail, at
    the window's end: `inconclusive`, not passed. Why: rounds without data neither break
    nor extend a streak, so a window whose only round with data breached passed on that
    round alone (what did not fail passes), with no round showing the rule within it."""
    judged = st["streak_rounds"]
    past = st["breaches"][0][1]
    where = "the only round judged" if judged == 1 else f"each of the {judged} rounds judged"
    detail = (
        f"{figure}; past {past} in {where}, none within it: {judged} of"
        f" {counted(limit, 'round')}, too few to fail, and no evidence of a pass"
    )
    said = evidence | {"reason": "no round within its bound"}
    verdict = rule_verdict(rule, "inconclusive", observed, base, detail, said)
    lacking = past_short_of_failing(rule, verdict, past, f"in {where}")
    return Judged(verdict, lacking=lacking, none_within=True)

"""The judge as a fold: `Judge.step(state, round) -> (state, verdict)`.

Pure: no I/O, no clock, no asyncio, no logging. A `Judge` is compiled once per window from
its rules, baselines and policy; its state is a small JSON-able dict (counts, running
e-values, a quantile sketch of the new release) that does not grow with the number of
rounds. The daemon stores the state with each round and resumes from it after a restart;
`judge()` folds a list of rounds in one go (tests, the threshold peers of the benchmark).
Same code, same decisions.

How a rule's evidence is read depends on what its observations carry:
* counts (`count` of `total`, a `*_rate` metric): tests on proportions, one factor per round;
* raw samples (`values` of a `latency_pNN` metric): rank and quantile tests, one factor per
  round;
* a bare value (a provider's rate or percentile, throughput): a test of the mean of the
  rounds' values against the bound (`agent.analysis.sequential`), except a `min` bound on a
  value that is not a rate, which has no bounded bad side and keeps the threshold streak,
  as does a value of either sign (a query) from its first value below 0.

The judge keeps what every policy shares (a rule's kind, rounds with data, pooled counts, a
quantile sketch) and hands each usable round to the window's policy, found by name in
`agent.analysis.policies` (`threshold`, `sequential`, `fixed`, or any registered one). No
data, NaN or a missing baseline make a rule `inconclusive`; they never fail it. A rule with
no data in any round (its provider down throughout) leaves the window `inconclusive` at its
end under every policy, `threshold`, `fixed` and `pass_on: no_failure` included: it was not
judged at all, which is not a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agent.analysis import sketch, top_values
from agent.analysis.describe import format_value, is_rate, quantile_of, threshold_text
from agent.analysis.observe import NO_SAMPLES
from agent.analysis.policies import Window, compile_policy
from agent.analysis.policies.fixed import FixedPolicy
from agent.analysis.policies.sequential import SequentialPolicy
from agent.analysis.policies.threshold import ThresholdPolicy
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.threshold import breaches
from agent.analysis.types import (
    Observation,
    Policy,
    Rule,
    RuleOutcome,
    RuleVerdict,
    Verdict,
    WindowDecision,
)
from agent.analysis.verdicts import (
    Glance,
    Judged,
    RuleGlance,
    State,
    and_more,
    glance_of,
    no_data,
)
from common.breaching import breaching, unproven
from common.words import counted

__all__ = ["STATE_VERSION", "Glance", "Judge", "PassOn", "State", "judge"]

PassOn = Literal["evidence", "no_failure"]

STATE_VERSION = 18
"""The shape of `State`; bump it when the shape changes (2: one row per confidence level
in the rank and exceedance tests; 4: the two-sample count test's own ladder and bets, 12
rows of 10; 5: the rank and exceedance tests bet on conformal placements and keep the
window's histogram), or what its numbers mean (3: a count baseline's limits take its periods
as the units, so its ladder's wealth was bet against other levels; 6: the two-sample count
test's e-detector mixes only its large bets, so its recorded detector peaks were mixed
otherwise; 7: the rank test's three bets are multiples of a stake sized per window, where
six fixed stakes were; 8: the two-sample count test's ladder has 37 rows, not 12; 9: a
relative latency bound's exceedance test bets multiples of an aimed stake before its eight
count bets; 10: a test with a look at the window's end keeps its running sums, `fin`, and
its p-value there, `final_p`; 11: a bare value's bound of 1 or more has a value test, so
its rule's state has a test where it had none; 12: a count's relative bound over a baseline
of 0 has a test, and a relative bound over a baseline of 0 or less of a value that may be
negative keeps the streak's fields instead: an older state lacked the test, a KeyError;
and a value of either sign's first value below 0 ends its value test, marked `below_0` from
then on: added before 12 was released, and absent until such a value, so a 12 stored
without it is this judge's state of any window whose value never went below 0; 13: an
absolute `max`/`min` on a proportion or a distribution looks at the window's end too, so
its test keeps `fin` and `final_p`, and its e-processes bet at four fifths of the alpha
they had: a 12 lacks `fin`, a KeyError at the window's end; 14: a relative latency bound's
exceedance test adds five tilted bets after its ten linear ones (`exceedance_bets`), so a
13's wealth rows are short, a ValueError at its next round; 15: a relative latency bound
over a baseline that kept its periods ranks its rounds among them (`latency_period_ranks`),
a test a 14 lacks, a KeyError at its next round, and a relative count bound's period-rank
test has an e-detector, whose `sr` holds a row of martingales per strategy where a 14 held a
flat list, a TypeError at its next round, and its two-sample e-process bets at a smaller
level; 16: a latency rule keeps its window's top values, `top` (`top_values`), for its exact
percentile: a 15 lacks them, and read as none kept yet would give a wrong one; 17: a relative
latency bound's period-rank test has an e-detector too, whose `sr` holds a row of martingales
per strategy where a 16 held a flat list, a TypeError at its next round; 18: a share's or
rate's pass test keeps the weight its first round sized on no event, `w0`
(`stats.no_event_weight`): a 17 lacks it, and read as the uniform mixture's would keep a
short window from the end its own rounds show), so that a restart never reads a state it
cannot."""


def judge(
    rules: Sequence[Rule],
    baselines: Mapping[str, Observation],
    rounds: Sequence[Mapping[str, Observation]],
    policy: Policy,
    *,
    final: bool,
    horizon: int = 0,
) -> Verdict:
    """Judge a window after its latest round, folding every round from the start.

    `baselines` maps rule name → baseline observation (missing: no baseline); `rounds` holds
    every round so far, oldest first; `final` is true when the window's time is up;
    `horizon` is the window's planned number of rounds (0: unknown, no e-detector).
    """
    judge_ = Judge(rules, baselines, policy, horizon=horizon)
    state = judge_.start()
    verdict = judge_.verdict(state, final=final)
    for i, round_ in enumerate(rounds):
        state, verdict = judge_.step(state, round_, final=final and i == len(rounds) - 1)
    return verdict


class Judge:
    """One window's rules compiled against its baselines; `step` folds one round in."""

    def __init__(
        self,
        rules: Sequence[Rule],
        baselines: Mapping[str, Observation],
        policy: Policy,
        *,
        horizon: int = 0,
    ) -> None:
        self.rules = tuple(rules)
        self.policy = policy
        self.horizon = max(0, horizon)
        self.base = {r.name: BaselineData.from_observation(baselines.get(r.name)) for r in rules}
        alpha = min(max(1.0 - policy.confidence, 1e-12), 0.5)  # confidence 1 would never fail
        self.alpha_rule = alpha / max(1, len(self.rules))
        self.rule_policy = compile_policy(
            Window(self.rules, self.base, policy, alpha, self.alpha_rule, self.horizon)
        )
        self._copy = _copy_dicts if isinstance(self.rule_policy, _REPLACE_LISTS) else _copy

    # -- the fold -------------------------------------------------------------------------

    def start(self) -> State:
        return {
            "v": STATE_VERSION,
            "rounds": 0,
            "rules": {r.name: _rule_start() | self.rule_policy.start(r) for r in self.rules},
        }

    def step(
        self, state: State, round_: Mapping[str, Observation], *, final: bool
    ) -> tuple[State, Verdict]:
        """Fold one round (rule name → observation) into a copy of `state`; judge the window."""
        new = self.advance(state, round_, final=final)
        return new, self.verdict(new, final=final)

    def advance(
        self,
        state: State,
        round_: Mapping[str, Observation],
        *,
        in_place: bool = False,
        final: bool = False,
    ) -> State:
        """`step` without the verdict's wording: the new state only (`failed_round` reads
        it). The decision benchmark calls this to replay thousands of windows quickly.

        `in_place`: fold into `state` itself rather than a copy, for a caller that keeps
        no other reference to it (the daemon, one state per window): a copy is a score of
        new containers a round, each living the round's length, which is most of what the
        garbage collector walks at thousands of windows. The same state either way.

        `final`: this round is the window's last (its time is up): the policy's tests that
        look once, at the window's end, look now (`RulePolicy.finish`)."""
        new: State = state if in_place else self._copy(state)
        index = new["rounds"]
        new["rounds"] = index + 1
        for rule in self.rules:
            self._step_rule(rule, new["rules"][rule.name], round_.get(rule.name), index)
        finish = getattr(self.rule_policy, "finish", None) if final else None
        if finish is not None:
            for rule in self.rules:
                finish(rule, new["rules"][rule.name], index)
        return new

    def restart_rule(self, state: State, name: str) -> None:
        """Start rule `name` afresh in `state` (in place): its baseline came after the
        window's start, and what it folded without one cannot be read against it."""
        rule = next(r for r in self.rules if r.name == name)
        state["rules"][name] = _rule_start() | self.rule_policy.start(rule)

    def copy(self, state: State) -> State:
        """A copy of `state` that later folds `in_place` leave as it is."""
        return self._copy(state)

    def failed_round(self, state: State) -> int | None:
        """The round (0-based) at which the first rule failed, if any."""
        hits = [self.rule_policy.failed_at(r, state["rules"][r.name]) for r in self.rules]
        found = [h for h in hits if h is not None]
        return min(found) if found else None

    def _step_rule(self, rule: Rule, st: State, obs: Observation | None, index: int) -> None:
        if obs is None or not _usable(obs):
            said = None if obs is None else obs.error
            if said not in _EMPTY_ROUND or st["last_error"] is None:
                st["last_error"] = said or ("no observation" if obs is None else "no data")
            return
        if st["kind"] is None:
            st["kind"] = _kind_of(rule, obs)
        kind: Kind = st["kind"]
        if kind == "proportion" and not _has_counts(obs):
            st["last_error"] = "no counts"
            return
        on_waits = obs.rests_on_waits or 2 * obs.lower_bounds > len(obs.values)
        if on_waits and self._waits_within(rule, obs):
            st["last_error"] = _waits_words(rule, obs)
            return
        needs_samples = getattr(self.rule_policy, "needs_samples", True)
        if kind == "distribution" and not obs.values and needs_samples:
            st["last_error"] = "no samples"
            return
        st["with_data"] += 1
        st["last_value"] = float(obs.value) if obs.value is not None else None
        if kind == "proportion":
            st["count"] += min(max(float(obs.count or 0), 0.0), float(obs.total or 0))
            st["total"] += float(obs.total or 0)
            st["last_counts"] = [int(obs.count or 0), int(obs.total or 0)]
        elif kind == "distribution":
            if obs.values:
                sketch.add(st["sketch"], obs.values)
                top = st.get("top", [])  # absent until the first; None once dropped
                if top is not None:
                    n, q = sketch.size(st["sketch"]), quantile_of(rule.metric) or 0.5
                    st["top"] = top_values.fold(top, obs.values, n, q)
        else:
            st["vsum"] += float(obs.value or 0.0)
        self.rule_policy.step(rule, st, obs, kind, index)

    def _waits_within(self, rule: Rule, obs: Observation) -> bool:
        """Whether a round whose latencies are mostly timeouts' waits (lower bounds on the
        target's time) is not past the rule's upper bound: then it shows nothing, since
        the target's time may be anywhere above them. Past it, it is past it (at least
        that long), and judged so: a target that stopped answering still fails."""
        if quantile_of(rule.metric) is None or obs.value is None:
            return False
        base = self.base[rule.name]
        past = breaches(rule, obs.value, base.value if base is not None else None)
        return not any(b.op == ">" for b in past)

    # -- reading the state ----------------------------------------------------------------

    def verdict(self, state: State, *, final: bool) -> Verdict:
        judged = [self._judge_rule(r, state["rules"][r.name], final) for r in self.rules]
        return _decide(judged, state["rounds"], final, self.rule_policy.on_evidence)

    def glance(self, state: State, *, final: bool) -> Glance:
        """`verdict`'s decision and each rule's outcome and headline figures, without the
        words: what every round needs (the daemon words the verdict only when it is read,
        an alert fires or the window ends). Same decision as `verdict`, always."""
        rules = tuple(self._glance_rule(r, state["rules"][r.name], final) for r in self.rules)
        failed = any(g.failed_at is not None for g in rules)
        outcomes = [g.outcome for g in rules]
        silent = any(g.without_data or g.none_within for g in rules)
        on_evidence = self.rule_policy.on_evidence
        return Glance(_decision(outcomes, failed, final, on_evidence, silent), rules)

    def _glance_rule(self, rule: Rule, st: State, final: bool) -> RuleGlance:
        if st["with_data"] == 0:
            return glance_of(no_data(rule, self.base[rule.name], st))
        return self.rule_policy.glance(rule, st, st["kind"], final)

    def _judge_rule(self, rule: Rule, st: State, final: bool) -> Judged:
        if st["with_data"] == 0:
            return no_data(rule, self.base[rule.name], st)
        return self.rule_policy.judge(rule, st, st["kind"], final)

    def blind_spots(
        self, per_round: Mapping[str, float], interval: float | None = None
    ) -> list[str]:
        """Before the first round: each rule whose bound is tighter than the smallest change
        it can detect by the window's end, at `per_round` samples a round (the traffic its
        baseline period saw), or that a release like its baseline would likely not show
        holds by then (the window it would need said at `interval` seconds a round), one
        sentence each (policies that can tell)."""
        return self.rule_policy.blind_spots(per_round, interval)


def _copy(value: Any) -> Any:
    """A deep copy of a JSON-like state (6x faster than `copy.deepcopy`, no memo needed):
    leaves are shared, a sketch (flat: bucket -> count) is copied in one go."""
    if type(value) is dict:
        return {
            k: (dict(v) if k == "sketch" else _copy(v)) if type(v) in _NESTED else v
            for k, v in value.items()
        }
    if value and type(value[0]) in _NESTED:  # the state's lists are all of one kind
        return [_copy(v) for v in value]
    return list(value)


_NESTED = (dict, list)


def _copy_dicts(value: State) -> State:
    """A copy of a state whose lists are shared: for the built-in policies, whose steps
    (and the judge's own) change dicts in place but replace a list rather than change it,
    so the caller's state stays as it was at a sixth of `_copy`'s cost (most of a state's
    containers are its tests' rows of wealth). Copied whole in one go, then its dicts
    replaced by their copies (a third faster than building it key by key)."""
    new = value.copy()
    for k, v in value.items():
        if type(v) is dict:
            new[k] = v.copy() if k in _FLAT else _copy_dicts(v)
    return new


_FLAT = frozenset({"sketch", "tally"})
"""Dicts of numbers only (bucket or key -> count): copied in one go."""
_REPLACE_LISTS = (SequentialPolicy, ThresholdPolicy, FixedPolicy)
"""Policies that never change a list of the state in place (a registered one may: it gets
the deep `_copy`)."""


def _rule_start() -> State:
    """The fields every policy shares; the policy adds its own (`RulePolicy.start`)."""
    return {
        "kind": None,
        "with_data": 0,
        "last_error": None,
        "last_value": None,
        "last_counts": None,
        "count": 0.0,
        "total": 0.0,
        "sketch": {},
        "vsum": 0.0,
    }


def _kind_of(rule: Rule, obs: Observation) -> Kind:
    if quantile_of(rule.metric) is not None and obs.values:
        return "distribution"
    if is_rate(rule.metric) and _has_counts(obs):
        return "proportion"
    return "value"


def _waits_words(rule: Rule, obs: Observation) -> str:
    """Why a round whose percentile rests on timeouts' waits within the bound gave a latency
    rule no data."""
    figure = format_value(rule.metric, obs.value)
    waits = "their waits, lower bounds" if obs.lower_bounds > 1 else "its wait, a lower bound"
    return (
        f"{obs.lower_bounds} of {counted(len(obs.values), 'probe')} timed out:"
        f" {rule.metric} {figure} rests on {waits} on the target's time, which cannot"
        f" show it within {threshold_text(rule)}"
    )


_EMPTY_ROUND = frozenset({None, NO_SAMPLES})
"""What a round with nothing in it says of a rule (no run of its check, a provider's answer
not in yet): no reason of its own, so it never replaces the reason an earlier round gave
for the rule having no data (a provider's error, a check's bug), which the window's
reason then names, where it said `no data (no data)` or `no data (no samples)`."""


def _usable(obs: Observation) -> bool:
    return obs.value is not None and math.isfinite(obs.value) and obs.error is None


def _has_counts(obs: Observation) -> bool:
    return obs.count is not None and obs.total is not None and obs.total > 0


# -- the window -------------------------------------------------------------------------------


def _decision(
    outcomes: Sequence[RuleOutcome],
    failed: bool,
    final: bool,
    on_evidence: bool,
    without_data: bool,
) -> WindowDecision:
    """`_decide`'s decision alone, from the rules' outcomes (`without_data`: a rule had no
    data in any round, or no round within its bound: `Judged.none_within`)."""
    if failed:
        return "fail"
    if not final:
        return "continue"
    inconclusive = sum(1 for o in outcomes if o == "inconclusive")
    if on_evidence:
        return "pass" if outcomes and not inconclusive else "inconclusive"
    if without_data:
        return "inconclusive"
    return "pass" if len(outcomes) > inconclusive else "inconclusive"


def _standing(verdicts: tuple[RuleVerdict, ...]) -> str:
    """How an open window's rules stand: `1 passing; 1 past its bound, short of
    failure_limit`. A threshold rule past its bound for fewer rounds than its limit is
    `pass` (the window would pass if it ended now) but is not said to be passing."""
    streaking = sum(
        1 for v in verdicts if (b := breaching(v.outcome, v.evidence)) is not None and b.streak
    )
    passing = sum(1 for v in verdicts if v.outcome != "inconclusive") - streaking
    short = f"{streaking} past its bound, short of failure_limit"
    if not streaking:
        return f"{passing} passing"
    return f"{passing} passing; {short}" if passing else short


def _decide(judged: list[Judged], rounds: int, final: bool, on_evidence: bool) -> Verdict:
    verdicts = tuple(j.verdict for j in judged)
    failed = [j for j in judged if j.failed_at is not None]
    if failed:
        first = min(failed, key=lambda j: j.failed_at or 0)
        return Verdict("fail", first.reason + and_more(len(failed) - 1), verdicts)
    judgeable = sum(1 for v in verdicts if v.outcome != "inconclusive")
    inconclusive = len(verdicts) - judgeable
    of_rounds = counted(rounds, "round")
    if not verdicts:
        decision: WindowDecision = "inconclusive" if final else "continue"
        return Verdict(decision, "no rules to judge: this environment has none", verdicts)
    if not final:
        return Verdict(
            "continue", f"no rule failed after {of_rounds} ({_standing(verdicts)})", verdicts
        )
    if on_evidence:
        if verdicts and not inconclusive:
            return Verdict("pass", _passed_on_evidence(verdicts, of_rounds), verdicts)
        past, rest = _past_first([j for j in judged if j.verdict.outcome == "inconclusive"])
        lacking = f"{len(rest)} of {len(verdicts)} lacked evidence of a pass: " + "; ".join(
            j.lacking for j in rest
        )
        if past:
            return Verdict("inconclusive", past + (f"; and {lacking}" if rest else ""), verdicts)
        return Verdict("inconclusive", f"no rule failed over {of_rounds}, but {lacking}", verdicts)
    silent = [j for j in judged if j.without_data or j.none_within]
    past, quiet = _past_first(silent)
    if past:
        # a rule past its bound in every round judged, too few to fail, said first
        if not quiet:
            return Verdict("inconclusive", past, verdicts)
        return Verdict(
            "inconclusive", f"{past}; and {_silent_words(quiet, len(verdicts))}", verdicts
        )
    if judgeable and silent:
        # what did not fail passes, but a rule that never had data (its provider down
        # throughout) was not judged at all: the contract's inconclusive, never a pass;
        # nor is one whose every round judged was past its bound (`Judged.none_within`)
        return Verdict(
            "inconclusive",
            f"no rule failed over {of_rounds}, but {_silent_words(silent, len(verdicts))}",
            verdicts,
        )
    if judgeable:
        extra = f", {inconclusive} inconclusive" if inconclusive else ""
        return Verdict(
            "pass",
            f"{judgeable} of {counted(len(verdicts), 'rule')} passed over {of_rounds}{extra}",
            verdicts,
        )
    if len(silent) == len(verdicts):
        named = "; ".join(j.lacking for j in silent)
        none = (
            "no rule had data to judge"
            if all(j.without_data for j in silent)
            else "no rule was seen within its bound"
        )
        return Verdict("inconclusive", f"{none} over {of_rounds}: {named}", verdicts)
    # a rule with data but nothing to judge it against (no baseline) had data: said so
    named = "; ".join(j.lacking or f"{j.verdict.name}: {j.verdict.detail}" for j in judged)
    return Verdict("inconclusive", f"no rule could be judged over {of_rounds}: {named}", verdicts)


def _past_first(judged: list[Judged]) -> tuple[str, list[Judged]]:
    """Of `judged` (rules that kept the window from passing), the words of those that
    ended past their bound short of the evidence to fail (`common.breaching.unproven`),
    which the reason leads with (on-call reads first that a regression may be live), and
    the others."""
    past = [j for j in judged if unproven(j.verdict.outcome, j.verdict.evidence) is not None]
    return "; ".join(j.lacking for j in past), [j for j in judged if j not in past]


def _silent_words(silent: list[Judged], rules: int) -> str:
    """`1 of 2 had no data in any round: <why>`: rules not judged at all."""
    had = (
        "had no data in any round"
        if all(j.without_data for j in silent)
        else "had no round within its bound"
        if all(j.none_within for j in silent)
        else "had no data, or no round within its bound"
    )
    return f"{len(silent)} of {rules} {had}: {'; '.join(j.lacking for j in silent)}"


def _passed_on_evidence(verdicts: Sequence[RuleVerdict], of_rounds: str) -> str:
    """A pass's reason where passing takes evidence. A rule no sequential test covers (a
    bare value's `min`, one gone below 0: `SequentialPolicy._streak_only`) passed by the
    threshold streak (its evidence's `policy`), which is no evidence that it holds; the
    reason names those rules rather than call every rule shown within its bound."""
    streak = [v.name for v in verdicts if v.evidence.get("policy") == "threshold"]
    if not streak:
        return f"{_all_rules(len(verdicts))} within bounds on evidence over {of_rounds}"
    shown = [v.name for v in verdicts if v.name not in streak]
    within = "they are within their bounds" if len(streak) > 1 else "it is within its bound"
    alone = (
        "by the threshold streak alone (too few rounds in a row past the bound to fail),"
        f" which is no evidence that {within}: {', '.join(streak)}"
    )
    if not shown:
        return f"{_all_rules(len(verdicts))} passed over {of_rounds} {alone}"
    return (
        f"{_all_rules(len(verdicts))} passed over {of_rounds}: {len(shown)} within bounds on"
        f" evidence ({', '.join(shown)}), {len(streak)} {alone}"
    )


def _all_rules(count: int) -> str:
    """`all 3 rules`, `both rules`, and `1 of 1 rule` where "all 1 rules" read as a slip."""
    if count == 1:
        return "1 of 1 rule"
    return "both rules" if count == 2 else f"all {count} rules"

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
  value that is not a rate, which has no bounded bad side and keeps the threshold streak.

Policies: `threshold` (bounds per round, `failure_limit` consecutive breaches), `sequential`
(always-valid tests, `agent.analysis.sequential`; the chance of failing a good deploy is at
most 1 - confidence over the whole window; with `pass_on: evidence` a rule passes only when
its confidence sequence lies inside its bounds, and is `inconclusive` at the end otherwise),
`fixed` (Kayenta-like, judged once at the end, `agent.analysis.fixed`). No data, NaN or a
missing baseline make a rule `inconclusive`; they never fail it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from agent.analysis import sketch
from agent.analysis.describe import (
    format_value,
    is_rate,
    quantile_of,
    threshold_text,
    unit_noun,
)
from agent.analysis.fixed import FixedRule
from agent.analysis.sequential import BaselineData, Kind, Reached, SequentialRule
from agent.analysis.threshold import breaches
from agent.analysis.types import (
    Observation,
    Policy,
    Rule,
    RuleOutcome,
    RuleVerdict,
    Verdict,
)

PassOn = Literal["evidence", "no_failure"]
State = dict[str, Any]
"""A judge's state: JSON-able, the same size after round 10 and round 10,000."""

STATE_VERSION = 1


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
        self._compiled: dict[tuple[str, str], SequentialRule] = {}
        self._fixed: dict[tuple[str, str], FixedRule] = {}

    # -- the fold -------------------------------------------------------------------------

    def start(self) -> State:
        return {
            "v": STATE_VERSION,
            "rounds": 0,
            "rules": {r.name: _rule_start() for r in self.rules},
        }

    def step(
        self, state: State, round_: Mapping[str, Observation], *, final: bool
    ) -> tuple[State, Verdict]:
        """Fold one round (rule name → observation) into a copy of `state`; judge the window."""
        new = self.advance(state, round_)
        return new, self.verdict(new, final=final)

    def advance(self, state: State, round_: Mapping[str, Observation]) -> State:
        """`step` without the verdict's wording: the new state only (`failed_round` reads
        it). The decision benchmark calls this to replay thousands of windows quickly."""
        new: State = _copy(state)
        index = new["rounds"]
        new["rounds"] = index + 1
        for rule in self.rules:
            self._step_rule(rule, new["rules"][rule.name], round_.get(rule.name), index)
        return new

    def failed_round(self, state: State) -> int | None:
        """The round (0-based) at which the first rule failed, if any (sequential, threshold)."""
        hits = []
        for rule in self.rules:
            st = state["rules"][rule.name]
            if st["failed_at"] is not None:
                hits.append(st["failed_at"])
            if st["seq"] is not None and st["kind"] is not None:
                at, _ = self._sequential(rule, st["kind"]).failed_at(st["seq"])
                if at is not None:
                    hits.append(at)
        return min(hits) if hits else None

    def _step_rule(self, rule: Rule, st: State, obs: Observation | None, index: int) -> None:
        if obs is None or not _usable(obs):
            st["last_error"] = "no observation" if obs is None else (obs.error or "no data")
            return
        if st["kind"] is None:
            st["kind"] = _kind_of(rule, obs)
        kind: Kind = st["kind"]
        if kind == "proportion" and not _has_counts(obs):
            st["last_error"] = "no counts"
            return
        if kind == "distribution" and not obs.values:
            st["last_error"] = "no samples"
            return
        st["with_data"] += 1
        st["last_value"] = float(obs.value) if obs.value is not None else None
        if kind == "proportion":
            st["count"] += min(max(float(obs.count or 0), 0.0), float(obs.total or 0))
            st["total"] += float(obs.total or 0)
            st["last_counts"] = [int(obs.count or 0), int(obs.total or 0)]
        elif kind == "distribution":
            sketch.add(st["sketch"], obs.values)
        else:
            st["vsum"] += float(obs.value or 0.0)
        name = self.policy.name
        if name == "threshold" or (name == "sequential" and self._streak_only(rule, kind)):
            self._step_streak(rule, st, obs, index)
        elif name == "sequential":
            seq = self._sequential(rule, kind)
            if st["seq"] is None:
                st["seq"] = seq.start()
            seq.step(st["seq"], obs, index)
        else:
            self._step_fixed(rule, st, obs, kind)

    def _step_streak(self, rule: Rule, st: State, obs: Observation, index: int) -> None:
        if st["failed_at"] is not None:
            return  # the streak that failed the rule is its evidence
        if obs.total is not None and obs.total < rule.min_samples:
            return
        assert obs.value is not None
        st["streak_rounds"] += 1
        base = self.base[rule.name]
        found = breaches(rule, obs.value, base.value if base else None)
        st["breaches"] = [[b.op, b.text] for b in found]
        st["streak_value"] = float(obs.value)
        if not found:
            st["streak"] = []
            return
        st["streak"] = [*st["streak"], index][-max(1, self.policy.failure_limit) :]
        if len(st["streak"]) >= max(1, self.policy.failure_limit) and st["failed_at"] is None:
            st["failed_at"] = index

    def _step_fixed(self, rule: Rule, st: State, obs: Observation, kind: Kind) -> None:
        if kind != "distribution":
            return
        tally = self._fixed_rule(rule, kind).tally(obs.values)
        for key, value in tally.items():
            st["tally"][key] = st["tally"].get(key, 0.0) + value

    # -- compiled tests -------------------------------------------------------------------

    def _streak_only(self, rule: Rule, kind: Kind) -> bool:
        """A bare value with a `min` that is not a rate keeps the threshold streak."""
        return kind == "value" and rule.min is not None and not is_rate(rule.metric)

    def _sequential(self, rule: Rule, kind: Kind) -> SequentialRule:
        key = (rule.name, kind)
        if key not in self._compiled:
            self._compiled[key] = SequentialRule(
                rule, self.base[rule.name], kind, self.alpha_rule, horizon=self.horizon
            )
        return self._compiled[key]

    def _fixed_rule(self, rule: Rule, kind: Kind) -> FixedRule:
        key = (rule.name, kind)
        if key not in self._fixed:
            self._fixed[key] = FixedRule(rule, self.base[rule.name], kind, self.policy.confidence)
        return self._fixed[key]

    # -- reading the state ----------------------------------------------------------------

    def verdict(self, state: State, *, final: bool) -> Verdict:
        judged = [self._judge_rule(r, state["rules"][r.name], final) for r in self.rules]
        return _decide(judged, state["rounds"], final, self.policy)

    def _judge_rule(self, rule: Rule, st: State, final: bool) -> _Judged:
        base = self.base[rule.name]
        if st["with_data"] == 0:
            return _no_data(rule, base, st, state_rounds=None)
        kind: Kind = st["kind"]
        if self.policy.name == "fixed":
            return self._by_fixed(rule, base, st, kind, final)
        if self.policy.name == "threshold" or self._streak_only(rule, kind):
            return _by_threshold(rule, base, st, self.policy)
        return self._by_sequential(rule, base, st, kind)

    def _by_sequential(
        self, rule: Rule, base: BaselineData | None, st: State, kind: Kind
    ) -> _Judged:
        tests = self._sequential(rule, kind)
        observed = _pooled(rule, st)
        if not tests.components and not tests.passes:
            if _needs_baseline(rule, base):
                return _no_baseline(rule, observed, st)
            detail = "no bound this data can be tested against"
            return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
        seq = st["seq"] or tests.start()
        samples = seq["samples"]
        if samples < max(1, rule.min_samples):
            detail = f"{samples:g} samples so far, {rule.min_samples} needed"
            return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
        summary = _count_detail(rule, st, pooled=True) or (
            f"{rule.metric} {format_value(rule.metric, observed)} over {samples:g} samples"
        )
        reached = tests.evidence_bounds(seq)
        evidence = self._sequential_evidence(tests, seq, observed, base, st, reached)
        failed_at, comp = tests.failed_at(seq)
        if failed_at is not None and comp is not None:
            log_e, log_needed = tests.log_evidence(seq, comp)
            lr, needed = _ratio(log_e), _ratio(log_needed)
            reason = (
                f"{rule.name}: {rule.metric} {format_value(rule.metric, observed)} "
                f"{comp.claim}, likelihood ratio {lr:.3g} >= {needed:.3g} "
                f"after {samples:g} {_units(rule, kind)}"
            )
            detail = f"{summary}; likelihood ratio {lr:.3g} reached {needed:.3g}"
            verdict = _verdict(rule, "fail", observed, base, detail, evidence)
            return _Judged(verdict, failed_at, reason)
        closest = tests.closest(seq)
        strongest = ""
        if closest is not None:
            log_e, log_needed = tests.log_evidence(seq, closest)
            strongest = (
                f"; strongest evidence of a regression: likelihood ratio "
                f"{_ratio(log_e):.3g} of {_ratio(log_needed):.3g} needed"
            )
        lacking = [r for r in reached if not r.holds]
        if reached and not lacking and not tests.unpassable:
            shown = "; ".join(_reached_text(rule, r) for r in reached)
            detail = f"{summary}; within bounds on evidence: {shown}{strongest}"
            return _Judged(_verdict(rule, "pass", observed, base, detail, evidence))
        why = (
            "; ".join(f"{_reached_text(rule, r)}: not enough evidence" for r in lacking)
            if lacking
            else "no baseline to show the relative bound holds"
        )
        detail = f"{summary}; {why}{strongest}"
        # `no_failure`: what did not fail passes (the evidence still says how far it got)
        outcome: RuleOutcome = "pass" if self.policy.pass_on == "no_failure" else "inconclusive"
        return _Judged(
            _verdict(rule, outcome, observed, base, detail, evidence),
            lacking=f"{rule.name}: {why}",
        )

    def _sequential_evidence(
        self,
        tests: SequentialRule,
        seq: State,
        observed: float | None,
        base: BaselineData | None,
        st: State,
        reached: list[Reached],
    ) -> dict[str, Any]:
        failed_at, comp = tests.failed_at(seq)
        decisive = comp or tests.closest(seq)
        out: dict[str, Any] = {
            "policy": "sequential",
            "statistic": "e-value (round-level betting, always valid)",
            "p_value": tests.p_value(seq),
            "alpha": tests.alpha,
            "effect": _effect(observed, base),
            "samples": seq["samples"],
            "rounds_with_data": st["with_data"],
            "failed_at_round": failed_at,
            "evidence": [
                {
                    "bound": r.test.bound,
                    "limit": r.test.text,
                    "reached": _json(r.value),
                    "holds": r.holds,
                }
                for r in reached
            ],
        }
        band = _effect_band(tests, seq, base)
        if band is not None:
            out["effect_interval"] = band
            out["tolerance"] = tests.rule.max_increase
        can = tests.detectable(seq, st["with_data"])
        if can is not None:
            tolerance = self._tolerance(tests.rule, can.bound)
            out["detectable"] = {
                "bound": can.bound,
                "value": _json(can.value),
                "effect": _json(can.effect),
                "text": f"can detect {can.text} by the window's end",
                "bound_below_detectable": tolerance is not None and tolerance < can.effect,
            }
        if decisive is not None:
            log_e, log_needed = tests.log_evidence(seq, decisive)
            out |= {
                "test": _TEST_NAMES[decisive.test],
                "likelihood_ratio": _ratio(log_e),
                "likelihood_ratio_needed": _ratio(log_needed),
                "null": decisive.null,
            }
        out["components"] = [
            {
                "bound": c.bound,
                "test": _TEST_NAMES[c.test],
                "null": c.null,
                "likelihood_ratio": _json(_ratio(tests.log_evidence(seq, c)[0])),
                "likelihood_ratio_needed": _json(_ratio(tests.log_evidence(seq, c)[1])),
                "baseline_bound": _json(c.baseline_bound),
                "failed_at_round": seq["tests"][c.key]["crossed"],
            }
            for c in tests.components
        ]
        return {k: _json(v) for k, v in out.items()}

    def blind_spots(self, per_round: Mapping[str, float]) -> list[str]:
        """Before the first round: each rule whose bound is tighter than the smallest change
        it can detect by the window's end, at `per_round` samples a round (the traffic its
        baseline period saw), as one sentence per rule. Sequential policy only."""
        if self.policy.name != "sequential":
            return []
        out = []
        for rule in self.rules:
            base, size = self.base[rule.name], per_round.get(rule.name, 0.0)
            if base is None or size <= 0:
                continue
            if base.sorted_values.size and quantile_of(rule.metric) is not None:
                kind: Kind = "distribution"
            elif base.has_counts and is_rate(rule.metric):
                kind = "proportion"
            else:
                continue
            tests = self._sequential(rule, kind)
            state = tests.start()
            state["samples"] = size
            can = tests.detectable(state, 1)
            if can is None:
                continue
            tolerance = self._tolerance(rule, can.bound)
            if tolerance is not None and tolerance < can.effect:
                out.append(
                    f"rule {rule.name}: its {can.bound} bound is tighter than the smallest"
                    f" change it can detect by the window's end at the baseline's traffic"
                    f" ({size:.3g} samples a round): {can.text}"
                )
        return out

    def _tolerance(self, rule: Rule, bound: str) -> float | None:
        """How big a change the bound allows, on the scale `Detectable.effect` uses."""
        if bound == "max_increase":
            return rule.max_increase
        base = self.base[rule.name]
        limit = rule.max if bound == "max" else rule.min
        if limit is None or base is None or not base.value:
            return None
        return abs(limit / base.value - 1.0)

    def _by_fixed(
        self, rule: Rule, base: BaselineData | None, st: State, kind: Kind, final: bool
    ) -> _Judged:
        observed = _pooled(rule, st)
        if _needs_baseline(rule, base):
            return _no_baseline(rule, observed, st)
        tests = self._fixed_rule(rule, kind)
        if kind == "proportion":
            samples = float(st["total"])
        elif kind == "distribution":
            samples = float(sketch.size(st["sketch"]))
        else:
            samples = float(st["with_data"])
        summary = _count_detail(rule, st, pooled=True) or (
            f"{rule.metric} {format_value(rule.metric, observed)} over {samples:g} samples"
        )
        if samples < max(1, rule.min_samples):
            detail = f"{samples:g} samples so far, {rule.min_samples} needed"
            return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
        if not final:
            detail = f"{summary}; judged when the window ends"
            return _Judged(_verdict(rule, "pass", observed, base, detail, {"policy": "fixed"}))
        assert observed is not None
        if kind == "proportion":
            result = tests.test_counts(float(st["count"]), samples)
        elif kind == "distribution":
            result = tests.test_distribution(st["tally"], observed)
        else:
            result = tests.test_value(observed)
        rounds = st["with_data"]
        evidence = {
            "policy": "fixed",
            "test": result.test,
            "statistic": result.statistic,
            "p_value": result.p_value,
            "alpha": tests.alpha,
            "effect": result.effect,
            "samples": samples,
            "bound": result.bound,
            "failed_at_round": None,
        }
        p_text = f"p={result.p_value:.2g}" if result.p_value is not None else "no test"
        if result.failed:
            reason = (
                f"{rule.name}: {rule.metric} {format_value(rule.metric, result.observed)} "
                f"past {result.bound} at the end of the window ({result.test} {p_text})"
            )
            verdict = _verdict(
                rule, "fail", result.observed, base, f"{summary}; {p_text}", evidence
            )
            return _Judged(verdict, max(rounds - 1, 0), reason, at_end=True)
        verdict = _verdict(rule, "pass", result.observed, base, f"{summary}; {p_text}", evidence)
        return _Judged(verdict)


_TEST_NAMES = {
    "proportion": "betting e-process on each round's error count",
    "rank": "betting e-process on each round's mean placement (Mann-Whitney)",
    "exceedance": "betting e-process on each round's samples past the bound",
    "value": "betting e-process on each round's value",
}


def _copy(value: Any) -> Any:
    """A deep copy of a JSON-like state (5x faster than `copy.deepcopy`, no memo needed)."""
    if isinstance(value, dict):
        # a sketch is flat (bucket -> count): copied in one go
        return {k: dict(v) if k == "sketch" else _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _rule_start() -> State:
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
        "seq": None,
        "streak": [],
        "streak_rounds": 0,
        "streak_value": None,
        "breaches": [],
        "failed_at": None,
        "tally": {},
    }


def _kind_of(rule: Rule, obs: Observation) -> Kind:
    if quantile_of(rule.metric) is not None and obs.values:
        return "distribution"
    if is_rate(rule.metric) and _has_counts(obs):
        return "proportion"
    return "value"


def _usable(obs: Observation) -> bool:
    return obs.value is not None and math.isfinite(obs.value) and obs.error is None


def _has_counts(obs: Observation) -> bool:
    return obs.count is not None and obs.total is not None and obs.total > 0


# -- verdicts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Judged:
    verdict: RuleVerdict
    failed_at: int | None = None
    reason: str = ""
    lacking: str = ""
    """Why a rule has no evidence of a pass (pass_on evidence)."""
    at_end: bool = False


def _verdict(
    rule: Rule,
    outcome: RuleOutcome,
    observed: float | None,
    base: BaselineData | None,
    detail: str,
    evidence: dict[str, Any],
) -> RuleVerdict:
    return RuleVerdict(
        name=rule.name,
        source=rule.source,
        metric=rule.metric,
        outcome=outcome,
        observed=_clean(observed),
        baseline=_clean(base.value) if base else None,
        threshold=threshold_text(rule),
        detail=detail,
        evidence={k: _json(v) for k, v in evidence.items()},
    )


def _needs_baseline(rule: Rule, base: BaselineData | None) -> bool:
    """A rule whose only bound is relative cannot be judged without a baseline."""
    return base is None and rule.max is None and rule.min is None


def _no_data(rule: Rule, base: BaselineData | None, st: State, state_rounds: int | None) -> _Judged:
    why = st["last_error"] or "no rounds yet"
    detail = f"no data ({why})"
    return _Judged(
        _verdict(rule, "inconclusive", None, base, detail, {"reason": why}),
        lacking=f"{rule.name}: no data ({why})",
    )


def _no_baseline(rule: Rule, observed: float | None, st: State) -> _Judged:
    detail = f"no baseline to compare with ({st['with_data']} rounds with data)"
    return _Judged(
        _verdict(rule, "inconclusive", observed, None, detail, {"reason": "no baseline"}),
        lacking=f"{rule.name}: no baseline",
    )


def _by_threshold(rule: Rule, base: BaselineData | None, st: State, policy: Policy) -> _Judged:
    last_value = st["streak_value"]
    if _needs_baseline(rule, base):
        return _no_baseline(rule, last_value, st)
    limit = max(1, policy.failure_limit)
    streak = st["streak"]
    evidence: dict[str, Any] = {
        "policy": "threshold",
        "rounds_with_data": st["streak_rounds"],
        "streak": len(streak),
        "failure_limit": limit,
        "failing_rounds": list(streak),
        "failed_at_round": st["failed_at"],
        "breaches": [text for _, text in st["breaches"]],
        "effect": _effect(last_value, base),
    }
    counts = _count_detail(rule, st, pooled=False)
    if st["streak_rounds"] == 0:
        detail = f"no round with at least {rule.min_samples} samples"
        return _Judged(_verdict(rule, "inconclusive", None, base, detail, evidence))
    metric = rule.metric
    value = format_value(metric, last_value)
    if st["failed_at"] is not None:
        op, text = st["breaches"][0]
        n = len(streak)
        reason = f"{rule.name}: {metric} {value} {op} {text} for {n} round{'s' if n != 1 else ''}"
        detail = counts or f"{metric} {value} {op} {text}"
        verdict = _verdict(rule, "fail", last_value, base, detail, evidence)
        return _Judged(verdict, st["failed_at"], reason)
    if st["breaches"]:
        state = f"past {st['breaches'][0][1]} for {len(streak)} of {limit} rounds"
    else:
        state = "within bounds"
    detail = f"{counts}; {state}" if counts else f"{metric} {value}, {state}"
    return _Judged(_verdict(rule, "pass", last_value, base, detail, evidence))


# -- the window -------------------------------------------------------------------------------


def _decide(judged: list[_Judged], rounds: int, final: bool, policy: Policy) -> Verdict:
    verdicts = tuple(j.verdict for j in judged)
    failed = [j for j in judged if j.failed_at is not None]
    if failed:
        first = min(failed, key=lambda j: j.failed_at or 0)
        more = len(failed) - 1
        reason = first.reason + (
            f" (and {more} more rule{'s' if more > 1 else ''})" if more else ""
        )
        return Verdict("fail", reason, verdicts)
    judgeable = sum(1 for v in verdicts if v.outcome != "inconclusive")
    inconclusive = len(verdicts) - judgeable
    of_rounds = f"{rounds} round{'s' if rounds != 1 else ''}"
    on_evidence = policy.name == "sequential" and policy.pass_on == "evidence"
    if not final:
        return Verdict(
            "continue", f"no rule failed after {of_rounds} ({judgeable} passing)", verdicts
        )
    if on_evidence:
        if verdicts and not inconclusive:
            return Verdict(
                "pass",
                f"all {len(verdicts)} rules within bounds on evidence over {of_rounds}",
                verdicts,
            )
        lacking = "; ".join(j.lacking for j in judged if j.verdict.outcome == "inconclusive")
        return Verdict(
            "inconclusive",
            f"no rule failed over {of_rounds}, but {inconclusive} of {len(verdicts)} "
            f"lacked evidence of a pass: {lacking}",
            verdicts,
        )
    if judgeable:
        extra = f", {inconclusive} inconclusive" if inconclusive else ""
        return Verdict(
            "pass", f"{judgeable} of {len(verdicts)} rules passed over {of_rounds}{extra}", verdicts
        )
    return Verdict("inconclusive", f"no rule had data to judge over {of_rounds}", verdicts)


# -- wording and numbers ----------------------------------------------------------------------


def _pooled(rule: Rule, st: State) -> float | None:
    """The window's figure so far: pooled rate, percentile of all samples, or mean value."""
    kind = st["kind"]
    if kind == "proportion":
        return st["count"] / st["total"] if st["total"] else None
    if kind == "distribution":
        return sketch.quantile(st["sketch"], quantile_of(rule.metric) or 0.5)
    return st["vsum"] / st["with_data"] if st["with_data"] else None


def _reached_text(rule: Rule, reached: Reached) -> str:
    """`error_rate upper bound 3.1% vs max 2%`, `share above 412ms upper bound 7% vs 5%`."""
    test = reached.test
    end = "upper" if test.upper else "lower"
    if test.statistic == "share":
        side = "below" if test.below else "above"
        value = "n/a" if reached.value is None else f"{reached.value:.3g}"
        return (
            f"share of samples {side} {test.text} {end} bound {value} vs {test.limit:.3g} allowed"
        )
    value = format_value(rule.metric, reached.value)
    return f"{rule.metric} {end} bound {value} vs {test.text}"


def _count_detail(rule: Rule, st: State, *, pooled: bool) -> str | None:
    """`31 of 100 probes failed` (the window when `pooled`, else the latest round)."""
    if st["kind"] != "proportion":
        return None
    if pooled:
        count, total = int(st["count"]), int(st["total"])
    elif st["last_counts"] is not None:
        count, total = st["last_counts"]
    else:
        return None
    verb = " failed" if rule.metric == "error_rate" else ""
    return f"{count} of {total} {unit_noun(rule)}{verb}"


def _units(rule: Rule, kind: Kind) -> str:
    if kind == "proportion":
        return unit_noun(rule)
    return "rounds" if kind == "value" else "samples"


def _effect_band(
    tests: SequentialRule, seq: State, base: BaselineData | None
) -> list[float | None] | None:
    """The relative change's confidence band behind a `max_increase` bound (rates and bare
    values: a latency share is not on the metric's scale), for the page's band chart."""
    if base is None or not base.value or tests.rule.max_increase is None:
        return None
    for test in tests.passes:
        if test.bound == "max_increase" and test.statistic != "share":
            ends = tests.interval(test, seq)
            if ends is not None:
                return [_json(ends[0] / base.value - 1.0), _json(ends[1] / base.value - 1.0)]
    return None


def _effect(observed: float | None, base: BaselineData | None) -> float | None:
    if observed is None or base is None or base.value == 0:
        return None
    return observed / base.value - 1.0


def _ratio(log_e: float) -> float:
    if not math.isfinite(log_e):
        return 0.0 if log_e < 0 else 1e300
    return math.exp(min(log_e, 690.0))


def _clean(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json(value: Any) -> Any:
    """Evidence must serialise as JSON: plain floats, no NaN or infinity."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float | np.floating):
        return _clean(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value

"""The sequential policy: always-valid tests per rule, wording their evidence.

Pure: no I/O. The tests are `agent.analysis.sequential`; the chance of failing a good
deploy is at most 1 - confidence over the whole window. With `pass_on: evidence` a rule
passes only when its confidence sequence lies inside its bounds, and is `inconclusive` at
the end otherwise. A bare value with a `min` that is not a rate has no bounded bad side to
test and keeps the threshold streak, as does a relative decrease, one with a `max` below 0,
or at 0 for a value of either sign, or a relative bound over a baseline that puts its limit
there. The value test counts a value below 0 as 0, so it covers a value of either sign only
while it stays at 0 or above: from its first value below 0 such a rule keeps the streak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from agent.analysis.describe import (
    BURSTS_WIDEN,
    BURSTS_WIDEN_BOTH,
    CANNOT_PASS,
    exact_rate_bounds,
    format_percent,
    format_value,
    is_rate,
    never_negative,
    odds,
    odds_number,
    outage_taken,
    quantile_of,
    unit_noun,
)
from agent.analysis.policies.base import BasePolicy, Window
from agent.analysis.policies.threshold import ThresholdPolicy
from agent.analysis.sequential import (
    BaselineData,
    Breaching,
    Component,
    Detectable,
    Kind,
    PassReach,
    PassTest,
    Reached,
    RunEvidence,
    SequentialRule,
)
from agent.analysis.threshold import keeps_the_streak, relative_limit
from agent.analysis.types import Observation, Rule, RuleOutcome
from agent.analysis.verdicts import (
    Judged,
    RuleGlance,
    State,
    clean,
    effect,
    glance_of,
    in_percent,
    needs_baseline,
    no_baseline,
    past_short_of_failing,
    ratio,
    round_number,
    rule_glance,
    rule_verdict,
    said_value,
    summary,
    to_json,
    units,
    units_of,
)
from common.durations import format_duration
from common.units import format_value as value_in_units
from common.units import judged_rate
from common.words import counted

_TEST_NAMES = {
    "proportion": "betting e-process on each round's error count",
    "rank": "betting e-process on each round's mean placement (Mann-Whitney)",
    "exceedance": "betting e-process on each round's samples past the bound",
    "value": "betting e-process on each round's value",
    "periods": "betting e-process on each round's errors ranked among the baseline's periods",
    "latency_periods": (
        "betting e-process on each round's percentile ranked among the baseline's periods'"
    ),
}


_FINAL_TESTS = {
    "two_sample": "the two-sample count test over the whole window",
    "proportion": "the count of bad events against the bound over the whole window",
    "rank": "the rank test over the whole window (its placements' sum)",
    "exceedance": "the count of samples past the bound over the whole window",
}
"""The tests that look once, at the window's end (`SequentialRule.finish`)."""


def _final_test(comp: Component) -> str:
    """The look's words: a relative count test's is two-sample (it has a ladder), an
    absolute bound's counts its bad events against the bound."""
    return _FINAL_TESTS["two_sample" if comp.ladder else comp.test]


class SequentialPolicy(BasePolicy):
    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self.on_evidence = window.policy.pass_on == "evidence"
        self.streak = ThresholdPolicy(window)
        self._compiled: dict[tuple[str, str], SequentialRule] = {}

    def _streak_only(self, rule: Rule, kind: Kind) -> bool:
        """A bare value that keeps the threshold streak: by its bounds alone
        (`keeps_the_streak`), or by a relative bound whose limit over its baseline is 0 or
        below (`_relative_limit_not_above_0`)."""
        if kind != "value":
            return False
        return keeps_the_streak(rule) or self._relative_limit_not_above_0(rule) is not None

    def _relative_limit_not_above_0(self, rule: Rule) -> float | None:
        """The limit of a value's relative bound over its bare baseline, where it is 0 or
        below for a value of either sign: threshold's max(baseline x (1 + max_increase),
        baseline + floor), over a baseline below 0 the baseline itself (its +50% is
        below it), so any increase breaches. The value test has no such level (it had no
        test: `inconclusive` where threshold failed). None otherwise."""
        base = self.window.base[rule.name]
        if rule.direction != "increase" or base is None or base.has_counts:
            return None
        if base.sorted_values.size:  # samples: a distribution's tests
            return None
        if never_negative(rule.metric):
            return None
        limit = relative_limit(rule, base.value)
        return limit if limit is not None and limit <= 0.0 else None

    def tests(self, rule: Rule, kind: Kind) -> SequentialRule:
        key = (rule.name, kind)
        if key not in self._compiled:
            w = self.window
            self._compiled[key] = SequentialRule(
                rule, w.base[rule.name], kind, w.alpha_rule, horizon=w.horizon, pass_alpha=w.alpha
            )
        return self._compiled[key]

    def start(self, rule: Rule) -> State:
        return {"seq": None, **self.streak.start(rule)}

    def step(self, rule: Rule, st: State, obs: Observation, kind: Kind, index: int) -> None:
        if self._streak_only(rule, kind) or st.get(BELOW_0) is not None:
            self.streak.step(rule, st, obs, kind, index)
            return
        seq = self.tests(rule, kind)
        if st["seq"] is None:
            st["seq"] = seq.start()
        if self._goes_below_0(rule, st, obs, seq):
            st[BELOW_0] = [index, float(obs.value or 0.0)]
            self.streak.step(rule, st, obs, kind, index)
            return
        seq.step(st["seq"], obs, index)

    def _goes_below_0(self, rule: Rule, st: State, obs: Observation, tests: SequentialRule) -> bool:
        """Whether this round's value below 0 ends the value test of a rule whose values
        may be negative (a `deriv()`, a delta): the test bets on each value over its bound,
        a value below 0 counting as 0, which overstates such a value's mean (`max: 1` over
        values alternating 6 and -7, mean -0.5, failed where threshold passed it). The
        threshold streak judges it from this round on; the rounds before stay judged as
        they were (a test that failed stands). A metric never below 0 (a rate, a
        duration, a count) that reports a value below 0 (a provider's bug) keeps its test,
        the value counted as 0."""
        if obs.value is None or obs.value >= 0.0 or never_negative(rule.metric):
            return False
        if not any(c.test == "value" for c in tests.components):
            return False
        return tests.failed_at(st["seq"])[0] is None

    def finish(self, rule: Rule, st: State, index: int) -> None:
        """The fixed-horizon tests look once (`SequentialRule.finish`)."""
        kind = st["kind"]
        if (
            st["seq"] is not None
            and kind is not None
            and not self._streak_only(rule, kind)
            and st.get(BELOW_0) is None
        ):
            self.tests(rule, kind).finish(st["seq"], index)

    def failed_at(self, rule: Rule, st: State) -> int | None:
        if st["failed_at"] is not None:
            return int(st["failed_at"])
        if st["seq"] is not None and st["kind"] is not None:
            at, _ = self.tests(rule, st["kind"]).failed_at(st["seq"])
            return at
        return None

    def _why_untested(
        self, rule: Rule, st: State, tests: SequentialRule
    ) -> Literal["baseline", "bound", "samples"] | None:
        """Why no test can speak yet: no baseline to compare with, no bound this data can
        be tested against, or too few samples; None when they can."""
        if not tests.components and not tests.passes:
            return "baseline" if needs_baseline(rule, self.window.base[rule.name]) else "bound"
        if _samples(st) < max(1, rule.min_samples):
            return "samples"
        return None

    def _untested(
        self, rule: Rule, st: State, tests: SequentialRule, observed: float | None
    ) -> Judged | None:
        """The verdict while no test can speak: no bound to test, or too few samples."""
        why = self._why_untested(rule, st, tests)
        if why is None:
            return None
        if why == "baseline":
            return no_baseline(rule, observed, st)
        base = self.window.base[rule.name]
        if why == "bound":
            detail = "no bound this data can be tested against"
        else:
            detail = f"{counted(_samples(st), 'sample')} so far, {rule.min_samples} needed"
        return Judged(rule_verdict(rule, "inconclusive", observed, base, detail, {}))

    def glance(self, rule: Rule, st: State, kind: Kind, final: bool) -> RuleGlance:
        """`judge`'s outcome and the figures a stored round keeps (p-value, effect and its
        band, the decisive test's likelihood ratio), without the words, the evidence
        bounds (unless `pass_on: evidence` needs them) or what the rule can detect."""
        if self._streak_only(rule, kind):
            return self.streak.glance(rule, st, kind, final)
        if st.get(BELOW_0) is not None:
            return glance_of(self.judge(rule, st, kind, final))
        tests = self.tests(rule, kind)
        observed = self.pooled(rule, st)
        why = self._why_untested(rule, st, tests)
        if why is not None:
            # `glance_of(self._untested(...))` without wording it: a rule without a
            # baseline is untested every round
            reason = {"reason": "no baseline"} if why == "baseline" else {}
            return RuleGlance(rule.name, "inconclusive", clean(observed), reason)
        seq = st["seq"] or tests.start()
        base = self.window.base[rule.name]
        failed_at, comp = tests.failed_at(seq)
        figures: dict[str, Any] = {"p_value": tests.p_value(seq), "effect": effect(observed, base)}
        band = _effect_band(tests, seq, base)
        if band is not None:
            figures |= {"effect_interval": band, "tolerance": tests.rule.max_increase}
        decisive = _decisive(tests, seq, comp)
        if decisive is not None:
            _, shown = decisive
            figures |= {
                "likelihood_ratio": ratio(shown.log_e),
                "likelihood_ratio_needed": ratio(shown.log_needed),
            }
        if failed_at is not None and comp is not None:
            return rule_glance(rule, "fail", observed, figures, failed_at)
        warn = tests.breaching(seq)
        if warn is not None:
            figures["breaching"] = _breaching_figures(warn)
        outcome: RuleOutcome = "pass"
        if self.on_evidence:
            reached = tests.evidence_bounds(seq)
            holds = reached and all(r.holds for r in reached) and not tests.unpassable
            outcome = "pass" if holds else "inconclusive"
        return rule_glance(rule, outcome, observed, figures)

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        if self._streak_only(rule, kind):
            return self.streak.judge(rule, st, kind, final)
        if st.get(BELOW_0) is not None:
            return _streak_from(rule, self.streak.judge(rule, st, kind, final), st[BELOW_0])
        base = self.window.base[rule.name]
        tests = self.tests(rule, kind)
        observed = self.pooled(rule, st)
        untested = self._untested(rule, st, tests, observed)
        if untested is not None:
            return untested
        seq = st["seq"] or tests.start()
        samples = seq["samples"]
        said = summary(rule, st, observed, samples)
        reached = tests.evidence_bounds(seq)
        failed_at, comp = tests.failed_at(seq)
        logs = [tests.log_evidence(seq, c) for c in tests.components]
        decisive = _decisive(tests, seq, comp, logs)
        evidence = self._evidence(tests, seq, observed, base, st, reached, decisive, logs)
        look = _look_that_failed(tests, seq, comp) if failed_at is not None else None
        if failed_at is not None and comp is not None and look is not None:
            p, level, when = look
            claim = in_percent(rule.metric, comp.claim)
            reason = (
                f"{rule.name}: {rule.metric} {said_value(rule.metric, observed)} "
                f"{claim} at the window's {when} after {units_of(rule, kind, samples)}: "
                f"p-value {p:.2g}, at most {level:.2g} needed"
            )
            test = _final_test(comp)
            if when == "midpoint":
                test = test.replace("the whole window", "the window's first half")
            detail = (
                f"{said}; {rule.metric} {claim}: {test} gave"
                f" p-value {p:.2g}, at most {level:.2g} needed"
            )
            verdict = rule_verdict(rule, "fail", observed, base, detail, evidence)
            return Judged(verdict, failed_at, reason)
        if failed_at is not None and comp is not None and decisive is not None:
            _, run = decisive
            lr, needed = ratio(run.log_e), _needed(tests, comp, run)
            claim = in_percent(rule.metric, comp.claim)
            reason = (
                f"{rule.name}: {rule.metric} {said_value(rule.metric, observed)} "
                f"{claim} after {units_of(rule, kind, samples)}: evidence {odds(lr)},"
                f" {needed}"
            )
            # the bound it crossed, as the reason says: a breach alert's "why" is this detail
            detail = f"{said}; {rule.metric} {claim}: evidence {odds(lr)} of a regression, {needed}"
            verdict = rule_verdict(rule, "fail", observed, base, detail, evidence)
            return Judged(verdict, failed_at, reason)
        strongest = ""
        warn = tests.breaching(seq)
        if warn is not None:  # the `rule breached` warning's read-out, said first
            evidence["breaching"] = _breaching_figures(warn)
            strongest = f"; {_breaching_words(warn)}"
        # no test failed: the one closest to failing; when warned, only if its e-detector
        # is the run shown (its odds and bar are not the warning's, which are the deploy's)
        if decisive is not None and (warn is None or decisive[1].detector):
            closest, run = decisive
            strongest += (
                f"; strongest evidence of a regression: {odds(ratio(run.log_e))}, "
                f"{_needed(tests, closest, run)}"
            )
        lacking = [r for r in reached if not r.holds]
        if reached and not lacking and not tests.unpassable:
            shown = "; ".join(_reached_text(rule, r, bursts=_bursts(tests)) for r in reached)
            detail = f"{said}; within bounds on evidence: {shown}{strongest}"
            return Judged(rule_verdict(rule, "pass", observed, base, detail, evidence))
        never = {key for key, _ in exact_rate_bounds(rule)}  # `max: 0`: it can only fail
        why = (
            "; ".join(
                f"{_reached_text(rule, r, bursts=_bursts(tests))}: not enough evidence"
                + (
                    f" (no number of {unit_noun(rule)} shows a rate of exactly {r.test.limit:g})"
                    if r.test.bound in never
                    else ""
                )
                for r in lacking
            )
            if lacking
            else "no baseline to show the relative bound holds"
        )
        if st["with_data"] == 1 and kind != "value":
            why += _one_round(units(rule, kind), _burst_words(rule, observed, decisive))
        # warned: what breaches, once; not the pass side's `upper bound 0.18 vs max 0.05: not
        # enough evidence` before it, nor its odds again as the strongest evidence
        detail = f"{said}{strongest}" if warn is not None else f"{said}; {why}{strongest}"
        # `no_failure`: what did not fail passes (the evidence still says how far it got)
        outcome: RuleOutcome = "inconclusive" if self.on_evidence else "pass"
        verdict = rule_verdict(rule, outcome, observed, base, detail, evidence)
        # warned: past its bound, said first, with how far it got towards failing
        past = warn.comp.claim.lstrip("<> ") if warn is not None else ""
        over = f"over {counted(st['with_data'], 'round')}"
        words = past_short_of_failing(rule, verdict, past, over) or f"{rule.name}: {why}"
        return Judged(verdict, lacking=words)

    def _evidence(
        self,
        tests: SequentialRule,
        seq: State,
        observed: float | None,
        base: BaselineData | None,
        st: State,
        reached: list[Reached],
        decisive: tuple[Component, RunEvidence] | None,
        logs: list[RunEvidence],
    ) -> dict[str, Any]:
        """The rule's evidence; `decisive` and `logs` (each test's `log_evidence`) as
        `_decisive` and `judge` read them, once."""
        failed_at, _ = tests.failed_at(seq)
        out: dict[str, Any] = {
            "policy": "sequential",
            "statistic": "e-value (round-level betting, always valid)",
            "p_value": tests.p_value(seq),
            "alpha": tests.alpha,
            "effect": effect(observed, base),
            "samples": seq["samples"],
            "rounds_with_data": st["with_data"],
            "failed_at_round": round_number(failed_at),
            "evidence": [
                {
                    "bound": r.test.bound,
                    "limit": r.test.text,
                    "reached": to_json(r.value),
                    "holds": r.holds,
                }
                | ({"counted_from": r.test.counted_from} if r.test.counted_from else {})
                for r in reached
            ],
        }
        band = _effect_band(tests, seq, base)
        if band is not None:
            out["effect_interval"] = band
            out["tolerance"] = tests.rule.max_increase
        can = tests.detectable(seq, st["with_data"])
        if can is not None:
            out["detectable"] = {
                "bound": can.bound,
                "value": to_json(can.value),
                "effect": to_json(can.effect),
                "text": f"can detect {can.text} by the window's end",
                "bound_below_detectable": self._blind_to(tests, can),
            }
        if decisive is not None:
            comp, shown = decisive
            out |= {
                "test": _TEST_NAMES[comp.test],
                "likelihood_ratio": ratio(shown.log_e),
                "likelihood_ratio_needed": ratio(shown.log_needed),
                "null": comp.null,
            }
        out["components"] = [
            {
                "bound": c.bound,
                "test": _TEST_NAMES[c.test],
                "null": c.null,
                "likelihood_ratio": to_json(ratio(log_e)),
                "likelihood_ratio_needed": to_json(ratio(log_needed)),
                "baseline_bound": to_json(c.baseline_bound),
                "failed_at_round": round_number(seq["tests"][c.key]["crossed"]),
            }
            | _final_figures(c, seq["tests"][c.key])
            for c, (log_e, log_needed, _) in zip(tests.components, logs, strict=True)
        ]
        return out  # made JSON-safe once, by `rule_verdict`

    def blind_spots(
        self, per_round: Mapping[str, float], interval: float | None = None
    ) -> list[str]:
        """Each rule whose bound is tighter than the smallest change it can detect by the
        window's end, at `per_round` samples a round (the traffic its baseline period saw),
        and, passing on evidence, each one a release like its baseline would likely not
        show holds by then (`_cannot_pass`, the window's length said at `interval` seconds
        a round), one sentence each; each rate bounded at its very end (`max: 0`, `min:
        1`), which can only fail, at any traffic (none: those alone)."""
        out = []
        for rule in self.window.rules:
            if (limit := self._relative_limit_not_above_0(rule)) is not None:
                out.append(self._relative_streak(rule, limit))
                continue
            if self.on_evidence and (exact := exact_rate_bounds(rule)):
                # at any traffic, with a baseline or without: one sentence a rule
                out += [f"rule {rule.name}: {sentence}" for _, sentence in exact]
                continue
            base, size = self.window.base[rule.name], per_round.get(rule.name, 0.0)
            if base is None or size <= 0:
                continue
            if base.sorted_values.size and quantile_of(rule.metric) is not None:
                kind: Kind = "distribution"
            elif base.has_counts and is_rate(rule.metric):
                kind = "proportion"
            else:
                continue
            tests = self.tests(rule, kind)
            state = tests.start()
            state["samples"] = size
            can = tests.detectable(state, 1)
            clauses = []
            if can is not None and self._blind_to(tests, can):
                clauses.append(
                    f"its {can.bound} bound is tighter than the smallest change it can detect"
                    f" by the window's end at the baseline's traffic ({size:.3g} samples a"
                    f" round): {can.text}"
                )
            # one sentence a rule, and said of a bound too tight to see as well: what ends
            # a good release's window inconclusive (a 5-minute window of a p95 at 215ms
            # against max 300ms: 70% of good deploys) was told only of what it could see
            if self.on_evidence and (short := self._cannot_pass(tests, size, interval)):
                clauses.append(
                    f"{'and it ' if clauses else ''}{CANNOT_PASS} at the baseline's traffic"
                    f" ({size:.3g} samples a round,"
                    f" {self.window.horizon} rounds), so the window would likely end"
                    f" inconclusive (`register --wait` exits 3): {'; '.join(short)}"
                )
            if clauses:
                out.append(f"rule {rule.name}: {'; '.join(clauses)}")
        return out

    def _relative_streak(self, rule: Rule, limit: float) -> str:
        """What a relative bound over a baseline of 0 or less means, and how it is judged
        (`_relative_limit_not_above_0`): said as the window is registered."""
        base = self.window.base[rule.name]
        assert base is not None and rule.max_increase is not None
        fmt = rule.metric
        return (
            f"rule {rule.name}: max_increase {format_percent(rule.max_increase)} over a"
            f" baseline of {format_value(fmt, base.value)} is a limit of"
            f" {format_value(fmt, limit)}, as threshold reads it (the greater of baseline x"
            f" {1.0 + rule.max_increase:g} and the baseline): any value above"
            f" {format_value(fmt, limit)} breaches it. {fmt} may be below 0, so no test of"
            " its mean holds there: the rule is judged as the threshold policy judges it,"
            f" {self.window.policy.failure_limit} rounds in a row past a bound fail it; for"
            " room above such a baseline, give it an absolute max"
        )

    def _cannot_pass(
        self, tests: SequentialRule, size: float, interval: float | None = None
    ) -> list[str]:
        """Each bound whose evidence a release just like its baseline (over an outage's: the
        best one, `pass_reach`) could not show by the window's end: the window would likely
        end `inconclusive` (such a release's sampling noise is as likely to take its
        sequence's end further as nearer: 70% of good deploys at a reach of 0.06 against
        0.05), said before it opens, not after, with what would show it: more rounds (a
        window `interval` x as many long) or more samples a round over these rounds."""
        rule, horizon = tests.rule, self.window.horizon
        out = []
        for reach in tests.pass_reach(size, horizon):
            if reach.rounds_needed is not None and reach.rounds_needed <= horizon:
                continue
            test = reach.test
            was = (
                f"{rule.metric} {value_in_units(rule.metric, reach.mean)}"
                if test.statistic == "rate"
                else f"share {reach.mean:.3g}"
            )
            if reach.reached is None:
                like = "a window of one round shows no evidence (a sequence needs two)"
            else:
                shown = _reached_text(
                    rule, Reached(test, reach.reached, False), bursts=_bursts(tests)
                )
                like = f"a release just like its baseline ({was}) would reach {shown}"
                if test.outage is not None:  # `pass_reach`: the best one, at its mean
                    failed = "no" if reach.mean == 0.0 else "all"  # a `max`'s 0, a `min`'s 1
                    like = f"a release with {failed} {unit_noun(rule)} failed would reach {shown}"
            if reach.rounds_needed is None:
                needs = "no window of any length would show it"
            else:
                needs = (
                    f"it needs about {reach.rounds_needed * size:,.0f} samples"
                    f" ({reach.rounds_needed} rounds of this traffic){_lasting(reach, interval)}"
                    f"{_per_round_for(tests, reach, size, horizon)}: more probes per round"
                    " or a longer window"
                )
            out.append(f"{like}; {needs}")
        return out

    def _blind_to(self, tests: SequentialRule, can: Detectable) -> bool:
        """Whether the smallest change the rule can detect is more than `SEEN_WITHIN` times
        the one its bound allows. A rate's `max`/`min` is a change from the baseline's
        rate, which is 0 when the background runs saw no error: then the bound's distance
        from 0 is what it allows (`max 0.03` that can only catch 0.078 warned only in the
        environments whose background runs happened to fail a probe: 3 of 12). So is it
        over a baseline taken while the service was down, as the tests decide it
        (`SequentialRule.outage_baseline`, a count's kind alone): the bound is judged on the
        release's own probes or events, not as a change from the outage's rate (`max 0.05`
        over 50% errors read as a fall of 90% it could see)."""
        rule = tests.rule
        if any(key == can.bound for key, _ in exact_rate_bounds(rule)):
            return False  # it fails at the first bad event: no test sees more
        tolerance = self._tolerance(rule, can.bound)
        base = self.window.base[rule.name]
        if (
            can.bound in ("max", "min")
            and is_rate(rule.metric)
            and base is not None
            and ((tolerance is None and base.value == 0.0) or tests.outage_baseline is not None)
        ):
            limit = rule.max if can.bound == "max" else rule.min
            return limit is not None and abs(can.value) > SEEN_WITHIN * abs(limit)
        return _blind(tolerance, can.effect)

    def _tolerance(self, rule: Rule, bound: str) -> float | None:
        """How big a change the bound allows, on the scale `Detectable.effect` uses."""
        if bound == "max_increase":
            return rule.max_increase
        base = self.window.base[rule.name]
        limit = rule.max if bound == "max" else rule.min
        if limit is None or base is None or not base.value:
            return None
        return abs(limit / base.value - 1.0)


def _lasting(reach: PassReach, interval: float | None) -> str:
    """The window the rounds a bound needs make, in the configuration's words (`window:`
    at this `interval`), or nothing when the interval is not known."""
    if interval is None or reach.rounds_needed is None:
        return ""
    return f", a window of {format_duration(reach.rounds_needed * interval)} at these rounds"


def _per_round_for(tests: SequentialRule, reach: PassReach, size: float, horizon: int) -> str:
    """The samples a round over the window's own rounds at which a release like its
    baseline shows the bound holds (`pass_reach` asked again at more traffic: its figures,
    not its internals), or nothing when no traffic within 20x this one would."""
    if reach.rounds_needed is None or horizon < 2:
        return ""
    more = max(size, reach.rounds_needed * size / horizon)
    for _ in range(PER_ROUND_STEPS):
        again = [r for r in tests.pass_reach(more, horizon) if r.test == reach.test]
        if again and again[0].rounds_needed is not None and again[0].rounds_needed <= horizon:
            return f", or about {math.ceil(more):,d} samples a round over its {horizon} rounds"
        more *= 1.25
    return ""


PER_ROUND_STEPS = 14
"""Steps of 25% `_per_round_for` tries: up to about 20x the traffic the rounds suggest."""


def _decisive(
    tests: SequentialRule,
    seq: State,
    failed: Component | None,
    logs: list[RunEvidence] | None = None,
) -> tuple[Component, RunEvidence] | None:
    """The test that failed, else the one closest to failing (`SequentialRule.closest`:
    the largest peak log e-value over its threshold, the first on a tie), with its
    `log_evidence`: each test's evidence read once (`logs`, when read already), not once
    to find it and again to show it."""
    if failed is not None:
        return failed, tests.log_evidence(seq, failed)
    best: tuple[Component, RunEvidence] | None = None
    for k, comp in enumerate(tests.components):
        run = logs[k] if logs is not None else tests.log_evidence(seq, comp)
        if best is None or run.log_e - run.log_needed > best[1].log_e - best[1].log_needed:
            best = (comp, run)
    return best


def _breaching_figures(warn: Breaching) -> dict[str, Any]:
    """The warning's read-out as a rule's evidence keeps it (`breaching`: its presence is
    what `rule breached` and its resolve read)."""
    return {
        "bound": warn.comp.bound,
        "test": _TEST_NAMES[warn.comp.test],
        "likelihood_ratio": ratio(warn.log_e),
        "likelihood_ratio_warned": ratio(warn.log_warn),
        "likelihood_ratio_needed": ratio(warn.comp.log_threshold),
    }


def _breaching_words(warn: Breaching) -> str:
    """What a breach alert says of a rule that has not failed: its evidence now against the
    warning's bar and the rollback's."""
    return (
        f"past its {warn.comp.bound} bound on the evidence since the deploy as it stands:"
        f" {odds(ratio(warn.log_e))}, at least {odds_number(ratio(warn.log_warn))} warns,"
        f" {odds_number(ratio(warn.comp.log_threshold))} fails it"
    )


def _needed(tests: SequentialRule, comp: Component, shown: RunEvidence) -> str:
    """`1,500 needed`, and when the e-detector is the run shown (`log_evidence`: the more
    advanced), why its bar is higher: a regression may begin at any round, so it needs
    rounds / its level, 30x the deploy's run's 1 / alpha in a 30-round window. The page's
    chart showed the deploy's run's 1,500 from round 1 and the verdict "45,000 needed" at
    round 14, read as a bar that grew 30x (a README walk-through)."""
    needed = f"{odds_number(ratio(shown.log_needed))} needed"
    if not shown.detector:
        return needed
    rounds = max(tests.horizon, 1)
    return (
        f"{needed} (a regression may begin at any of {rounds} rounds:"
        f" {rounds} x {odds_number(1.0 / comp.alpha_detector)}; from the deploy"
        f" {odds_number(ratio(comp.log_threshold))})"
    )


BELOW_0 = "below_0"
"""A rule's state key: [round index, value] of the first value below 0 that ended its value
test (`SequentialPolicy._goes_below_0`); absent before it."""


def _streak_from(rule: Rule, judged: Judged, below: list[float]) -> Judged:
    """The streak's verdict of a rule whose value went below 0, saying why the streak judges
    it and from which round (its evidence: `streak_from_round`, `value_below_0`)."""
    index, value = int(below[0]), float(below[1])
    note = (
        f"{rule.name} went below 0 ({format_value(rule.metric, value)}): the sequential bound"
        f" covers values ≥ 0, threshold streak from round {round_number(index)}"
    )
    v = judged.verdict
    evidence = v.evidence | {"streak_from_round": round_number(index), "value_below_0": value}
    verdict = replace(v, detail=f"{v.detail} ({note})", evidence=evidence)
    reason = f"{judged.reason} ({note})" if judged.reason else ""
    return replace(judged, verdict=verdict, reason=reason)


def _samples(st: State) -> float:
    """The samples the rule's tests have counted (none before its first round with data)."""
    return st["seq"]["samples"] if st["seq"] is not None else 0.0


SEEN_WITHIN = 2.0
"""A rule sees its bound when it can detect a change of at most this many times the change
the bound allows (a test can never detect a change inside its own tolerance, so comparing
with the tolerance itself would warn about every rule)."""


def _blind(tolerance: float | None, effect: float) -> bool:
    return tolerance is not None and effect > SEEN_WITHIN * tolerance


def _one_round(units: str, burst: str = "") -> str:
    """Why one round's events, however many, decide nothing: 450 of 3,000 Sentry events
    failed against a 2% bound read as a verdict the judge failed to give, when the
    provider's counts stopped growing after the window's first round."""
    return (
        f" (only 1 round had new {units}: the judge weighs each round as one piece of"
        f" evidence however many {units} it holds, since a round's {units} can fail together"
        f"{burst})"
    )


def _burst_words(
    rule: Rule, rate: float | None, decisive: tuple[Component, RunEvidence] | None
) -> str:
    """`; one round at 30% weighs at most 15x against its limit of 2%, 155 needed: …`: a
    live sweep read 30% errors against a 2% bound, inconclusive on one round, as the judge
    missing the obvious. One round's rate is one observation in [0, 1]: against a mean of
    at most the null's level, no bet on it multiplies the odds by more than rate / level
    (Markov: a service at that level whose errors come in bursts has up to that share of
    its rounds at the rate), so it cannot be told from a burst until later rounds bring
    new events. Said only when that bound is short of the deploy's bar."""
    if rate is None or decisive is None or decisive[0].test != "proportion":
        return ""
    comp = decisive[0]
    if comp.flip or not 0 < comp.level < rate:
        return ""
    most, needed = rate / comp.level, ratio(comp.log_threshold)
    if most >= needed:
        return ""
    at, of = said_value(rule.metric, rate), said_value(rule.metric, comp.level)
    return (
        f"; one round at {at} weighs at most {odds_number(most)}x against its limit of {of},"
        f" {odds_number(needed)} needed: a service at {of} whose errors come in bursts has up"
        f" to 1 round in {odds_number(most)} at {at}, so one round cannot be told from a burst"
    )


def _bursts(tests: SequentialRule) -> bool:
    """Whether the rule's baseline's errors came in bursts (`BaselineData.shows_bursts`)."""
    return tests.baseline is not None and tests.baseline.shows_bursts


def _reached_text(rule: Rule, reached: Reached, *, bursts: bool = False) -> str:
    """`error_rate upper bound 3.1% vs max 2%`, `share of samples above 412ms upper
    bound 0.07 vs 0.05 allowed`; a relative latency bound names its one bound, then the
    nearer cutoff passing counts from. A rate's figures in %, as every other free text
    says them (issue 10: `upper bound 3.1% vs max 2%`, not `0.031 vs max 0.02`); the
    `threshold` field keeps the config's `max 0.02`. `bursts`: the baseline's errors came
    in bursts, which widen a rate's bound; said so."""
    reached = replace(reached, test=_rates_in_percent(rule, reached.test))
    said = _reached_words(rule, reached)
    test = reached.test
    if bursts and test.statistic == "rate" and test.dispersion > 0 and reached.value is not None:
        if test.counted_from and said.endswith(")"):  # inside its baseline limit's words
            return f"{said[:-1]}; {BURSTS_WIDEN_BOTH})"
        said += f" ({BURSTS_WIDEN})"
    return said


def _rates_in_percent(rule: Rule, test: PassTest) -> PassTest:
    """`test` with a rate's figures in its words in % (`max 1%`, `3.25% (baseline 2.5%
    +30%)`), for `_reached_text`: it said `upper bound 0.197 vs max 0.01` where every
    other free text says `max 1%`. Others' as they were."""
    if not is_rate(rule.metric) or test.statistic not in ("rate", "value"):
        return test  # a bare rate's (a provider's error_rate without counts) too
    text, counted_from = (in_percent(rule.metric, t) for t in (test.text, test.counted_from))
    return replace(test, text=text, counted_from=counted_from)


def _reached_words(rule: Rule, reached: Reached) -> str:
    test = reached.test
    end = "upper" if test.upper else "lower"
    reached_value = reached.value
    if reached_value is not None and test.statistic in ("share", "rate"):
        # a proportion's confidence bound lies in [0, 1]: "upper bound 1.2" reads as nonsense
        reached_value = min(max(reached_value, 0.0), 1.0)
    if reached_value is None:
        # "upper bound n/a" after a window's first round read as a fault, not as too soon
        return _no_bound_yet(rule, test, end)
    if test.statistic == "share":
        side = "below" if test.below else "above"
        value = f"{reached_value:.3g}"
        if test.counted_from:
            # the rule's one bound first, then the nearer cutoff passing counts from and why
            return (
                f"{rule.metric} {'>=' if test.below else '<='} {test.text}, shown with room"
                f" for the baseline's own error: share of"
                f" samples {side} {test.counted_from} {end} bound {value} vs"
                f" {test.limit:.3g} allowed"
            )
        return (
            f"share of samples {side} {test.text} {end} bound {value} vs {test.limit:.3g} allowed"
        )
    value = (
        judged_rate(rule.metric, reached_value)
        if test.statistic in ("rate", "value") and is_rate(rule.metric)
        else format_value(rule.metric, reached_value)
    )
    if test.counted_from:
        return (
            f"{rule.metric} {'<=' if test.upper else '>='} {test.text}, shown with room for"
            f" the baseline's own error: {rule.metric} {end} bound {value} vs"
            f" {test.counted_from}"
        )
    said = f"{rule.metric} {end} bound {value} vs {test.text}"
    if test.outage is not None:
        said += (
            f" (on the release's own rounds: its baseline, {test.outage:.0%} errors, looks"
            f" {outage_taken(rule)} while the service was down, so the outage's bursts are"
            " not read as the release's)"
        )
    return said


def _no_bound_yet(rule: Rule, test: PassTest, end: str) -> str:
    """What `_reached_text` says before a bound exists: a confidence sequence needs two
    rounds, so after one there is no bound to compare, which is not a missing value."""
    if test.statistic == "share":
        side = "below" if test.below else "above"
        return (
            f"share of samples {side} {test.text}: no {end} bound after"
            f" one round (it takes two) to compare with {test.limit:.3g} allowed"
        )
    against = test.text
    if test.counted_from:  # a relative bound: its text is the bound's value alone
        against = f"{rule.metric} {'<=' if test.upper else '>='} {test.text}"
    return f"{rule.metric}: no {end} bound after one round (it takes two) to compare with {against}"


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
                return [to_json(ends[0] / base.value - 1.0), to_json(ends[1] / base.value - 1.0)]
    return None


def _look_that_failed(
    tests: SequentialRule, seq: State, comp: Component | None
) -> tuple[float, float, str] | None:
    """(p-value, level, `end` or `midpoint`) of the look that failed `comp`, if one did."""
    if comp is None:
        return None
    st = seq["tests"][comp.key]
    if tests.failed_at_end(seq, comp):
        return st["final_p"], comp.alpha_final, "end"
    if tests.failed_midway(seq, comp):
        return st["midway_p"], comp.alpha_midway, "midpoint"
    return None


def _final_figures(comp: Component, st: State) -> dict[str, Any]:
    """A test's fixed-horizon figures, once it looked (`SequentialRule.finish`), and its
    look at the window's midpoint's, once that looked (`SequentialRule._look_midway`)."""
    midway = (
        {"midway_p_value": st["midway_p"], "midway_alpha": comp.alpha_midway}
        if comp.alpha_midway and st.get("midway_p") is not None
        else {}
    )
    if not comp.alpha_final or st.get("final_p") is None:
        return midway
    return {
        "final_test": _final_test(comp),
        "final_p_value": st["final_p"],
        "final_alpha": comp.alpha_final,
    } | midway

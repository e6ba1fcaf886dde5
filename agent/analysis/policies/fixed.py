"""The fixed policy (Kayenta-like): one test per rule when the window ends.

Pure: no I/O. The tests are `agent.analysis.fixed`; this module keeps their sufficient
statistics in the judge's state round by round and words the end-of-window verdict.
"""

from __future__ import annotations

from agent.analysis import sketch
from agent.analysis.describe import format_value
from agent.analysis.fixed import FixedRule
from agent.analysis.policies.base import BasePolicy, Window
from agent.analysis.sequential import Kind
from agent.analysis.types import Observation, Rule
from agent.analysis.verdicts import (
    Judged,
    State,
    needs_baseline,
    no_baseline,
    rule_verdict,
    summary,
)
from common.words import counted


class FixedPolicy(BasePolicy):
    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self._tests: dict[tuple[str, str], FixedRule] = {}

    def _fixed_rule(self, rule: Rule, kind: Kind) -> FixedRule:
        key = (rule.name, kind)
        if key not in self._tests:
            base = self.window.base[rule.name]
            self._tests[key] = FixedRule(rule, base, kind, self.window.policy.confidence)
        return self._tests[key]

    def start(self, rule: Rule) -> State:
        return {"tally": {}}

    def step(self, rule: Rule, st: State, obs: Observation, kind: Kind, index: int) -> None:
        if kind != "distribution":
            return
        tally = self._fixed_rule(rule, kind).tally(obs.values)
        for key, value in tally.items():
            st["tally"][key] = st["tally"].get(key, 0.0) + value

    def failed_at(self, rule: Rule, st: State) -> int | None:
        return None  # decided only by the verdict at the window's end

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        base = self.window.base[rule.name]
        observed = self.pooled(rule, st)
        if needs_baseline(rule, base):
            return no_baseline(rule, observed, st)
        tests = self._fixed_rule(rule, kind)
        if kind == "proportion":
            samples = float(st["total"])
        elif kind == "distribution":
            samples = float(sketch.size(st["sketch"]))
        else:
            samples = float(st["with_data"])
        said = summary(rule, st, observed, samples)
        if samples < max(1, rule.min_samples):
            detail = f"{counted(samples, 'sample')} so far, {rule.min_samples} needed"
            return Judged(rule_verdict(rule, "inconclusive", observed, base, detail, {}))
        if not final:
            detail = f"{said}; judged when the window ends"
            return Judged(rule_verdict(rule, "pass", observed, base, detail, {"policy": "fixed"}))
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
        p_text = f"p-value {result.p_value:.2g}" if result.p_value is not None else "no test"
        if result.failed:
            # `(two-proportion z test, p-value 0.0068)`: `z p=0.0068` read as one word
            how = f"{result.test} test, {p_text}" if result.p_value is not None else result.test
            reason = (
                f"{rule.name}: {rule.metric} {format_value(rule.metric, result.observed)} "
                f"past {result.bound} at the end of the window ({how})"
            )
            verdict = rule_verdict(
                rule, "fail", result.observed, base, f"{said}; {p_text}", evidence
            )
            return Judged(verdict, max(rounds - 1, 0), reason, at_end=True)
        verdict = rule_verdict(rule, "pass", result.observed, base, f"{said}; {p_text}", evidence)
        return Judged(verdict)

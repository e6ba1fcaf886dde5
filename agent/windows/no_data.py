"""Why a provider rule has no data when its provider answered with none.

No I/O. Why: an answer with neither a value nor an error (the provider answered, with
nothing to measure: a release with no transactions or sessions yet, or named otherwise
in Sentry; an empty PromQL vector; an NRQL row of nulls) left the rule inconclusive
saying `no data (no data)`, in its detail and in the verdict's reason, where on-call
must read why it could not be judged and what to check. The words go where the judge's
do; the judge is left as it is (a rule without data is inconclusive, never a pass or a
rollback).
"""

from __future__ import annotations

import dataclasses

from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict


def empty_answer_words(rule: Rule, release: str | None) -> str:
    """What an answer with nothing to measure since the deploy says of `rule`."""
    if rule.source == "sentry" and release is not None:
        return (
            f'sentry answered with nothing to measure for release "{release}" since the'
            " deploy: no traffic of it yet, or Sentry names it otherwise"
            " (baseline.sentry.release)"
        )
    return f"{rule.source} answered with nothing to measure since the deploy (an empty result)"


class EmptyAnswers:
    """Per rule: why its latest answer since the deploy had no data, while it had none."""

    def __init__(self) -> None:
        self._why: dict[str, str] = {}

    def note(self, rule: Rule, answer: Observation, release: str | None) -> None:
        if answer.error is None and not answer.has_data:
            self._why[rule.name] = empty_answer_words(rule, release)
        else:
            self._why.pop(rule.name, None)

    def said(self, verdict: Verdict) -> Verdict:
        """`verdict` with each rule left at the judge's bare `no data` saying why."""
        if not self._why:
            return verdict
        reason = verdict.reason
        rules: list[RuleVerdict] = []
        for rule in verdict.rules:
            why = self._why.get(rule.name)
            if why is None or not _judges_no_data(rule):
                rules.append(rule)
                continue
            words = f"no data ({why})"
            rules.append(
                dataclasses.replace(rule, detail=words, evidence={**rule.evidence, "reason": why})
            )
            reason = reason.replace(f"{rule.name}: {rule.detail}", f"{rule.name}: {words}")
        return dataclasses.replace(verdict, reason=reason, rules=tuple(rules))


def _judges_no_data(rule: RuleVerdict) -> bool:
    """The judge's verdict of a rule with no data in any round: `no data (<why>)`, its why
    `no data` when no round said more, or an earlier round's error that the rounds with
    nothing in them left standing (the judge keeps it). The latest answer's emptiness is
    news beside that error (the provider is back, with nothing of the release): said."""
    why = rule.evidence.get("reason")
    return rule.outcome == "inconclusive" and rule.detail == f"no data ({why})"

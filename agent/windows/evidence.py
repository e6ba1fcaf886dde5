"""Turning the judge's typed values into the JSON the store keeps and the API shows,
and back. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from agent.analysis import sketch
from agent.analysis.describe import threshold_text
from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict
from agent.analysis.verdicts import RuleGlance
from checks.base import CheckResult
from common.jsonsafe import json_safe
from common.times import rfc3339

RAW_VALUES = 50
"""A stored round keeps at most this many raw values; a histogram holds them all."""

_OBSERVATION_DEFAULTS = {f.name: f.default for f in fields(Observation) if f.default is not MISSING}


def observation_to_dict(obs: Observation, *, exact: bool = False) -> dict[str, Any]:
    """Every field that differs from its default (NaN and infinities as null); raw values
    rounded to 6 places unless `exact`."""
    data: dict[str, Any] = {"value": json_safe(obs.value)}
    for name, default in _OBSERVATION_DEFAULTS.items():
        value = getattr(obs, name)
        if value == default:
            continue
        if name == "values":
            value = list(value) if exact else [round(v, 6) for v in value]
        elif isinstance(value, float):
            value = json_safe(value)
        data[name] = value
    return data


def bounded_observation_dict(obs: Observation, *, exact: bool = False) -> dict[str, Any]:
    """A round's observation for the store: the first `RAW_VALUES` raw values, and a
    histogram (`agent.analysis.sketch`) of all of them, so a round of 10,000 latencies
    stores a few hundred numbers (a restart replays them only when they are whole:
    `agent.windows.checkpoint`)."""
    data = observation_to_dict(obs, exact=exact)
    if len(obs.values) > RAW_VALUES:
        data["values"] = data["values"][:RAW_VALUES]
        data["histogram"] = sketch.add({}, obs.values)
        data["samples"] = len(obs.values)
    return data


def observation_from_dict(data: dict[str, Any]) -> Observation:
    known = {k: v for k, v in data.items() if k in _OBSERVATION_DEFAULTS or k == "value"}
    known["values"] = tuple(known.get("values") or ())
    known["period_sizes"] = tuple(known.get("period_sizes") or ())  # absent: stored before
    known["period_counts"] = tuple(
        (int(b), int(n)) for b, n in known.get("period_counts") or ()
    )  # absent: stored before
    known.setdefault("value", None)
    return Observation(**known)


def rule_to_dict(rule: RuleVerdict, links: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": rule.name,
        "source": rule.source,
        "metric": rule.metric,
        "outcome": rule.outcome,
        "observed": json_safe(rule.observed),
        "baseline": json_safe(rule.baseline),
        "threshold": rule.threshold,
        "detail": rule.detail,
        "evidence": json_safe(rule.evidence),
    }
    if links and rule.name in links:
        data["link"] = links[rule.name]
    return data


def rule_without_baseline(rule: Rule, *, fetching: bool = False) -> dict[str, Any]:
    """A provider rule without its baseline (its fetch failed, or is still under way: a
    provider's alert names both), as an alert's rule line shows it (contract §4: the
    rules, observed vs baseline vs threshold): nothing observed yet, no baseline, its
    bounds as written. A relative rule is inconclusive until its baseline comes; an
    absolute one is judged on its bound at each round the provider answers."""
    relative = rule.max_increase is not None
    if fetching:
        detail = "its baseline is still being fetched"
    elif relative:
        detail = "no baseline yet: inconclusive until it comes"
    else:
        # none needed; but while the provider is down its rounds have no data either
        detail = (
            "no baseline (an absolute bound needs none): judged on that bound at each"
            " round the provider answers"
        )
    return {
        "name": rule.name,
        "source": rule.source,
        "metric": rule.metric,
        "outcome": "inconclusive" if relative else None,
        "observed": None,
        "baseline": None,
        "threshold": threshold_text(rule),
        "detail": detail,
    }


def verdict_to_dict(
    verdict: Verdict, *, decided_at: float | None, links: dict[str, str] | None = None
) -> dict[str, Any]:
    """The API's `verdict`: while the window runs `outcome` is `pending` and
    `decided_at` null, so a live window already shows its rules' evidence. `decided_at`
    keeps its milliseconds, like the deploy object's other times."""
    outcome = {"continue": "pending"}.get(verdict.decision, verdict.decision)
    return {
        "outcome": outcome,
        "decided_at": (
            rfc3339(decided_at)
            if decided_at is not None and verdict.decision != "continue"
            else None
        ),
        "reason": verdict.reason,
        "rules": [rule_to_dict(r, links) for r in verdict.rules],
    }


def breaches(verdict: Verdict, links: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The failing rules, in the rollback webhook's `breaches` shape."""
    out = []
    for rule in verdict.rules:
        if rule.outcome != "fail":
            continue
        item = rule_to_dict(rule, links)
        out.append(
            {
                "rule": item["name"],
                "source": item["source"],
                "metric": item["metric"],
                "observed": item["observed"],
                "baseline": item["baseline"],
                "threshold": item["threshold"],
                "detail": item["detail"],
            }
        )
    return out


def breaches_as_rules(
    verdict: Verdict, links: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The failing rules in the API's rule shape (for alerts)."""
    return [rule_to_dict(r, links) for r in verdict.rules if r.outcome == "fail"]


WHAT_BROKE_MAX = 400
"""Characters of a check's own account kept in a rule's detail."""

LATENCY_FAILURES = frozenset({"timeout", "latency"})
"""The kinds of a check's failure (`details["error"]`) that speak of its latency."""


@dataclass
class WhatBroke:
    """What each check last said about the deploy, to name in its rules' details: the
    latest failure of a smoke or http check (the step, the request, expected against
    got) and the latest figures of a load check (its rate, percentiles and errors)."""

    failures: dict[str, str] = field(default_factory=dict)
    load_figures: dict[str, str] = field(default_factory=dict)
    slow: dict[str, str] = field(default_factory=dict)
    """The latest failure of each check that says something of its latency (a timeout, an
    unmet `max_latency`): what a latency rule names, never a 500 that came quickly."""

    def note(self, results: Sequence[CheckResult]) -> None:
        for result in results:
            if result.bug or any(s.target != "deploy" for s in result.samples):
                continue  # a check's own bug says nothing of what broke in the deploy
            if result.type == "load" and result.message:
                self.load_figures[result.check] = result.message
            if not result.ok and result.message:
                self._failed(result.check, result.message, result.details.get("error"))

    def note_summary(self, checks: Mapping[str, Mapping[str, object]]) -> None:
        """From a stored round's `checks` summary (a restart resumes with them)."""
        for name, entry in checks.items():
            message = entry.get("message")
            if isinstance(message, str) and message:
                if entry.get("type") == "load":
                    self.load_figures[name] = message
                if entry.get("failed"):
                    failure = entry.get("failure")
                    kind = failure.get("error") if isinstance(failure, Mapping) else None
                    self._failed(name, message, kind)

    def _failed(self, check: str, message: str, kind: object) -> None:
        self.failures[check] = message
        if kind in LATENCY_FAILURES:
            self.slow[check] = message

    def account(self, rule: Rule) -> str:
        """What the checks behind `rule` saw: a load check's figures when the rule names
        one, else the latest failure of each check the rule covers (for a latency rule,
        the latest that was about time: a timeout or an unmet `max_latency`)."""
        if rule.check is not None and rule.check in self.load_figures:
            said = [self.load_figures[rule.check]]
            if rule.check in self.failures and self.failures[rule.check] not in said:
                said.append(self.failures[rule.check])
        else:
            failures = self.slow if rule.metric.startswith("latency_") else self.failures
            names = [rule.check] if rule.check is not None else sorted(failures)
            said = [
                f"{name}: {failures[name]}" if rule.check is None else failures[name]
                for name in names
                if name in failures
            ]
        text = "; ".join(said)
        return text if len(text) <= WHAT_BROKE_MAX else text[: WHAT_BROKE_MAX - 1] + "…"


def name_what_broke(
    verdict: Verdict,
    rules: Sequence[Rule],
    what_broke: WhatBroke,
    breached: Callable[[RuleVerdict], bool],
) -> Verdict:
    """The verdict with each breached check-backed rule's detail naming what broke, so
    the API, the alert and the rollback say which step failed and how, not only
    "10 of 20 probes failed". The judge's figures are kept; its statistics untouched."""
    by_name = {rule.name: rule for rule in rules}
    judged = []
    for verdict_rule in verdict.rules:
        rule = by_name.get(verdict_rule.name)
        account = what_broke.account(rule) if rule is not None and rule.source == "checks" else ""
        if account and breached(verdict_rule):
            detail = f"{verdict_rule.detail} — {account}" if verdict_rule.detail else account
            verdict_rule = replace(verdict_rule, detail=detail)
        judged.append(verdict_rule)
    return replace(verdict, rules=tuple(judged))


_SNAPSHOT_EVIDENCE = (
    "likelihood_ratio",
    "likelihood_ratio_needed",
    "effect",
    "effect_interval",
    "confidence_interval",
    "tolerance",
    "p_value",
    "streak",
)
"""The evidence a round keeps per rule, so a page can draw how it grew round by round."""


def rule_snapshot(rule: RuleVerdict | RuleGlance) -> dict[str, Any]:
    """One rule's judgement after one round, small enough to keep with every round (the
    same from a worded verdict and from the judge's glance)."""
    data: dict[str, Any] = {"outcome": rule.outcome, "observed": json_safe(rule.observed)}
    for key in _SNAPSHOT_EVIDENCE:
        if rule.evidence.get(key) is not None:
            data[key] = json_safe(rule.evidence[key])
    return data


_FAILURE_KEYS = ("step", "step_index", "expected", "got", "status", "error")


def failure_details(details: dict[str, Any]) -> dict[str, Any]:
    """What a failed check run says about where it broke (a smoke step, expected vs got)."""
    return {k: json_safe(details[k]) for k in _FAILURE_KEYS if details.get(k) is not None}

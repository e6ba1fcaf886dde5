"""A rule's verdict and the numbers and words in it, shared by every judging policy.

Pure: no I/O, no clock. Policies word their own evidence; what a verdict is, how a window's
pooled figure is read from the judge's state, and how numbers become JSON live here once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.analysis import sketch, top_values
from agent.analysis.describe import (
    format_value,
    is_rate,
    quantile_of,
    threshold_text,
    unit_noun,
)
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.types import Rule, RuleOutcome, RuleVerdict, WindowDecision
from common.breaching import short_of_failing, unproven
from common.units import format_value as value_in_units
from common.units import judged_rate
from common.words import counted

State = dict[str, Any]
"""A judge's state: JSON-able, the same size after round 10 and round 10,000."""


@dataclass(frozen=True, slots=True)
class Judged:
    """One rule's verdict with what the window's decision needs from it."""

    verdict: RuleVerdict
    failed_at: int | None = None
    reason: str = ""
    lacking: str = ""
    """Why a rule has no evidence of a pass (pass_on evidence), or had no data."""
    at_end: bool = False
    without_data: bool = False
    """The rule had no data in any round so far (its provider down throughout, say): at the
    window's end that leaves the window `inconclusive` under every policy."""
    none_within: bool = False
    """At the window's end, every round the rule was judged on was past its bound, too few
    of them to fail (a threshold streak short of `failure_limit`), or none was (each had
    fewer than `min_samples`): no round showed it within its bound, so it is
    `inconclusive`, and so is the window, as `without_data`."""


@dataclass(frozen=True, slots=True)
class RuleGlance:
    """One rule after a round without its words: its outcome and the headline figures a
    stored round keeps (`evidence` holds at least the keys a round's snapshot shows, as
    `rule_verdict` would make them). The daemon words a verdict only when it is read."""

    name: str
    outcome: RuleOutcome
    observed: float | None
    evidence: dict[str, Any]
    failed_at: int | None = None
    without_data: bool = False
    """As `Judged.without_data`."""
    none_within: bool = False
    """As `Judged.none_within`."""


@dataclass(frozen=True, slots=True)
class Glance:
    """The window after a round: the decision `Judge.verdict` would give, and each rule's
    glance; no reason, no details."""

    decision: WindowDecision
    rules: tuple[RuleGlance, ...]


def round_number(index: int | None) -> int | None:
    """A round's number as the deploy object counts them (`rounds`, `progress.round`, the
    round events: the first is 1) from the judge's 0-based index, for the evidence."""
    return None if index is None else int(index) + 1


def and_more(more: int) -> str:
    """What follows the first failing rule in a verdict's reason: ` (and 2 more rules)`."""
    return f" (and {more} more rule{'s' if more > 1 else ''})" if more else ""


def glance_of(judged: Judged) -> RuleGlance:
    """A worded verdict's glance (policies with no cheaper way to tell their outcome)."""
    v = judged.verdict
    return RuleGlance(
        v.name,
        v.outcome,
        v.observed,
        v.evidence,
        judged.failed_at,
        judged.without_data,
        judged.none_within,
    )


def rule_glance(
    rule: Rule,
    outcome: RuleOutcome,
    observed: float | None,
    figures: dict[str, Any],
    failed_at: int | None = None,
) -> RuleGlance:
    """A glance from raw figures, made JSON-safe as `rule_verdict` makes evidence."""
    evidence = {k: to_json(v) for k, v in figures.items()}
    return RuleGlance(rule.name, outcome, clean(observed), evidence, failed_at)


def rule_verdict(
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
        observed=clean(observed),
        baseline=clean(base.value) if base else None,
        threshold=threshold_text(rule),
        detail=detail,
        evidence={k: to_json(v) for k, v in evidence.items()},
    )


def needs_baseline(rule: Rule, base: BaselineData | None) -> bool:
    """A rule whose only bound is relative cannot be judged without a baseline."""
    return base is None and rule.max is None and rule.min is None


def no_data(rule: Rule, base: BaselineData | None, st: State) -> Judged:
    why = st["last_error"] or "no rounds yet"
    detail = f"no data ({why})"
    return Judged(
        rule_verdict(rule, "inconclusive", None, base, detail, {"reason": why}),
        lacking=f"{rule.name}: no data ({why})",
        without_data=True,
    )


def no_baseline(rule: Rule, observed: float | None, st: State) -> Judged:
    detail = f"no baseline to compare with ({counted(st['with_data'], 'round')} with data)"
    return Judged(
        rule_verdict(rule, "inconclusive", observed, None, detail, {"reason": "no baseline"}),
        lacking=f"{rule.name}: no baseline",
    )


def past_short_of_failing(rule: Rule, verdict: RuleVerdict, bound: str, over: str) -> str:
    """A rule's `lacking` when it ended past its bound without the evidence to fail
    (`common.breaching.unproven`), said first: `probe-errors: error_rate 48.3% past max 5%
    over 3 rounds, short of the evidence to fail (655 to 1 of 750 needed)`, where it read
    `error_rate upper bound 75.1% vs max 5%: not enough evidence`, a quiet window's words.
    `bound` as the policy words it (rates in % here), `over` the rounds it was past it in.
    Empty for any other verdict."""
    breach = unproven(verdict.outcome, verdict.evidence)
    if breach is None:
        return ""
    metric = rule.metric
    value = said_value(metric, verdict.observed)
    return (
        f"{rule.name}: {metric} {value} past {in_percent(metric, bound)} {over},"
        f" {short_of_failing(breach)}"
    )


def said_value(metric: str, observed: float | None) -> str:
    """A rule's figure as a verdict's reason says it: a rate in % at the judge's three
    significant digits (`48.3%`, its bound in % too: `in_percent`), where a sequential
    fail said `0.483 > max 0.05` beside the inconclusive reason's `48.3% past max 5%`;
    others in their unit (`412ms`)."""
    if is_rate(metric) and observed is not None:
        return judged_rate(metric, observed)
    return format_value(metric, observed)


_BARE_FRACTION = re.compile(r"(?<![\w.+-])(\d+(?:\.\d+)?(?:e-?\d+)?)(?![\w.%])")
"""A bare number in a rate's bound as the judge words it (`max 0.01`, `0.0325 (baseline
0.025 +30%)`, `0.03 (+30% of 0.023, ...)`): a fraction; a change (`+30%`) or share
(`50%`) is already in %."""


def in_percent(metric: str, text: str) -> str:
    """A rate's bound in its words in % (`max 1%`, `3.25% (baseline 2.5% +30%)`), as every
    free text says it; other metrics' as they are."""
    if not is_rate(metric):
        return text
    return _BARE_FRACTION.sub(lambda m: value_in_units(metric, float(m[1])), text)


def pooled(rule: Rule, st: State, reader: sketch.Reader | None = None) -> float | None:
    """The window's figure so far: pooled rate, percentile of all samples, or mean value.
    A percentile is exact while the state keeps the top values it reads (`top_values`),
    else the sketch's (read by `reader` when given: the rule's, kept from round to round)."""
    kind = st["kind"]
    if kind == "proportion":
        return st["count"] / st["total"] if st["total"] else None
    if kind == "distribution":
        q = quantile_of(rule.metric) or 0.5
        top = st.get("top")
        if top:
            exact = top_values.quantile(top, sketch.size(st["sketch"]), q)
            if exact is not None:
                return exact
        if reader is not None:
            return reader.quantile(st["sketch"], q)
        return sketch.quantile(st["sketch"], q)
    return st["vsum"] / st["with_data"] if st["with_data"] else None


def count_detail(rule: Rule, st: State, *, pooled: bool) -> str | None:
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


def summary(rule: Rule, st: State, observed: float | None, samples: float) -> str:
    """`31 of 100 probes failed`, or `latency_p95 120ms over 400 samples` (a rate without
    counts in %, as the claim beside it: `error_rate 2.01% over 56 samples`)."""
    return count_detail(rule, st, pooled=True) or (
        f"{rule.metric} {said_value(rule.metric, observed)} over {counted(samples, 'sample')}"
    )


def units(rule: Rule, kind: Kind) -> str:
    if kind == "proportion":
        return unit_noun(rule)
    return "rounds" if kind == "value" else "samples"


def units_of(rule: Rule, kind: Kind, count: float) -> str:
    """`100 probes`, `1 probe`: what the rule's tests counted, with their number."""
    return counted(count, units(rule, kind).removesuffix("s"))


def effect(observed: float | None, base: BaselineData | None) -> float | None:
    if observed is None or base is None or base.value == 0:
        return None
    return observed / base.value - 1.0


def ratio(log_e: float) -> float:
    if not math.isfinite(log_e):
        return 0.0 if log_e < 0 else 1e300
    return math.exp(min(log_e, 690.0))


def clean(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def to_json(value: Any) -> Any:
    """Evidence must serialise as JSON: plain floats, no NaN or infinity."""
    kind = type(value)  # the exact built-in types first: this runs on every verdict's evidence
    if kind is float:
        return value if math.isfinite(value) else None
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k: to_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_json(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float | np.floating):
        return clean(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


_PLAIN = frozenset({str, int, bool, type(None)})

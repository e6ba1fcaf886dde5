"""The judge: rules, baselines and the rounds so far in; a verdict with its evidence out.

Pure: no I/O, no clock, no asyncio, no logging. `judge()` rebuilds everything from its
arguments on every call (O(rounds)), so a decision replays exactly after a restart, in tests
and in the decision benchmark.

How a rule's evidence is read depends on what its observations carry:
* counts (`count` of `total`, a `*_rate` metric): tests on proportions;
* raw samples (`values` of a `latency_pNN` metric): rank and quantile tests;
* a bare value (a provider's rate or percentile, throughput): no sample size to weigh, so
  the threshold streak under `sequential` (see `threshold`), and the window's mean value
  against the bounds under `fixed`.

Policies: `threshold` (bounds per round, `failure_limit` consecutive breaches), `sequential`
(always-valid tests, `agent.analysis.sequential`; the chance of failing a good deploy is at
most 1 - confidence over the whole window), `fixed` (Kayenta-like, judged once at the end,
`agent.analysis.fixed`). No data, NaN or a missing baseline make a rule `inconclusive`; they
never fail it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.analysis import stats
from agent.analysis.describe import (
    format_value,
    is_rate,
    quantile_of,
    threshold_text,
    unit_noun,
)
from agent.analysis.fixed import FixedRule
from agent.analysis.sequential import BaselineData, Kind, RuleScan, SequentialRule
from agent.analysis.stats import FloatArray
from agent.analysis.threshold import scan_streak
from agent.analysis.types import (
    Observation,
    Policy,
    Rule,
    RuleOutcome,
    RuleVerdict,
    Verdict,
)


def judge(
    rules: Sequence[Rule],
    baselines: Mapping[str, Observation],
    rounds: Sequence[Mapping[str, Observation]],
    policy: Policy,
    *,
    final: bool,
) -> Verdict:
    """Judge a window after its latest round.

    `baselines` maps rule name → baseline observation (missing: no baseline); `rounds` holds
    every round so far, oldest first, each mapping rule name → that round's observation;
    `final` is true when the window's time is up. Fails as soon as a rule fails; otherwise
    `continue`, and at the end `pass` (or `inconclusive` when no rule had data to judge).
    """
    alpha = min(max(1.0 - policy.confidence, 1e-12), 0.5)  # a confidence of 1 would never fail
    alpha_rule = alpha / max(1, len(rules))
    judged = []
    for rule in rules:
        history = _History.collect(rule, rounds)
        base = BaselineData.from_observation(baselines.get(rule.name))
        if history.with_data == 0:
            judged.append(_no_data(rule, base, history))
        elif policy.name == "fixed":
            judged.append(_by_fixed(rule, base, history, policy, final))
        elif policy.name == "threshold" or history.kind == "value":
            judged.append(_by_threshold(rule, base, history, policy))
        else:
            judged.append(_by_sequential(rule, base, history, alpha_rule))
    return _decide(judged, len(rounds), final)


# -- one rule's rounds ------------------------------------------------------------------------


@dataclass(slots=True)
class _History:
    """One rule's rounds, as the policies read them."""

    kind: Kind
    rounds: int
    with_data: int = 0
    last_error: str | None = None
    series: list[float | None] = field(default_factory=list)
    """Per round: the value, or None (no data, or fewer samples than `min_samples`)."""
    last: Observation | None = None
    """The latest observation with data."""
    count: FloatArray = field(default_factory=lambda: np.empty(0))
    total: FloatArray = field(default_factory=lambda: np.empty(0))
    values: FloatArray = field(default_factory=lambda: np.empty(0))
    index: npt.NDArray[np.intp] = field(default_factory=lambda: np.empty(0, dtype=np.intp))

    @classmethod
    def collect(cls, rule: Rule, rounds: Sequence[Mapping[str, Observation]]) -> _History:
        observed: list[Observation | None] = []
        last_error: str | None = None
        for round_ in rounds:
            obs = round_.get(rule.name)
            if obs is None:
                observed.append(None)
                last_error = "no observation"
            elif _usable(obs):
                observed.append(obs)
            else:
                observed.append(None)
                last_error = obs.error or "no data"
        usable = [o for o in observed if o is not None]
        kind: Kind = "value"
        if quantile_of(rule.metric) is not None and any(o.values for o in usable):
            kind = "distribution"
        elif is_rate(rule.metric) and any(_has_counts(o) for o in usable):
            kind = "proportion"
        history = cls(kind=kind, rounds=len(rounds), last_error=last_error)
        history.series = [
            o.value if o is not None and (o.total is None or o.total >= rule.min_samples) else None
            for o in observed
        ]
        if kind == "proportion":
            history.total = np.array(
                [o.total if o is not None and _has_counts(o) else 0 for o in observed], float
            )
            counts = [o.count if o is not None and _has_counts(o) else 0 for o in observed]
            history.count = np.clip(np.array(counts, float), 0.0, history.total)
            history.with_data = int(np.count_nonzero(history.total))
        elif kind == "distribution":
            chunks = [_finite(o.values if o else ()) for o in observed]
            sizes = [c.size for c in chunks]
            history.values = np.concatenate(chunks) if chunks else np.empty(0)
            history.index = np.repeat(np.arange(len(chunks), dtype=np.intp), sizes)
            history.with_data = sum(1 for s in sizes if s)
        else:
            history.with_data = sum(1 for v in history.series if v is not None)
        history.last = usable[-1] if usable else None
        return history


def _usable(obs: Observation) -> bool:
    return obs.value is not None and math.isfinite(obs.value) and obs.error is None


def _finite(values: Sequence[float]) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def _has_counts(obs: Observation) -> bool:
    return obs.count is not None and obs.total is not None and obs.total > 0


# -- verdicts per policy --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Judged:
    verdict: RuleVerdict
    failed_at: int | None = None
    reason: str = ""


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


def _no_data(rule: Rule, base: BaselineData | None, history: _History) -> _Judged:
    why = history.last_error or "no rounds yet"
    detail = f"no data in {history.rounds} rounds ({why})"
    return _Judged(_verdict(rule, "inconclusive", None, base, detail, {"reason": why}))


def _no_baseline(rule: Rule, observed: float | None, history: _History) -> _Judged:
    detail = f"no baseline to compare with ({history.with_data} rounds with data)"
    return _Judged(
        _verdict(rule, "inconclusive", observed, None, detail, {"reason": "no baseline"})
    )


def _by_threshold(
    rule: Rule, base: BaselineData | None, history: _History, policy: Policy
) -> _Judged:
    if _needs_baseline(rule, base):
        return _no_baseline(rule, history.last.value if history.last else None, history)
    limit = max(1, policy.failure_limit)
    scan = scan_streak(rule, history.series, base.value if base else None, limit)
    metric = rule.metric
    evidence: dict[str, Any] = {
        "policy": "threshold",
        "rounds_with_data": scan.rounds_with_data,
        "streak": scan.streak,
        "failure_limit": limit,
        "failing_rounds": list(scan.failing_rounds),
        "failed_at_round": scan.failed_at,
        "breaches": [b.text for b in scan.last_breaches],
        "effect": _effect(scan.last_value, base),
    }
    counts = _count_detail(rule, history.last)
    if scan.rounds_with_data == 0:
        detail = f"no round with at least {rule.min_samples} samples"
        return _Judged(_verdict(rule, "inconclusive", None, base, detail, evidence))
    value = format_value(metric, scan.last_value)
    if scan.failed_at is not None:
        breach = scan.last_breaches[0]
        reason = (
            f"{rule.name}: {metric} {value} {breach.op} {breach.text} "
            f"for {scan.streak} round{'s' if scan.streak != 1 else ''}"
        )
        detail = counts or f"{metric} {value} {breach.op} {breach.text}"
        verdict = _verdict(rule, "fail", scan.last_value, base, detail, evidence)
        return _Judged(verdict, scan.failed_at, reason)
    if scan.last_breaches:
        state = f"past {scan.last_breaches[0].text} for {scan.streak} of {limit} rounds"
    else:
        state = "within bounds"
    detail = f"{counts}; {state}" if counts else f"{metric} {value}, {state}"
    return _Judged(_verdict(rule, "pass", scan.last_value, base, detail, evidence))


_TEST_NAMES = {
    "proportion": "mixture likelihood ratio on proportions",
    "rank": "sequential rank test (Mann-Whitney placements)",
    "exceedance": "mixture likelihood ratio on samples past the bound",
}


def _by_sequential(
    rule: Rule, base: BaselineData | None, history: _History, alpha_rule: float
) -> _Judged:
    tests = SequentialRule(rule, base, history.kind, alpha_rule)
    observed = _pooled(rule, history)
    if not tests.components:
        if _needs_baseline(rule, base):
            return _no_baseline(rule, observed, history)
        detail = "no bound this data can be tested against"
        return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
    if history.kind == "proportion":
        scan = tests.scan_counts(history.count, history.total)
    else:
        scan = tests.scan_values(history.values, history.index, history.rounds)
    if scan.samples < max(1, rule.min_samples):
        detail = f"{scan.samples:g} samples so far, {rule.min_samples} needed"
        return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
    evidence = _sequential_evidence(scan, alpha_rule, observed, base, history)
    decisive = scan.decisive
    assert decisive is not None
    lr = _ratio(decisive.peak_log_e)
    needed = 1.0 / decisive.component.alpha
    summary = _count_detail(rule, history.last, pooled=history) or (
        f"{rule.metric} {format_value(rule.metric, observed)} over {scan.samples:g} samples"
    )
    if scan.failed_at is not None:
        reason = (
            f"{rule.name}: {rule.metric} {format_value(rule.metric, observed)} "
            f"{decisive.component.claim}, likelihood ratio {lr:.3g} >= {needed:.3g} "
            f"after {scan.samples:g} {_units(rule, history)}"
        )
        detail = f"{summary}; likelihood ratio {lr:.3g} reached {needed:.3g}"
        verdict = _verdict(rule, "fail", observed, base, detail, evidence)
        return _Judged(verdict, scan.failed_at, reason)
    detail = f"{summary}; strongest evidence: likelihood ratio {lr:.3g} of {needed:.3g} needed"
    return _Judged(_verdict(rule, "pass", observed, base, detail, evidence))


def _sequential_evidence(
    scan: RuleScan,
    alpha_rule: float,
    observed: float | None,
    base: BaselineData | None,
    history: _History,
) -> dict[str, Any]:
    decisive = scan.decisive
    assert decisive is not None
    return {
        "policy": "sequential",
        "test": _TEST_NAMES[decisive.component.test],
        "statistic": "e-value (likelihood ratio, always valid)",
        "likelihood_ratio": _ratio(decisive.peak_log_e),
        "likelihood_ratio_needed": 1.0 / decisive.component.alpha,
        "null": decisive.component.null,
        "p_value": scan.p_value,
        "alpha": alpha_rule,
        "effect": _effect(observed, base),
        "samples": scan.samples,
        "rounds_with_data": history.with_data,
        "failed_at_round": scan.failed_at,
        "components": [
            {
                "bound": s.component.bound,
                "test": _TEST_NAMES[s.component.test],
                "null": s.component.null,
                "likelihood_ratio": _json(_ratio(s.peak_log_e)),
                "likelihood_ratio_needed": _json(1.0 / s.component.alpha),
                "baseline_bound": _json(s.component.baseline_bound),
                "failed_at_round": s.crossed_at,
            }
            for s in scan.components
        ],
    }


def _by_fixed(
    rule: Rule, base: BaselineData | None, history: _History, policy: Policy, final: bool
) -> _Judged:
    observed = _pooled(rule, history)
    if _needs_baseline(rule, base):
        return _no_baseline(rule, observed, history)
    tests = FixedRule(rule, base, history.kind, policy.confidence)
    if history.kind == "proportion":
        samples = float(history.total.sum())
    elif history.kind == "distribution":
        samples = float(history.values.size)
    else:
        samples = float(history.with_data)
    summary = _count_detail(rule, history.last, pooled=history) or (
        f"{rule.metric} {format_value(rule.metric, observed)} over {samples:g} samples"
    )
    if samples < max(1, rule.min_samples):
        detail = f"{samples:g} samples so far, {rule.min_samples} needed"
        return _Judged(_verdict(rule, "inconclusive", observed, base, detail, {}))
    if not final:
        detail = f"{summary}; judged when the window ends"
        return _Judged(_verdict(rule, "pass", observed, base, detail, {"policy": "fixed"}))
    if history.kind == "proportion":
        result = tests.test_counts(float(history.count.sum()), samples)
    elif history.kind == "distribution":
        result = tests.test_values(history.values)
    else:
        assert observed is not None
        result = tests.test_value(observed)
    evidence = {
        "policy": "fixed",
        "test": result.test,
        "statistic": result.statistic,
        "p_value": result.p_value,
        "alpha": tests.alpha,
        "effect": result.effect,
        "samples": samples,
        "bound": result.bound,
        "failed_at_round": history.rounds - 1 if result.failed else None,
    }
    p_text = f"p={result.p_value:.2g}" if result.p_value is not None else "no test"
    if result.failed:
        reason = (
            f"{rule.name}: {rule.metric} {format_value(rule.metric, result.observed)} "
            f"past {result.bound} at the end of the window ({result.test} {p_text})"
        )
        verdict = _verdict(rule, "fail", result.observed, base, f"{summary}; {p_text}", evidence)
        return _Judged(verdict, history.rounds - 1, reason)
    verdict = _verdict(rule, "pass", result.observed, base, f"{summary}; {p_text}", evidence)
    return _Judged(verdict)


# -- the window -----------------------------------------------------------------------------


def _decide(judged: list[_Judged], rounds: int, final: bool) -> Verdict:
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
    if not final:
        return Verdict(
            "continue", f"no rule failed after {of_rounds} ({judgeable} with data)", verdicts
        )
    if judgeable:
        extra = f", {inconclusive} inconclusive" if inconclusive else ""
        return Verdict(
            "pass", f"{judgeable} of {len(verdicts)} rules passed over {of_rounds}{extra}", verdicts
        )
    return Verdict("inconclusive", f"no rule had data to judge over {of_rounds}", verdicts)


# -- wording and numbers ----------------------------------------------------------------------


def _pooled(rule: Rule, history: _History) -> float | None:
    """The window's figure so far: pooled rate, percentile of all samples, or mean value."""
    if history.kind == "proportion":
        total = float(history.total.sum())
        return float(history.count.sum()) / total if total else None
    if history.kind == "distribution":
        q = quantile_of(rule.metric) or 0.5
        return stats.percentile(history.values, q) if history.values.size else None
    values = [v for v in history.series if v is not None]
    return float(np.mean(values)) if values else None


def _count_detail(
    rule: Rule, last: Observation | None, *, pooled: _History | None = None
) -> str | None:
    """`31 of 100 probes failed` (the latest round, or the window when `pooled`)."""
    if pooled is not None and pooled.kind == "proportion":
        count, total = int(pooled.count.sum()), int(pooled.total.sum())
    elif pooled is None and last is not None and _has_counts(last) and is_rate(rule.metric):
        count, total = int(last.count or 0), int(last.total or 0)
    else:
        return None
    verb = " failed" if rule.metric == "error_rate" else ""
    return f"{count} of {total} {unit_noun(rule)}{verb}"


def _units(rule: Rule, history: _History) -> str:
    return unit_noun(rule) if history.kind == "proportion" else "samples"


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

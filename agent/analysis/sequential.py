"""The sequential policy's tests of one rule, compiled against its baseline.

Pure: no I/O, no clock. `SequentialRule` is built once from a rule, its baseline and the
rule's share of the error budget; `scan_counts` / `scan_values` turn per-round statistics into
e-value trajectories and the round at which the rule fails, if any. `judge()` rebuilds the
per-round statistics from the stored rounds on every call; the decision benchmark feeds
numpy arrays straight in. Same code, same decisions. Methods: see `agent.analysis.stats`.

Error budget. The window's alpha = 1 - confidence is split evenly between rules, then between
a rule's tests (its bounds; a relative latency bound runs two tests: a rank test for a shift
of the whole distribution and an exceedance test of the quantile the rule names, for
regressions confined to the tail). A test relative to a measured baseline spends a fifth of
its share (`BASELINE_SHARE`) on the baseline's confidence bound and the rest on the
sequential test. Union bound: the chance that any rule of a good deploy ever fails is at
most alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from agent.analysis import stats
from agent.analysis.describe import (
    change_floor,
    format_percent,
    format_value,
    quantile_of,
)
from agent.analysis.stats import FloatArray
from agent.analysis.threshold import relative_limit
from agent.analysis.types import Observation, Rule

Kind = Literal["proportion", "distribution", "value"]
"""How a rule's evidence is tested: counts, raw samples, or bare values (threshold rule)."""
Bound = Literal["max_increase", "max", "min"]
Test = Literal["proportion", "rank", "exceedance"]

_EMPTY: FloatArray = np.empty(0)

BASELINE_SHARE = 0.2
"""Part of a relative test's alpha spent on the baseline's confidence bound. Small, because a
bound widens only like sqrt(log(1 / alpha)) while the sequential threshold grows like
log(1 / alpha)."""


@dataclass(frozen=True, slots=True)
class BaselineData:
    """A baseline as the tests need it: the value, counts, and sorted raw samples."""

    value: float
    count: float | None = None
    total: float | None = None
    sorted_values: FloatArray = field(default_factory=lambda: _EMPTY)
    periods: int = 1
    dispersion: float = 0.0
    """Within-period correlation of events (rho), 0 when unmeasured."""

    @classmethod
    def from_observation(cls, obs: Observation | None) -> BaselineData | None:
        """None when the baseline has no data (missing, NaN, or an error)."""
        if obs is None or obs.value is None or obs.error is not None:
            return None
        if not math.isfinite(obs.value):
            return None
        values = np.asarray(obs.values, dtype=np.float64) if obs.values else _EMPTY
        values = np.sort(values[np.isfinite(values)])
        return cls(
            value=float(obs.value),
            count=None if obs.count is None else float(obs.count),
            total=None if obs.total is None else float(obs.total),
            sorted_values=values,
            periods=max(1, obs.periods),
            dispersion=obs.dispersion or 0.0,
        )

    @property
    def has_counts(self) -> bool:
        return self.count is not None and self.total is not None and self.total > 0

    @property
    def inflation(self) -> float:
        """Variance inflation of the pooled count: 1 + (mean period size - 1) * rho."""
        if not self.has_counts or self.total is None:
            return 1.0
        return max(1.0, 1.0 + (self.total / self.periods - 1.0) * self.dispersion)


@dataclass(frozen=True, slots=True)
class Component:
    """One always-valid test of one bound of a rule."""

    bound: Bound
    test: Test
    alpha: float
    """This test's own level: it fails when its e-value reaches 1 / alpha."""
    weight: float
    """alpha_rule / alpha, turning its p-value into a rule-level p-value."""
    null: str
    """The hypothesis it tests, for humans: `error_rate <= 0.0146 (baseline 0.0101 +20%)`."""
    claim: str
    """What a failure asserts about the metric: `> 0.0146 (baseline 0.0101 +20%)`."""
    p0: float = 0.5
    """Proportion / exceedance tests: the largest acceptable share of bad events."""
    flip: bool = False
    """Proportion: the bad events are total - count. Exceedance and rank: the bad side is low."""
    cutoff: float = 0.0
    """Exceedance: samples past it are bad events."""
    scale: float = 1.0
    """Rank: samples are divided by it (the tolerance) before being placed in the baseline."""
    margin: float = 0.0
    """Rank: DKW margin of the baseline's empirical CDF."""
    baseline_bound: float | None = None
    """The baseline's confidence limit (rate or quantile) the relative bound was built on."""

    @property
    def log_threshold(self) -> float:
        return math.log(1.0 / self.alpha)


@dataclass(frozen=True, slots=True)
class ComponentScan:
    component: Component
    log_e: FloatArray
    """Log e-value after each round."""
    crossed_at: int | None

    @property
    def peak_log_e(self) -> float:
        return float(np.max(self.log_e)) if self.log_e.size else 0.0


@dataclass(frozen=True, slots=True)
class RuleScan:
    """A rule's sequential tests over the rounds so far."""

    components: tuple[ComponentScan, ...]
    samples: float
    """Events or samples seen in the window (unweighted)."""
    failed_at: int | None
    decisive: ComponentScan | None
    """The component that failed first, or the one closest to failing."""
    p_value: float
    """Always-valid p-value of the rule: it fails when this is at most its alpha."""


class SequentialRule:
    """A rule's always-valid tests, compiled against its baseline for one window."""

    def __init__(self, rule: Rule, baseline: BaselineData | None, kind: Kind, alpha: float) -> None:
        assert kind != "value", "value rules are judged by the threshold streak"
        self.rule = rule
        self.baseline = baseline
        self.kind: Kind = kind
        self.alpha = alpha
        self.rho = baseline.dispersion if baseline is not None else 0.0
        self.quantile = quantile_of(rule.metric) or 0.5
        self.components: tuple[Component, ...] = tuple(self._build())

    # -- construction ---------------------------------------------------------------------

    def _planned(self) -> list[str]:
        rule, base = self.rule, self.baseline
        plan: list[str] = []
        if rule.max_increase is not None and base is not None:
            if self.kind == "distribution" and base.sorted_values.size:
                plan += ["rank", "exceedance"]
            else:
                plan.append("relative")
        if rule.max is not None:
            plan.append("max")
        if rule.min is not None:
            plan.append("min")
        return plan

    def _build(self) -> list[Component]:
        plan = self._planned()
        if not plan:
            return []
        share = self.alpha / len(plan)
        built = [self._component(kind, share) for kind in plan]
        return [c for c in built if c is not None]

    def _make(
        self,
        bound: Bound,
        test: Test,
        alpha: float,
        null: str,
        claim: str,
        *,
        p0: float = 0.5,
        flip: bool = False,
        cutoff: float = 0.0,
        scale: float = 1.0,
        margin: float = 0.0,
        baseline_bound: float | None = None,
    ) -> Component:
        return Component(
            bound=bound,
            test=test,
            alpha=alpha,
            weight=self.alpha / alpha,
            null=null,
            claim=claim,
            p0=p0,
            flip=flip,
            cutoff=cutoff,
            scale=scale,
            margin=margin,
            baseline_bound=baseline_bound,
        )

    def _component(self, plan: str, share: float) -> Component | None:
        """One planned test with its `share` of the rule's alpha; None if it cannot reject."""
        rule, base, metric = self.rule, self.baseline, self.rule.metric
        up = rule.direction == "increase"
        q = self.quantile

        def fmt(value: float) -> str:
            return format_value(metric, value)

        if plan in ("max", "min"):
            is_max = plan == "max"
            which: Bound = "max" if is_max else "min"
            bound = rule.max if is_max else rule.min
            assert bound is not None
            null = f"{metric} {'<=' if is_max else '>='} {fmt(bound)}"
            claim = f"{'>' if is_max else '<'} {which} {fmt(bound)}"
            if self.kind == "proportion":
                p0 = bound if is_max else 1.0 - bound
                if p0 >= 1.0:
                    return None
                return self._make(which, "proportion", share, null, claim, p0=p0, flip=not is_max)
            p0 = 1.0 - q if is_max else q
            return self._make(
                which, "exceedance", share, null, claim, p0=p0, flip=not is_max, cutoff=bound
            )
        assert base is not None and rule.max_increase is not None
        delta = rule.max_increase
        change = f"{'+' if up else '-'}{format_percent(delta)}"
        sign, past = ("<=", ">") if up else (">=", "<")
        tail = (1.0 - q) if up else q
        if plan == "rank":
            if not up and delta >= 1.0:
                return None
            return self._make(
                "max_increase",
                "rank",
                share * (1 - BASELINE_SHARE),
                f"{metric} distribution within baseline {change}",
                f"{'above' if up else 'below'} baseline {fmt(base.value)} {change} (rank test)",
                flip=not up,
                scale=1.0 + delta if up else 1.0 - delta,
                margin=stats.dkw_margin(base.sorted_values.size, share * BASELINE_SHARE),
            )
        if plan == "exceedance":
            if up:
                bq = stats.quantile_upper_bound(base.sorted_values, q, share * BASELINE_SHARE)
            else:
                bq = stats.quantile_lower_bound(base.sorted_values, q, share * BASELINE_SHARE)
            if bq is None:
                return None
            limit = relative_limit(rule, bq)
            assert limit is not None
            rest = f"{fmt(limit)} (baseline {fmt(base.value)} {change})"
            return self._make(
                "max_increase",
                "exceedance",
                share * (1 - BASELINE_SHARE),
                f"{metric} {sign} {rest}",
                f"{past} {rest}",
                p0=tail,
                flip=not up,
                cutoff=limit,
                baseline_bound=bq,
            )
        if self.kind == "distribution":
            # a bare baseline value (a provider's percentile): taken at face value
            limit = relative_limit(rule, base.value)
            assert limit is not None
            rest = f"{fmt(limit)} (baseline {fmt(base.value)} {change})"
            return self._make(
                "max_increase",
                "exceedance",
                share,
                f"{metric} {sign} {rest}",
                f"{past} {rest}",
                p0=tail,
                flip=not up,
                cutoff=limit,
            )
        if base.has_counts and base.count is not None and base.total is not None:
            alpha_s = share * (1 - BASELINE_SHARE)
            inflation = base.inflation
            x, n = base.count / inflation, base.total / inflation
            floor = change_floor(metric)
            if up:
                rate = stats.rate_upper_bound(x, n, share * BASELINE_SHARE)
                p0 = max(rate * (1.0 + delta), rate + floor)
            else:
                rate = stats.rate_lower_bound(x, n, share * BASELINE_SHARE)
                p0 = min(rate * (1.0 - delta), rate - floor)
            baseline_bound: float | None = rate
        else:
            baseline_bound = None
            alpha_s = share
            limit = relative_limit(rule, base.value)
            assert limit is not None
            p0 = limit
        rest = f"{p0:.3g} (baseline {base.value:.3g} {change})"
        bad_p0 = p0 if up else 1.0 - p0
        if bad_p0 >= 1.0:
            return None
        return self._make(
            "max_increase",
            "proportion",
            alpha_s,
            f"{metric} {sign} {rest}",
            f"{past} {rest}",
            p0=bad_p0,
            flip=not up,
            baseline_bound=baseline_bound,
        )

    # -- scanning -------------------------------------------------------------------------

    def scan_counts(self, count: npt.ArrayLike, total: npt.ArrayLike) -> RuleScan:
        """Scan rounds of counts (0 of 0 for a round without data), oldest first.

        Each round is discounted by its burstiness: weight 1 / (1 + (n - 1) rho).
        """
        c = np.asarray(count, dtype=np.float64)
        t = np.asarray(total, dtype=np.float64)
        weight = 1.0 / (1.0 + np.maximum(t - 1.0, 0.0) * self.rho)
        cum_n = np.cumsum(t)
        scans = []
        for comp in self.components:
            bad = (t - c) if comp.flip else c
            log_e = stats.proportion_log_e(
                np.cumsum(weight * bad), np.cumsum(weight * (t - bad)), comp.p0
            )
            scans.append(self._crossing(comp, log_e, cum_n))
        return self._result(scans, float(cum_n[-1]) if cum_n.size else 0.0)

    def scan_values(
        self, values: npt.ArrayLike, round_index: npt.ArrayLike, rounds: int
    ) -> RuleScan:
        """Scan raw samples, `round_index[i]` (0-based, < rounds) being the round of `values[i]`."""
        x = np.asarray(values, dtype=np.float64)
        idx = np.asarray(round_index, dtype=np.intp)
        cum_n = np.cumsum(np.bincount(idx, minlength=rounds).astype(np.float64))
        scans = []
        for comp in self.components:
            if comp.test == "rank":
                u = stats.placements(self._base_values(), x / comp.scale)
                if comp.flip:
                    u = 1.0 - u
                centred = np.bincount(idx, weights=u - 0.5 - comp.margin, minlength=rounds)
                log_e = stats.rank_log_e(np.cumsum(centred), cum_n)
            else:
                bad_mask = (x < comp.cutoff) if comp.flip else (x > comp.cutoff)
                cum_bad = np.cumsum(np.bincount(idx, weights=bad_mask, minlength=rounds))
                log_e = stats.proportion_log_e(cum_bad, cum_n - cum_bad, comp.p0)
            scans.append(self._crossing(comp, log_e, cum_n))
        return self._result(scans, float(cum_n[-1]) if cum_n.size else 0.0)

    def _base_values(self) -> FloatArray:
        assert self.baseline is not None
        return self.baseline.sorted_values

    def _crossing(self, comp: Component, log_e: FloatArray, cum_n: FloatArray) -> ComponentScan:
        eligible = cum_n >= max(1, self.rule.min_samples)
        hits = np.flatnonzero(eligible & (log_e >= comp.log_threshold))
        gated = np.where(eligible, log_e, -np.inf)
        return ComponentScan(comp, gated, int(hits[0]) if hits.size else None)

    def _result(self, scans: list[ComponentScan], samples: float) -> RuleScan:
        failed = [s for s in scans if s.crossed_at is not None]
        if failed:
            decisive: ComponentScan | None = min(failed, key=lambda s: s.crossed_at or 0)
        elif scans:
            decisive = max(scans, key=lambda s: s.peak_log_e - s.component.log_threshold)
        else:
            decisive = None
        p_value = 1.0
        for s in scans:
            peak = s.peak_log_e
            if math.isfinite(peak):
                p_value = min(p_value, s.component.weight * math.exp(-min(peak, 700.0)))
        return RuleScan(
            components=tuple(scans),
            samples=samples,
            failed_at=decisive.crossed_at if decisive is not None else None,
            decisive=decisive,
            p_value=p_value,
        )

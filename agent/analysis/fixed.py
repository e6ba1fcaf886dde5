"""The fixed policy (Kayenta-like): one test per rule when the window ends.

Pure: no I/O. Like Kayenta's NetflixACAJudge, a relative bound fails only when the
difference is significant (Mann-Whitney U, two-sided interval at `confidence`, so one-sided
(1 - confidence) / 2) *and* the effect is at least the allowed increase (`max_increase`,
measured on the rule's own metric, e.g. p95 over baseline p95). Rates use the two-proportion
z-test, which is Mann-Whitney on 0/1 outcomes in large samples. Absolute bounds use an exact
binomial tail on the events past the bound. Kayenta's extra "lower bound above a quarter of
the Hodges-Lehmann estimate" rule is not reproduced (pairwise medians over 10^5 samples are
too costly to replay); the effect-size gate plays the same part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.analysis import stats
from agent.analysis.describe import format_value, quantile_of, threshold_text
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.threshold import breaches, relative_limit
from agent.analysis.types import Rule


@dataclass(frozen=True, slots=True)
class FixedResult:
    """The end-of-window test of one rule."""

    failed: bool
    observed: float
    test: str
    """`mann-whitney`, `two-proportion z`, `binomial` or `threshold`."""
    bound: str = ""
    """The bound that failed (or was closest), as written in the rule."""
    statistic: float | None = None
    p_value: float | None = None
    effect: float | None = None
    """Relative change against the baseline (0.5 = +50%)."""
    samples: float = 0.0


class FixedRule:
    """A rule's end-of-window test against its baseline."""

    def __init__(
        self, rule: Rule, baseline: BaselineData | None, kind: Kind, confidence: float
    ) -> None:
        self.rule = rule
        self.baseline = baseline
        self.kind = kind
        self.alpha = (1.0 - confidence) / 2.0
        self.quantile = quantile_of(rule.metric) or 0.5

    def _effect(self, observed: float, base: float | None) -> float | None:
        if base is None or base == 0:
            return None
        return observed / base - 1.0

    def test_counts(self, count: float, total: float) -> FixedResult:
        """Pooled `count` of `total` events over the window."""
        rule, base = self.rule, self.baseline
        observed = count / total if total > 0 else 0.0
        results: list[FixedResult] = []
        if rule.max_increase is not None and base is not None:
            up = rule.direction == "increase"
            limit = relative_limit(rule, base.value)
            assert limit is not None
            bad, base_bad = (count, base.count) if up else (total - count, None)
            if base.has_counts and base.count is not None and base.total is not None:
                if not up:
                    base_bad = base.total - base.count
                assert base_bad is not None
                z, p = stats.two_proportion_greater(bad, total, base_bad, base.total)
                test, statistic = "two-proportion z", z
            else:
                bad_p0 = base.value if up else 1.0 - base.value
                p, test, statistic = stats.binomial_greater(bad, total, bad_p0), "binomial", None
            past = observed > limit if up else observed < limit
            results.append(
                FixedResult(
                    failed=past and p < self.alpha,
                    observed=observed,
                    test=test,
                    bound=_bound_text(rule, "max_increase"),
                    statistic=statistic,
                    p_value=p,
                    effect=self._effect(observed, base.value),
                    samples=total,
                )
            )
        for name, value in (("max", rule.max), ("min", rule.min)):
            if value is None:
                continue
            if name == "max":
                p = stats.binomial_greater(count, total, value)
            else:
                p = stats.binomial_greater(total - count, total, 1.0 - value)
            results.append(self._absolute(name, p, observed, total))
        return _worst(results, observed, total)

    def tally(self, values: npt.ArrayLike) -> dict[str, float]:
        """One round's sufficient statistics for `test_distribution` (added up over rounds):
        samples, their placements in the baseline, and the samples past each bound."""
        rule, base = self.rule, self.baseline
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        up = rule.direction == "increase"
        out = {"n": float(x.size)}
        if base is not None and base.sorted_values.size:
            out["placed"] = float(np.sum(stats.placements(base.sorted_values, x)))
        elif base is not None and rule.max_increase is not None:
            cutoff = relative_limit(rule, base.value)
            assert cutoff is not None
            out["past_max_increase"] = float(np.sum(x > cutoff if up else x < cutoff))
        if rule.max is not None:
            out["past_max"] = float(np.sum(x > rule.max))
        if rule.min is not None:
            out["past_min"] = float(np.sum(x < rule.min))
        return out

    def test_distribution(self, tally: dict[str, float], observed: float) -> FixedResult:
        """Every sample of the window, as summed `tally`s, and the window's percentile."""
        rule, base, q = self.rule, self.baseline, self.quantile
        n = tally.get("n", 0.0)
        results: list[FixedResult] = []
        if rule.max_increase is not None and base is not None:
            up = rule.direction == "increase"
            if base.sorted_values.size:
                base_q = stats.percentile(base.sorted_values, q)
                placed = tally.get("placed", 0.0)
                placed = placed if up else n - placed
                statistic, p = stats.mann_whitney_greater(placed, int(n), base.sorted_values.size)
                test = "mann-whitney"
            else:
                base_q = base.value
                past_count = tally.get("past_max_increase", 0.0)
                p = stats.binomial_greater(past_count, n, (1.0 - q) if up else q)
                statistic, test = past_count, "binomial"
            limit = relative_limit(rule, base_q)
            assert limit is not None
            past = observed > limit if up else observed < limit
            results.append(
                FixedResult(
                    failed=past and p < self.alpha,
                    observed=observed,
                    test=test,
                    bound=_bound_text(rule, "max_increase"),
                    statistic=statistic,
                    p_value=p,
                    effect=self._effect(observed, base_q),
                    samples=n,
                )
            )
        if rule.max is not None:
            p = stats.binomial_greater(tally.get("past_max", 0.0), n, 1.0 - q)
            results.append(self._absolute("max", p, observed, n))
        if rule.min is not None:
            p = stats.binomial_greater(tally.get("past_min", 0.0), n, q)
            results.append(self._absolute("min", p, observed, n))
        return _worst(results, observed, n)

    def _absolute(self, name: str, p: float, observed: float, samples: float) -> FixedResult:
        """An absolute `max`/`min` bound's result, from its exact binomial p-value."""
        return FixedResult(
            failed=p < self.alpha,
            observed=observed,
            test="binomial",
            bound=_bound_text(self.rule, name),
            p_value=p,
            effect=self._effect(observed, self.baseline.value if self.baseline else None),
            samples=samples,
        )

    def test_value(self, value: float) -> FixedResult:
        """A bare value (the mean of the rounds' values): no samples to test, so compare."""
        base = self.baseline.value if self.baseline else None
        found = breaches(self.rule, value, base)
        return FixedResult(
            failed=bool(found),
            observed=value,
            test="threshold",
            bound=found[0].text if found else threshold_text(self.rule),
            effect=self._effect(value, base),
        )


def _bound_text(rule: Rule, name: str) -> str:
    if name == "max_increase":
        assert rule.max_increase is not None
        word = "max_increase" if rule.direction == "increase" else "max_decrease"
        return f"{word} {rule.max_increase * 100:g}%"
    value = rule.max if name == "max" else rule.min
    return f"{name} {format_value(rule.metric, value)}"


def _worst(results: list[FixedResult], observed: float, samples: float) -> FixedResult:
    if not results:
        return FixedResult(failed=False, observed=observed, test="none", samples=samples)
    failed = [r for r in results if r.failed]
    pool = failed or results
    return min(pool, key=lambda r: 1.0 if r.p_value is None else r.p_value)

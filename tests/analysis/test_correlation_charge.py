"""The upper limit of the within-round correlation a conformal test's tilted bets read from
the baseline's periods is charged to the test's share (`SequentialRule._charge_correlation`).

Those bets are e-values only where the true correlation is within the limit, so a good
release fails the test with chance at most its levels plus the limit's: the limit was taken
at the e-process's own level, charged nowhere: a relative p95 rule at 0.0025 spent 0.00415
(its tests' levels, and its rank and exceedance tests' levels from the deploy again)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.analysis import exceedance_bets, rank_bets
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

ALPHA = 0.0025


def _baseline(periods: int = 60, per: int = 30) -> BaselineData:
    rng = np.random.default_rng(3)
    values = 0.05 * rng.lognormal(0.0, 0.3, periods * per)
    base = BaselineData.from_observation(
        Observation(
            float(np.percentile(values, 95)),
            values=tuple(values.tolist()),
            quantile=0.95,
            periods=periods,
            period_sizes=(per,) * periods,
        )
    )
    assert base is not None
    return base


def _spent(monkeypatch: pytest.MonkeyPatch, base: BaselineData) -> tuple[float, dict[str, float]]:
    """The levels a relative p95 rule's tests spend, and each correlation limit's level."""
    limits: dict[str, float] = {}
    placement, exceedance = rank_bets.placement_correlation, exceedance_bets.exceedance_correlation

    def placed(*args: Any) -> float | None:
        limits["rank"] = args[2]
        return placement(*args)

    def exceeding(*args: Any, **kwargs: Any) -> float | None:
        limits["exceedance"] = args[3]
        return exceedance(*args, **kwargs)

    monkeypatch.setattr(rank_bets, "placement_correlation", placed)
    monkeypatch.setattr(exceedance_bets, "exceedance_correlation", exceeding)
    rule = Rule("p95", "checks", "latency_p95", max_increase=0.1)
    tests = SequentialRule(rule, base, "distribution", ALPHA, horizon=30)
    levels = sum(c.alpha + c.alpha_detector + c.alpha_final for c in tests.components)
    return levels, limits


def test_the_correlation_limits_are_charged_to_the_rules_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests and limits together spend the rule's share, no more."""
    levels, limits = _spent(monkeypatch, _baseline())
    assert set(limits) == {"rank", "exceedance"}
    assert all(level > 0 for level in limits.values())
    assert levels + sum(limits.values()) == pytest.approx(ALPHA, rel=1e-9)


def test_a_baseline_without_periods_spends_nothing_on_a_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One period measures no correlation: the bets are the linear ones, valid without a
    limit, and the tests keep the whole share."""
    levels, limits = _spent(monkeypatch, _baseline(periods=1, per=600))
    assert limits == {}
    assert levels == pytest.approx(ALPHA, rel=1e-9)

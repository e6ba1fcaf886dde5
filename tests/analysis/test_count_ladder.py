"""The two-sample count test's ladder over the baseline's confidence limits: a fine geometric
grid whose weights sum to 1 (the baseline's e-value has mean at most 1 at the true rate),
which finds a small regression against a small baseline with less evidence than the
halving ladder it replaced (errors x2 and rare errors x5 at 10 req/s)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis import sequential
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

RULE = Rule("errors", "checks", "error_rate", max_increase=0.1)
ALPHA = 0.005
"""One rule's share of the default budget with two rules (confidence 0.99)."""
HALVING = (
    (1.0, 0.4),
    (0.5, 1.0),
    (0.3, 1.0),
    (0.15, 1.0),
    (0.07, 1.0),
    (0.03, 1.0),
    (0.012, 1.0),
    (0.006, 1.0),
    (0.003, 1.0),
    (0.0015, 1.0),
    (7e-4, 1.0),
    (3e-4, 1.0),
)
"""The ladder before session 8 (12 levels, about halving)."""


def test_the_baselines_e_value_weights_sum_to_one() -> None:
    """E_k = sum_{i<=k} w_i / beta_i with sum w_i = 1 over the levels kept: the weights
    recovered from the ladder's log e-values add up to 1, and the levels are fine."""
    share = ALPHA
    ladder = sequential._count_ladder(share, lambda beta: beta)
    betas = [b for b, _ in sequential.COUNT_LADDER if b > share * sequential.COUNT_TAIL_SHARE]
    e = np.exp([log_e for _, _, log_e in ladder])
    weights = np.diff(np.concatenate([[0.0], e])) * np.array(betas)
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-9)
    assert all(w > 0 for w in weights)
    assert max(b / a for a, b in zip(betas[1:], betas, strict=False)) <= 1.0 / 0.79


def _peak(baseline_errors: int, window_errors: int) -> tuple[float, float]:
    """(peak log e-value of the test from the deploy, its threshold): a baseline of 18,000
    requests in 60 periods, a window of 900 rounds of 10 requests with `window_errors`
    spread evenly."""
    base = BaselineData(
        value=baseline_errors / 18000,
        count=float(baseline_errors),
        total=18000.0,
        periods=60,
        dispersion=0.0005,
    )
    rule = SequentialRule(RULE, base, "proportion", ALPHA, horizon=900)
    state = rule.start()
    spread = np.diff(np.floor(np.arange(901) * window_errors / 900)).astype(int)
    for k, count in enumerate(spread):
        rule.step(state, Observation(value=count / 10, count=int(count), total=10), k)
    comp = rule.components[0]
    return state["tests"][comp.key]["peak"], comp.log_threshold


@pytest.mark.parametrize(
    ("baseline_errors", "window_errors"),
    [(180, 153), (18, 33)],
    ids=["errors-x1.7-at-1pct", "rare-errors-x3.7-at-0.1pct"],
)
def test_a_small_regression_against_a_small_baseline_is_found(
    baseline_errors: int, window_errors: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows like the benchmark's misses (observed ratios 1.7 and 3.7 where x2 and x5
    were simulated): the shipped ladder crosses its threshold, the halving one did not,
    about half a nat short (the e-process with the share it had before the window's end
    got a test of its own: `FINAL_SHARE` 0)."""
    monkeypatch.setattr(sequential, "FINAL_SHARE", 0.0)
    peak, threshold = _peak(baseline_errors, window_errors)
    monkeypatch.setattr(sequential, "COUNT_LADDER", HALVING)
    before, _ = _peak(baseline_errors, window_errors)
    assert before < threshold <= peak
    assert peak - before >= 0.4

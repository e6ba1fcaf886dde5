"""The statistical primitives: exact values against scipy, and validity under repeated looks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sc_stats

from agent.analysis import stats


def test_proportion_e_value_is_the_weighted_mean_likelihood_ratio_over_the_grid() -> None:
    p0, bad, good = 0.1, 3, 7
    mixture = 0.0
    grid = (1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
    for i, r in enumerate(grid):
        weight = 0.1 / 3 if i < 3 else 0.9 / 6
        odds = p0 / (1 - p0) * r
        p = odds / (1 + odds)
        mixture += weight * (p / p0) ** bad * ((1 - p) / (1 - p0)) ** good
    expected = math.log(mixture)
    assert float(stats.proportion_log_e(bad, good, p0)) == pytest.approx(expected, rel=1e-12)


def test_proportion_e_value_grows_with_bad_events_and_shrinks_with_good_ones() -> None:
    assert stats.proportion_log_e(5, 95, 0.01) > stats.proportion_log_e(4, 96, 0.01)
    assert stats.proportion_log_e(1, 1000, 0.01) < 0


def test_proportion_bound_of_one_can_never_be_rejected() -> None:
    assert np.all(np.isneginf(stats.proportion_log_e([5, 10], [0, 0], 1.0)))


def test_proportion_test_keeps_its_level_when_looked_at_every_round() -> None:
    rng = np.random.default_rng(7)
    alpha, p0 = 0.05, 0.05
    bad = rng.binomial(10, p0, size=(4000, 200)).cumsum(axis=1)
    n = np.arange(1, 201) * 10
    log_e = stats.proportion_log_e(bad, n - bad, p0)
    ever = np.any(log_e >= math.log(1 / alpha), axis=1).mean()
    assert ever <= alpha


def test_rank_test_keeps_its_level_when_looked_at_every_sample() -> None:
    rng = np.random.default_rng(11)
    alpha = 0.05
    centred = (rng.uniform(size=(4000, 300)) - 0.5).cumsum(axis=1)
    log_e = stats.rank_log_e(centred, np.arange(1, 301))
    ever = np.any(log_e >= math.log(1 / alpha), axis=1).mean()
    assert ever <= alpha


def test_rank_test_detects_a_shift() -> None:
    centred = np.full(200, 0.2).cumsum()
    assert stats.rank_log_e(centred, np.arange(1, 201))[-1] > math.log(1000)


def test_placements_use_mid_ranks_for_ties() -> None:
    base = np.array([1.0, 2.0, 2.0, 3.0])
    got = stats.placements(base, [0.5, 2.0, 2.5, 3.0, 9.0])
    assert got.tolist() == [0.0, 0.5, 0.75, 0.875, 1.0]


def test_mann_whitney_from_placements_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    base = np.sort(rng.lognormal(size=300))
    new = rng.lognormal(mean=0.2, size=120)
    u, p = stats.mann_whitney_greater(float(stats.placements(base, new).sum()), new.size, base.size)
    ref = sc_stats.mannwhitneyu(new, base, alternative="greater", method="asymptotic")
    assert u == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_two_proportion_z_test() -> None:
    z, p = stats.two_proportion_greater(30, 1000, 10, 1000)
    pooled = 40 / 2000
    expected = (0.03 - 0.01) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert z == pytest.approx(expected)
    assert p == pytest.approx(sc_stats.norm.sf(expected))


def test_clopper_pearson_bounds() -> None:
    assert stats.rate_upper_bound(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert stats.rate_lower_bound(0, 100, 0.05) == 0.0
    assert stats.rate_lower_bound(10, 100, 0.05) == pytest.approx(sc_stats.beta.ppf(0.05, 10, 91))


def test_quantile_bounds_are_order_statistics() -> None:
    values = np.arange(1.0, 101.0)  # x_(k) = k
    k = int(sc_stats.binom.ppf(0.95, 100, 0.5)) + 1
    assert stats.quantile_upper_bound(values, 0.5, 0.05) == float(k)
    assert sc_stats.binom.sf(k - 1, 100, 0.5) <= 0.05
    lower = stats.quantile_lower_bound(values, 0.5, 0.05)
    assert lower is not None and lower < 50
    assert sc_stats.binom.cdf(lower - 1, 100, 0.5) <= 0.05


def test_quantile_bound_needs_enough_samples() -> None:
    assert stats.quantile_upper_bound(np.arange(10.0), 0.99, 0.01) is None
    assert stats.quantile_upper_bound(np.empty(0), 0.5, 0.01) is None


def test_dkw_margin() -> None:
    assert stats.dkw_margin(1000, 0.01) == pytest.approx(math.sqrt(math.log(200) / 2000))


def test_intra_period_correlation_recovers_beta_binomial_burstiness() -> None:
    rng = np.random.default_rng(5)
    totals = np.full(5000, 50)
    p = rng.beta(0.5, 49.5, size=5000)  # rho = 1 / (50 + 1)
    rho = stats.intra_period_correlation(rng.binomial(totals, p), totals)
    assert rho == pytest.approx(1 / 51, rel=0.2)


def test_intra_period_correlation_is_zero_without_extra_variance() -> None:
    assert stats.intra_period_correlation([1, 1, 1, 1], [10, 10, 10, 10]) == 0.0
    assert stats.intra_period_correlation([0, 0], [10, 10]) is None
    assert stats.intra_period_correlation([1], [10]) is None

"""The statistical primitives: exact values against scipy, and validity under repeated looks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agent.analysis import stats


class _ScipyStats:
    """scipy.stats, imported at its first use: the import takes a second of CPU, which
    collecting this module on every xdist worker then does not pay (nor when collection
    looks for private and dunder names: a fixture's, a test's marker)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        from scipy import stats as loaded

        return getattr(loaded, name)


sc_stats = _ScipyStats()


def _fold(kind: str, y: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log e-value from the deploy and of the Shiryaev-Roberts e-detector, per round."""
    wealth = np.zeros(len(stats.BETS[kind]))
    sr = np.full(len(stats.BETS[kind]), -np.inf)
    start, detector = [], []
    for yk, nk in zip(y, size, strict=True):
        f = np.asarray(stats.bet_log_factors(kind, float(yk), float(nk)))
        wealth = wealth + f
        sr = np.asarray(stats.sr_update(sr, f))
        start.append(stats.log_mix(wealth, kind))
        detector.append(stats.log_mix(sr, kind))
    return np.array(start), np.array(detector)


def test_a_round_factor_is_the_poisson_likelihood_ratio_to_first_order() -> None:
    # one expected bad event in 100 rounds' worth: a bet b x (n p0) on y = count / (n p0)
    log_f = stats.bet_log_factors("count", 1.0 / 0.01, 0.01)
    assert np.allclose(log_f, np.log1p(stats.COUNT_BETS * 0.99), rtol=1e-9)
    assert min(stats.bet_log_factors("count", 0.0, 1000.0)) >= math.log(1 - stats.MAX_BET)


def test_the_count_test_keeps_its_level_under_bursts_within_rounds() -> None:
    """Errors at exactly the bound, but a round's requests fail together (beta-binomial,
    strong correlation): one factor per round keeps the level, looked at every round, from
    the deploy and as an e-detector over 200 rounds."""
    rng = np.random.default_rng(7)
    alpha, p0, rounds, n = 0.05, 0.05, 200, 20
    crossed_start = crossed_detector = 0
    for _ in range(300):
        p = rng.beta(p0 * 2.0, (1 - p0) * 2.0, size=rounds)
        count = rng.binomial(n, p)
        start, detector = _fold("count", count / (n * p0), np.full(rounds, n * p0))
        crossed_start += bool(np.any(start >= math.log(1 / alpha)))
        crossed_detector += bool(np.any(detector >= math.log(rounds / alpha)))
    assert crossed_start / 300 <= alpha
    assert crossed_detector / 300 <= alpha


def test_the_count_test_detects_a_doubling_and_a_late_one() -> None:
    rng = np.random.default_rng(3)
    p0, n, rounds = 0.02, 50, 300
    count = rng.binomial(n, 2 * p0, size=rounds)
    start, _ = _fold("count", count / (n * p0), np.full(rounds, n * p0))
    assert start[-1] > math.log(1000)
    late = np.r_[rng.binomial(n, p0 / 2, size=200), rng.binomial(n, 3 * p0, size=100)]
    start, detector = _fold("count", late / (n * p0), np.full(rounds, n * p0))
    first = np.argmax(detector >= math.log(rounds / 0.01))
    assert detector[first] >= math.log(rounds / 0.01) and 200 <= first < 260


def test_the_confidence_sequence_narrows_like_one_over_root_t() -> None:
    wide = stats.cs_radius(10, 0.01, 0.01, 50)
    narrow = stats.cs_radius(1000, 0.01, 0.01, 50)
    assert narrow < wide / 5
    assert stats.cs_radius(0, 0.01, 0.01, 50) == math.inf


def test_placements_use_mid_ranks_for_ties() -> None:
    base = np.array([1.0, 2.0, 2.0, 3.0])
    got = stats.placements(base, [0.5, 2.0, 2.5, 3.0, 9.0])
    assert got.tolist() == [0.0, 0.5, 0.75, 0.875, 1.0]


def test_a_baseline_placed_in_itself_is_placed_as_any_values_are() -> None:
    """The baseline itself (read off its runs of equal values) is placed to the bit as a
    copy of it is (two binary searches per value): ties, signed zeros, infinities."""
    rng = np.random.default_rng(13)
    for i in range(400):
        n = int(rng.choice([1, 2, 3, 50, 2000]))
        drawn = (
            rng.lognormal(-3, 1, n),
            np.round(rng.lognormal(-3, 1, n), 2),
            rng.choice([-0.0, 0.0, 1.0, math.inf, -math.inf], n),
        )[i % 3]
        base = np.sort(drawn)
        own = stats.placements(base, base)
        assert own.tobytes() == stats.placements(base, base.copy()).tobytes()


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


def test_the_inflation_of_a_few_periods_gets_students_correction() -> None:
    # many periods: the measured inflation, barely corrected
    many = stats.inflation_limit(1.5, 1000, 500.0, 100.0, 0.01)
    assert 1.5 < many < 1.5 * 1.01
    # ten periods: (t_9 / z)^2 at 0.01
    t, z = sc_stats.t.ppf(0.99, 9), sc_stats.norm.ppf(0.99)
    assert stats.inflation_limit(1.5, 10, 50.0, 100.0, 0.01) == pytest.approx(1.5 * (t / z) ** 2)
    # deeper levels widen more; never below 1 or above a period's size
    assert stats.inflation_limit(1.0, 10, 50.0, 100.0, 0.001) > stats.inflation_limit(
        1.0, 10, 50.0, 100.0, 0.1
    )
    assert stats.inflation_limit(0.2, 10, 50.0, 100.0, 0.3) >= 1.0
    assert stats.inflation_limit(90.0, 3, 50.0, 100.0, 0.001) == 100.0


def test_two_inflations_are_student_corrected_once_for_their_difference() -> None:
    """Welch-Satterthwaite: nu = V^2 / sum(V_i^2 / (k_i - 1)), V_i = phi_i / events_i."""
    q = 0.999
    new, base = (1.2, 30, 36.0, 300.0), (1.0, 16, 20.0, 300.0)
    w_new, w_base = 1.2 / 36.0, 1.0 / 20.0
    nu = (w_new + w_base) ** 2 / (w_new**2 / 29 + w_base**2 / 15)
    ratio = (sc_stats.t.ppf(q, nu) / sc_stats.norm.ppf(q)) ** 2
    got = stats.welch_inflations(new, base, 0.001)
    assert got == pytest.approx((1.2 * ratio, 1.0 * ratio))
    # between the two sides' own corrections: the baseline's pays less than at its 15 dof
    assert got is not None
    assert got[1] < stats.inflation_limit(1.0, 16, 20.0, 300.0, 0.001)
    # a side that dominates the variance brings its own degrees of freedom
    alone = stats.welch_inflations((1.0, 30, 1e6, 3e4), base, 0.001)
    assert alone is not None
    assert alone[1] == pytest.approx(stats.inflation_limit(1.0, 16, 20.0, 300.0, 0.001), 1e-3)
    # too few events on either side: each side its own way (`inflation_limit`)
    assert stats.welch_inflations(new, (1.0, 16, 1.0, 300.0), 0.001) is None
    assert stats.welch_inflations((1.0, 1, 36.0, 300.0), base, 0.001) is None
    # never above a unit's size
    capped = stats.welch_inflations((90.0, 3, 50.0, 100.0), base, 0.001)
    assert capped is not None
    assert capped[0] == 100.0


def test_too_few_events_to_measure_burstiness_make_each_period_one_unit() -> None:
    assert stats.inflation_limit(1.0, 15, 0.0, 20.0, 0.3) == 20.0
    assert stats.inflation_limit(1.0, 15, 1.0, 20.0, 0.01) == 20.0
    assert stats.inflation_limit(1.0, 15, 2.0, 20.0, 0.01) < 2.0


def test_a_rounds_percentile_is_numpys_to_the_last_bit() -> None:
    """Small samples are sorted in Python (the daemon's hot path); same figure as numpy."""
    rng = np.random.default_rng(11)
    for i in range(3000):
        n = int(rng.integers(1, stats.SMALL_SAMPLE + 1))
        drawn = rng.lognormal(-3, 1, n) if i % 2 else rng.integers(0, 4, n) * 0.001
        values = tuple(float(v) for v in drawn)
        qs = (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
        # numpy's figures in one call (each the one a call of its own gives, to the last bit)
        numpys = np.percentile(np.asarray(values), [q * 100 for q in qs]).tolist()
        for q, numpy_figure in zip(qs, numpys, strict=True):
            assert stats.percentile(values, q) == numpy_figure


def test_a_large_samples_percentile_is_numpys_to_the_last_bit() -> None:
    """Arrays and samples past `SMALL_SAMPLE` are read by one partition; same figure as
    numpy's, its sign included (a zero read off a -0.0 and a 0.0), and numpy's own answer
    where a value is not finite."""
    rng = np.random.default_rng(12)
    qs = (0.0, 0.01, 0.25, 0.5, 0.95, 0.99, 1.0, 1 / 3)
    for i in range(600):
        n = int(rng.choice([1, 2, 3, 20, 65, 301, 3000]))
        drawn = (
            rng.lognormal(-3, 1, n),
            rng.integers(0, 4, n) * 0.001,
            rng.choice([0.0, -0.0, 5e-324, 1.0], n),
            rng.normal(0.0, 1e300, n),
        )[i % 4]
        if i % 50 == 7:
            drawn[int(rng.integers(n))] = (math.nan, math.inf, -math.inf)[i % 3]
        for q in qs:
            with np.errstate(invalid="ignore"):  # inf - inf, numpy's and ours alike
                want = float(np.percentile(drawn, q * 100.0))
            large = n > stats.SMALL_SAMPLE  # a small tuple is sorted in Python (above)
            for values in (drawn, tuple(drawn.tolist())) if large else (drawn,):
                with np.errstate(invalid="ignore"):
                    got = stats.percentile(values, q)
                if math.isnan(want):
                    assert math.isnan(got)
                else:
                    assert got == want
                    assert math.copysign(1.0, got) == math.copysign(1.0, want)

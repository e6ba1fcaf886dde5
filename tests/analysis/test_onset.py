"""Regressions that start mid-window: the e-detector keeps its level, and finds a latency
regression from minute 5 almost as fast as one present from the deploy.

Simulated with fixed seeds (derandomised), as the decision benchmark's latency families."""

from __future__ import annotations

import math

import numpy as np

from agent.analysis import stats
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

LATENCY = Rule("p95", "checks", "latency_p95", max_increase=0.1)


def _detector(kind: str, y: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The e-detector's log e-value per round: Shiryaev-Roberts per bet, the large bets mixed."""
    sr = np.full((1, len(stats.BETS[kind])), -np.inf)
    out = []
    for yk, nk in zip(y, size, strict=True):
        f = stats.bet_log_factors_rows(kind, np.array([yk]), np.array([nk]))
        sr = stats.sr_update_rows(sr, f)
        out.append(float(stats.log_mix_rows_large(sr, kind)[0]))
    return np.array(out)


def test_the_large_bet_detector_keeps_its_level_under_bursts_and_ranks() -> None:
    """At the bound exactly, looked at every round for 200 rounds: errors failing together
    within rounds (beta-binomial), and mean placements of 10 samples at exactly 1/2."""
    rng = np.random.default_rng(21)
    alpha, rounds = 0.05, 200
    crossed = {"count": 0, "rank": 0}
    for _ in range(300):
        p = rng.beta(0.05 * 2.0, 0.95 * 2.0, size=rounds)
        count = rng.binomial(20, p)
        log_d = _detector("count", count / 1.0, np.full(rounds, 1.0))
        crossed["count"] += bool(np.any(log_d >= math.log(rounds / alpha)))
        placements = rng.uniform(size=(rounds, 10)).mean(axis=1)
        log_d = _detector("rank", placements / 0.5, np.full(rounds, 10.0))
        crossed["rank"] += bool(np.any(log_d >= math.log(rounds / alpha)))
    assert crossed["count"] / 300 <= alpha
    assert crossed["rank"] / 300 <= alpha


def _rounds_to_fail(seed: int, onset: int, horizon: int = 900) -> float:
    """Rounds of 10 lognormal samples against a baseline of 3,000; latency x2 from round
    `onset` on. Rounds from the onset to the failure (inf: none)."""
    rng = np.random.default_rng(seed)
    values = tuple(float(v) for v in rng.lognormal(-2.5, 0.6, 3000))
    base = Observation(float(np.percentile(values, 95)), values=values, quantile=0.95)
    rule = SequentialRule(
        LATENCY, BaselineData.from_observation(base), "distribution", 0.005, horizon=horizon
    )
    # the window's rounds drawn at once (the same numbers as a draw a round) and their p95s
    # in one call (numpy's, row by row, to the last bit): a call a round was a third of the time
    window = rng.lognormal(-2.5, 0.6, (horizon, 10))
    window[onset:] *= 2.0
    tops = np.percentile(window, 95, axis=1).tolist()
    state = rule.start()
    for i, (top, x) in enumerate(zip(tops, window.tolist(), strict=True)):
        rule.step(state, Observation(top, values=tuple(x), quantile=0.95), i)
        at, _ = rule.failed_at(state)
        if at is not None:
            return at + 1 - onset if at >= onset else -1
    return math.inf


def test_a_latency_regression_from_mid_window_is_found_almost_as_fast() -> None:
    """Median over 11 windows of 900 rounds: from round 300, at most 1.5 times the rounds it
    takes from the deploy (the decision benchmark's goal); never before it starts."""
    from_start = [_rounds_to_fail(seed, 0) for seed in range(11)]
    from_onset = [_rounds_to_fail(seed, 300) for seed in range(11)]
    assert math.inf not in from_start and math.inf not in from_onset
    assert -1 not in from_onset
    assert np.median(from_onset) <= 1.5 * np.median(from_start)


def test_a_short_window_keeps_most_of_the_exceedance_budget_from_the_deploy() -> None:
    """The detector's extra log(rounds) is small over 30 rounds (the default window), so it
    gets a small share there, and nearly half over 900 rounds (a rule's alpha 0.005:
    confidence 0.99 split between two rules): its share is sized against the count bets'
    part of the test from the deploy (`EXCEEDANCE_AIMED_WEIGHT`), the large shifts' part."""
    values = tuple(float(v) for v in np.linspace(0.05, 0.5, 2000))
    base = BaselineData.from_observation(
        Observation(float(np.percentile(values, 95)), values=values, quantile=0.95)
    )

    def detector_share(test: str, horizon: int) -> float:
        rule = SequentialRule(LATENCY, base, "distribution", 0.005, horizon=horizon)
        comp = next(c for c in rule.components if c.test == test)
        return comp.alpha_detector / (comp.alpha + comp.alpha_detector)

    assert math.isclose(detector_share("exceedance", 30), 0.05)
    assert math.isclose(detector_share("exceedance", 900), 0.45)
    assert math.isclose(detector_share("rank", 30), 0.3)
    assert math.isclose(detector_share("rank", 900), 0.3)

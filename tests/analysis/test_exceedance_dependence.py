"""The exceedance test's tilted bets (`agent.analysis.exceedance_bets`): more evidence per round
from a large round, under the dependence within a round that the baseline's periods show, and
still at most its share of false failures when a round's latencies move together, and when a
few rounds in a hundred are slowed a lot (which 60 periods often do not show).

Simulated with fixed seeds: lognormal latencies (spread 0.6, 80 ms, as the decision
benchmark's), a `latency_p95` bound of +10% judged against a background baseline of 60
periods that kept them, as the daemon's, and rounds of about 100 to 300 samples (3 to 10
req/s at 30 s rounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.analysis import exceedance_bets
from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule
from tests.analysis.slowed_periods import slowed_periods

EXCEEDANCE = "max_increase:exceedance"
RANK = "max_increase:rank"
RULE = Rule("p95", "checks", "latency_p95", max_increase=0.1)


def _window(
    rng: np.random.Generator,
    alpha: float,
    factor: float,
    *,
    per: int,
    rounds: int = 30,
    periods: int = 60,
    common: float = 0.0,
    heavy: float = 0.0,
    tail: float = 0.0,
    key: str = EXCEEDANCE,
    episode: int = 1,
    period_per: int | None = None,
) -> int | None:
    """One window: the crossing round of the test `key` (the exceedance test's by default).
    `common`: the log-sd of a slowdown shared by every latency of one period or round;
    `heavy`: the chance a period or round starts an episode of `episode` consecutive ones
    slowed x3 as a whole (the baseline's and the release's alike); `tail`: the share of the
    release's latencies made x3 slower (a tail regression); `period_per`: the baseline's
    periods' mean size (`per` by default, the rounds')."""
    slowed_next = [0]

    def run(scale: float, slow_tail: float = 0.0, size: int = per) -> np.ndarray:
        shared = math.exp(common * rng.standard_normal())
        if slowed_next[0] > 0:
            slowed_next[0] -= 1
            slow = 3.0
        elif rng.uniform() < heavy:
            slowed_next[0] = episode - 1
            slow = 3.0
        else:
            slow = 1.0
        x = 0.08 * scale * (shared * slow) * rng.lognormal(0.0, 0.6, rng.poisson(size))
        x[rng.uniform(size=x.size) < slow_tail] *= 3.0
        return x

    parts = [run(1.0, size=period_per or per) for _ in range(periods)]
    slowed_next[0] = 0
    base = np.concatenate(parts)
    obs = Observation(
        float(np.percentile(base, 95)),
        values=tuple(base.tolist()),
        quantile=0.95,
        periods=periods,
        period_sizes=tuple(p.size for p in parts),
    )
    judged = SequentialRule(
        RULE, BaselineData.from_observation(obs), "distribution", alpha, horizon=rounds
    )
    state = judged.start()
    st = state["tests"][key]
    for i in range(rounds):
        x = run(factor, tail)
        seen = Observation(float(np.percentile(x, 95)), values=tuple(x.tolist()), quantile=0.95)
        judged.step(state, seen, i)
        if st["crossed"] is not None:
            return int(st["crossed"])
    judged.finish(state, rounds - 1)
    return None if st["crossed"] is None else int(st["crossed"])


def test_a_tail_regression_is_found_by_the_exceedance_test_in_a_few_rounds() -> None:
    """The decision benchmark's `latency_tail_x3` at 10 req/s and 30 s rounds: one request in
    ten 3x slower, the rest unchanged, so only the exceedance test sees it (about 1.66 times
    the samples past the quantile its level allows). Its linear bets gain at most 0.5 nats a
    round, so it failed at round 15 (the median of 20 windows, rounds counted from 0); the
    tilted bets, each capped at 1.5 nats a round, at round 7 (2.5 uncapped)."""
    rng = np.random.default_rng(48)
    crossed = [_window(rng, 0.005, 1.0, per=300, tail=0.1) for _ in range(20)]
    assert all(c is not None for c in crossed)
    assert float(np.median([c for c in crossed if c is not None])) <= 8


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("common", "heavy"),
    [(0.3, 0.0), (0.0, 0.03)],
    ids=["whole_round_slowdowns", "rare_heavy_rounds"],
)
def test_rounds_that_move_together_keep_the_exceedance_tests_level(
    common: float, heavy: float
) -> None:
    """The release exactly at its bound (x1.1), at alpha 0.1 over 30 rounds of about 100:
    (a) every round slowed as a whole (log-sd 0.3), as the baseline's periods are; (b) three
    rounds in a hundred slowed x3, as the baseline's periods are, which 60 of them fail to show
    one time in six (its measured rho then near 0). The exceedance test fails at most its
    share of the rule's alpha (a half: two tests, 7.5 of 150 windows): 2 and 2 (the linear
    bets alone 3 and 5). Uncapped, the tilted bets failed (a) in 7 and (b) in 23: one heavy
    round was a fortune of evidence."""
    rng = np.random.default_rng(int(common * 10) + int(heavy * 100))
    alpha, windows = 0.1, 150
    failed = sum(
        _window(rng, alpha, 1.1, per=100, common=common, heavy=heavy) is not None
        for _ in range(windows)
    )
    assert failed <= windows * alpha / 2


def test_rare_heavy_rounds_keep_the_rank_tests_level() -> None:
    """The rank test's sub-Gaussian bets (`agent.analysis.rank_bets`) under (b): three rounds
    in a hundred slowed x3, at the bound x1.1, alpha 0.1, 30 rounds of about 100. Uncapped,
    one heavy round the baseline's periods missed was a fortune of evidence: the rank test
    failed 68 of these 150 windows where its share allows 7.5 (84 of 200 at 100 a round, 96
    at 300); each capped at `SUB_GAUSSIAN_ROUND_CAP` (2.5 nats) a round, 4 (2 and 2 of 200)."""
    rng = np.random.default_rng(103)
    alpha, windows = 0.1, 150
    failed = sum(
        _window(rng, alpha, 1.1, per=100, heavy=0.03, key=RANK) is not None for _ in range(windows)
    )
    assert failed <= windows * alpha / 2


def test_without_periods_the_tilted_bets_read_the_round_as_one_share() -> None:
    """Nothing measured (one run, no periods): D is the round's size, so each bet is one bet
    on the round's share, an e-value whatever the dependence within the round; measured
    independence reads the round's samples one by one; and no round gains past the cap."""
    ones = exceedance_bets.log_factors(1.66, 3000.0, 0.05, None)
    measured = exceedance_bets.log_factors(1.66, 3000.0, 0.05, 1e-4)
    assert max(ones) < 0.1
    assert max(measured) == exceedance_bets.TILTED_ROUND_CAP
    heavy = exceedance_bets.log_factors(16.0, 3000.0, 0.05, 0.0)
    assert max(heavy) == exceedance_bets.TILTED_ROUND_CAP


def test_independent_periods_show_a_small_correlation_and_slow_runs_a_large_one() -> None:
    """The measured rho of samples past the baseline's p95: near 0 for periods drawn alike
    (its upper limit over 60 periods), large when each period is slowed as a whole."""
    rng = np.random.default_rng(3)

    def rho(common: float) -> float:
        values, period_of = slowed_periods(rng, common, 0.6)
        found = exceedance_bets.exceedance_correlation(values, period_of, 0.05, 0.005)
        assert found is not None
        return found

    assert rho(0.0) < 0.05
    assert rho(0.6) > 0.1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("episode", [2, 3])
def test_slow_episodes_that_span_rounds_keep_the_rank_and_exceedance_tests_level(
    episode: int,
) -> None:
    """At the bound x1.1, alpha 0.1, rounds of about 300 (10 req/s, 30 s) against 60 periods
    of 40 latencies (the daemon's background runs), a round starts a slow episode x3 of two
    or three rounds with chance 1.5%, the baseline's periods alike. An episode's rounds move
    together, which the periods' correlation (rho, within a period) does not measure, and
    60 periods often show none: each bet's gain a round is capped at the threshold over
    `rank_bets.EPISODE_ROUNDS` + 1/2 (`rank_bets.episode_cap`), so three slow rounds alone
    cannot fail these tests. Each stays within its share (under a half of the level, 3 of
    60 windows here): three rounds 0 and 0 (8 and 5 before the cap); over 300 windows
    (seed 11) 2 and 2 (24 and 45 before), two rounds 2 and 2 (9 and 10)."""
    rng = np.random.default_rng(303)
    alpha, windows = 0.1, 60
    over = {
        key: sum(
            _window(rng, alpha, 1.1, per=300, period_per=40, heavy=0.015, episode=episode, key=key)
            is not None
            for _ in range(windows)
        )
        for key in (RANK, EXCEEDANCE)
    }
    assert all(v <= windows * alpha / 2 for v in over.values()), over

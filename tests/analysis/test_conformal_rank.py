"""The relative latency bound's conformal rank and exceedance tests: exact under
exchangeability, and they find a small shift that a baseline priced by its DKW margin hides.

Simulated with fixed seeds (derandomised), lognormal latencies as the decision benchmark's.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from agent.analysis.conformal import AT_ONCE, Ranker, bucket
from agent.analysis.sketch import GAMMA
from agent.analysis.types import Observation
from tests.analysis.latency_rules import lognormal_rule


def test_placements_are_uniform_under_exchangeability_even_on_the_grid() -> None:
    """Baseline and deploy from one distribution, latencies on a 1 ms clock (ties beyond the
    grid's): each placement's mean is 1/2 (mid-ranks: theta's mean), and the exceedance of
    the 95th placement is 5%, at every position of the window, not only on average."""
    rng = np.random.default_rng(1)
    windows, base_n, rounds = 400, 60, 40
    placed = np.empty((windows, rounds))
    for w in range(windows):
        ranker = Ranker(np.round(rng.lognormal(-2.5, 0.6, base_n), 3), 1.0)
        seen: list[list[int]] = [[], []]
        for k in range(rounds):
            [u], seen = ranker.place(seen, [float(np.round(rng.lognormal(-2.5, 0.6), 3))])
            placed[w, k] = u
    assert abs(placed.mean() - 0.5) < 3 * np.sqrt(1 / 12 / placed.size)
    early, late = placed[:, :5].mean(), placed[:, -5:].mean()
    assert abs(early - 0.5) < 0.03 and abs(late - 0.5) < 0.03
    # in the baseline alone each window's placements share its baseline's error: their
    # window means spread like 1 / (12 base_n) more than conformal ones do
    assert placed.mean(axis=1).var() < 1 / 12 / rounds + 1 / 12 / base_n / 2


def test_the_state_given_is_never_changed() -> None:
    ranker = Ranker(np.array([0.1, 0.2, 0.3]), 1.1)
    seen: list[list[int]] = [[], []]
    _, after = ranker.place(seen, [0.15, 0.25])
    _, again = ranker.place(after, [0.35])
    assert seen == [[], []] and sum(after[1]) == 2 and sum(again[1]) == 3


def _latency_window(
    rng: np.random.Generator, alpha: float, factor: float, *, base_n: int, rounds: int, per: int
) -> tuple[bool, bool]:
    """One window against a fresh lognormal baseline: (rank test failed, exceedance failed)."""
    rule = lognormal_rule(rng, base_n=base_n, rounds=rounds, alpha=alpha)
    state = rule.start()
    for i in range(rounds):
        x = rng.lognormal(-2.5, 0.6, per) * factor
        rule.step(state, Observation(float(np.max(x)), values=tuple(x.tolist()), quantile=0.95), i)
    crossed = {key: st["crossed"] is not None for key, st in state["tests"].items()}
    return crossed["max_increase:rank"], crossed["max_increase:exceedance"]


def test_the_tests_keep_their_level_at_the_boundary() -> None:
    """Every deploy sample exactly the baseline's distribution x 1.1 (exchangeable with the
    scaled baseline): each test fails at most its share of alpha (a quarter: two tests, the
    pass side's share aside), looked at every round; a deploy inside the tolerance less."""
    rng = np.random.default_rng(2)
    alpha, windows = 0.4, 200
    at_bound = [_latency_window(rng, alpha, 1.1, base_n=100, rounds=40, per=2) for _ in range(200)]
    inside = [_latency_window(rng, alpha, 1.0, base_n=100, rounds=40, per=2) for _ in range(200)]
    share = alpha / 2
    for test in (0, 1):
        fails = sum(w[test] for w in at_bound)
        assert fails / windows <= share
        assert sum(w[test] for w in inside) <= fails


def test_a_small_shift_against_a_finite_baseline_is_found() -> None:
    """Latency x1.2 against a 10% tolerance, one sample a round for 900 rounds, a baseline of
    1,800 (the decision benchmark's 1 req/s cell, its rule's alpha): the DKW-priced rank test
    found 1 of 30 windows; conformal placements about a third."""
    rng = np.random.default_rng(3)
    found = sum(
        _latency_window(rng, 0.005, 1.2, base_n=1800, rounds=900, per=1)[0] for _ in range(30)
    )
    assert found >= 7


def test_a_baseline_near_the_largest_float_keeps_every_sample() -> None:
    """The baseline x the tolerance overflowed to infinity near 1.8e308 and that sample was
    dropped: 1.7e308 / 1.5 lies between the two samples (mid-rank 1.5 of 3), but read as
    above the one left (1.5 of 2). An underflow to 0 put a tiny sample in the bucket of 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        high = Ranker(np.array([1e308, 1.5e308]), 1.5)
        low = Ranker(np.array([5e-324]), 0.4)
    assert high.size == 2
    assert high.place([[], []], [1.7e308])[0] == [0.5]
    # x 0.4 is 46.3 buckets of 2% down (it was the bucket of 0, below every value)
    assert bucket(5e-324) - 47 <= low.base[0] <= bucket(5e-324) - 46


def test_ordinary_baselines_are_bucketed_as_before() -> None:
    """The overflow's fix takes another path only where the product is not a positive
    finite number: every other bucket is the very product's, bit for bit."""
    rng = np.random.default_rng(7)
    base = rng.lognormal(-2.5, 1.5, 2000)
    for scale in (1.0, 1.1, 1.5, 2.0, 0.5, 0.25):
        scaled = base * scale
        want = np.sort(np.ceil(np.log(scaled) / math.log(GAMMA)).astype(np.int64)).tolist()
        assert Ranker(base, scale).base == want


def test_a_baselines_buckets_are_sorted_as_numpy_sorts_them() -> None:
    """Sorted by radix from the lowest bucket, or by numpy where they span too many (a value
    <= 0, or 1e-300 s beside 1e300 s): the same integers either way."""
    rng = np.random.default_rng(8)
    for extra in ((), (0.0,), (-1.0, 0.0), (1e-300, 1e300)):
        base = np.concatenate([rng.lognormal(-2.5, 1.0, 3000), extra])
        ranker = Ranker(base, 1.1)
        scaled = base * 1.1
        with np.errstate(divide="ignore"):  # log(0), left out by `where`
            logs = np.log(np.abs(scaled))
        want = np.where(scaled > 0, np.ceil(logs / math.log(GAMMA)), -(2**31))
        assert ranker.base == np.sort(want.astype(np.int64)).tolist()
        assert ranker._base_array.dtype == np.int64


def test_a_large_round_is_counted_as_one_sample_at_a_time() -> None:
    """A round of `AT_ONCE` samples or more is counted with numpy: each sample's counts are
    those it gets as a round of its own after the ones before it (the per-sample loop),
    and the histogram is the same, with ties (a 1 ms clock), zeros, a spread wider than
    the grid numpy counts on and rounds beside earlier ones."""
    rng = np.random.default_rng(11)
    ranker = Ranker(np.round(rng.lognormal(-2.5, 0.6, 500), 3), 1.1)
    spreads = (0.6, 0.6, 40.0)  # the last: buckets over far more than a grid's width
    seen: list[list[int]] = [[], []]
    for k, sigma in enumerate(spreads):
        values = np.round(rng.lognormal(-2.5, sigma, AT_ONCE + 300), 3)
        values[[5, 77]] = 0.0 if k == 1 else values[[5, 77]]
        ranks, together = ranker.ranks(seen, values.tolist())
        one_by_one, alone = [], seen
        for v in values.tolist():
            single, alone = ranker.ranks(alone, [v])
            one_by_one.append((single.below[0], single.ties[0], single.size[0]))
        as_lists = [np.asarray(part).tolist() for part in ranks]
        assert list(zip(*as_lists, strict=True)) == one_by_one
        assert together == alone
        seen = together

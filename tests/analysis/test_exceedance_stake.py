"""The conformal exceedance test's aimed stakes (`SequentialRule._exceedance_factors`): more
regressions confined to the latency tail found at low traffic, the level kept.

Simulated with fixed seeds (derandomised), lognormal latencies as the decision benchmark's.
"""

from __future__ import annotations

import numpy as np

from agent.analysis.types import Observation
from tests.analysis.latency_rules import WindowEnd, lognormal_rule
from tests.analysis.ville import assert_within_ville

EXCEEDANCE = "max_increase:exceedance"


def _exceedance_window(
    rng: np.random.Generator,
    factor: float,
    *,
    tail: float = 1.0,
    base_n: int,
    rounds: int,
    per: float,
    until_crossed: bool = False,
) -> WindowEnd:
    """One window of `rounds` rounds of Poisson(`per`) samples from a lognormal baseline, a
    share `tail` of them (all by default) made `factor` times slower, at the decision
    benchmark's rule alpha: the exceedance test's state at the end (its peak log e-value,
    the round it crossed).

    `until_crossed`: no round is folded after the one the test crossed at, for a caller
    that reads `crossed` alone (the first crossing is kept, so later rounds cannot change
    it; the peak they could). Its samples are still drawn: the next window is the same."""
    rule = lognormal_rule(rng, base_n=base_n, rounds=rounds)
    state = rule.start()
    for i in range(rounds):
        x = rng.lognormal(-2.5, 0.6, rng.poisson(per))
        x[rng.uniform(size=x.size) < tail] *= factor
        if until_crossed and state["tests"][EXCEEDANCE]["crossed"] is not None:
            continue
        if x.size:
            obs = Observation(float(np.max(x)), values=tuple(x.tolist()), quantile=0.95)
            rule.step(state, obs, i)
    return WindowEnd.of(state["tests"][EXCEEDANCE])


def test_a_slower_tail_at_one_sample_a_round_is_found_more_often() -> None:
    """A tenth of the samples three times slower (p95 about +50%, 8% of the samples past
    the bound instead of 5%), one sample a round on average for 900 rounds, a baseline of
    1,800 (the decision benchmark's `latency_tail_x3` at 1 req/s): 27 of 60 windows found by
    the exceedance test. Its old count bets alone, with the e-detector's 0.9 of its share,
    found 17 of the same windows."""
    rng = np.random.default_rng(5)
    found = sum(
        _exceedance_window(
            rng, 3.0, tail=0.1, base_n=1800, rounds=900, per=1.0, until_crossed=True
        ).crossed
        is not None
        for _ in range(60)
    )
    assert found >= 23


def test_the_exceedance_test_spends_no_more_than_ville_allows_at_the_boundary() -> None:
    """Every deploy sample exactly the baseline's distribution x 1.1: the exceedance test's
    largest log e-value from the deploy passes x with probability at most e^-x (Ville's
    inequality), whatever its stakes, as long as they are fixed before a round's values
    are seen. A stake that peeked at the round's ranks would break it."""
    rng = np.random.default_rng(8)
    windows = 300
    peaks = np.array(
        [_exceedance_window(rng, 1.1, base_n=300, rounds=150, per=2.0).peak for _ in range(windows)]
    )
    assert_within_ville(peaks)

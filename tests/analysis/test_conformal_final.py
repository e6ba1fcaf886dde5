"""The rank and exceedance tests' look at the window's end (`FINAL_SHARE`): over a whole
window their conformal placements are i.i.d. uniform at the null's edge, so the sum of
placements and the count past the quantile have known laws; rounds whose samples move
together are read through the inflation measured across the rounds."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analysis.types import Observation
from tests.analysis.latency_rules import lognormal_rule

LEVEL = 0.05
"""The level the boundary's windows are read at: large, so a few hundred windows measure it."""
TESTS = ("max_increase:rank", "max_increase:exceedance")


def _final_ps(
    rng: np.random.Generator,
    factor: float,
    *,
    rounds: int,
    per: int,
    together: float = 0.0,
    inflate: tuple[bool, ...] = (True,),
) -> list[tuple[float, float]]:
    """One window against a fresh lognormal baseline of 300 samples: each test's p-value
    over the whole window (`SequentialRule._final_p`), once per entry of `inflate` (the
    same window read with and without the inflation). `together`: the log-sd of a factor
    all of a round's samples share (a slow round), the baseline's samples drawn from the
    same marginal law."""
    sigma = float(np.hypot(0.6, together))
    rule = lognormal_rule(rng, base_n=300, rounds=rounds, sigma=sigma)
    state = rule.start()
    for i in range(rounds):
        shared = np.exp(together * rng.standard_normal())
        x = rng.lognormal(-2.5, 0.6, per) * shared * factor
        rule.step(state, Observation(float(np.max(x)), values=tuple(x.tolist()), quantile=0.95), i)
    out = []
    for inflated in inflate:
        ps = []
        for key in TESTS:
            comp = next(c for c in rule.components if c.key == key)
            st = state["tests"][key]
            if not inflated:
                st = st | {"fin": [st["fin"][0], *st["fin"][1:3], 0.0, 0.0, st["fin"][2]]}
            ps.append(rule._final_p(comp, st))
        out.append((ps[0], ps[1]))
    return out


def _rejected(ps: list[tuple[float, float]], test: int) -> float:
    return sum(p[test] <= LEVEL for p in ps) / len(ps)


def test_at_the_boundary_each_look_keeps_its_level() -> None:
    """The deploy's samples exactly the baseline's law x 1.1, two a round for 60 rounds:
    each test rejects at most at the level, give or take three standard errors; a deploy
    inside the tolerance less often."""
    rng = np.random.default_rng(11)
    windows = 400
    at_bound = [_final_ps(rng, 1.1, rounds=60, per=2)[0] for _ in range(windows)]
    inside = [_final_ps(rng, 1.0, rounds=60, per=2)[0] for _ in range(windows)]
    slack = 3 * (LEVEL * (1 - LEVEL) / windows) ** 0.5
    for test in (0, 1):
        assert _rejected(at_bound, test) <= LEVEL + slack
        assert _rejected(inside, test) <= _rejected(at_bound, test)


def test_samples_that_move_together_in_a_round_are_not_read_as_independent() -> None:
    """Ten samples a round sharing a slow-round factor: with the inflation measured across
    the rounds the rank test keeps its level; read as independent samples it does not.
    Both readings of the same 300 windows (each claim still rests on 300 windows of that
    law; simulating a second 300 for the naive reading doubled the cost)."""
    rng = np.random.default_rng(12)
    windows = 300
    both = [
        _final_ps(rng, 1.1, rounds=40, per=10, together=0.5, inflate=(True, False))
        for _ in range(windows)
    ]
    kept, naive = [b[0] for b in both], [b[1] for b in both]
    slack = 3 * (LEVEL * (1 - LEVEL) / windows) ** 0.5
    assert _rejected(kept, 0) <= LEVEL + slack
    assert _rejected(naive, 0) >= 2 * LEVEL


@pytest.mark.parametrize("test", [0, 1], ids=["rank", "exceedance"])
def test_a_regression_shows_in_the_look(test: int) -> None:
    """Latency x1.5 against the 10% tolerance, two samples a round for 60 rounds: most
    windows' looks reject at the level."""
    rng = np.random.default_rng(13)
    shifted = [_final_ps(rng, 1.5, rounds=60, per=2)[0] for _ in range(40)]
    assert _rejected(shifted, test) >= 0.6

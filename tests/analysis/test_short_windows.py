"""A window planned for 3 rounds or fewer (`SHORT_WINDOW_ROUNDS`: 3 s at 1 s rounds) spends
each test's whole share on its e-process from the deploy: its e-detector had half of it and
its look at the end a fifth, and at 3 rounds neither can fail (the look divides the counts
by the burstiness measured across 2 rounds, Student-widened to a round's size), so 58
errors in 120 probes against `max 5%` ended inconclusive."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analysis.sequential import SHORT_WINDOW_ROUNDS, SequentialRule
from agent.analysis.types import Observation, Rule

ALPHA = 0.01 / 3
"""One rule's share of the default budget (confidence 0.99) with the example's three rules."""
MAX_RATE = Rule("errors", "checks", "error_rate", max=0.05)


def _failed(rule: SequentialRule, counts: list[int], per_round: int) -> bool:
    state = rule.start()
    for k, c in enumerate(counts):
        rule.step(state, Observation(value=c / per_round, count=c, total=per_round), k)
    rule.finish(state, len(counts) - 1)
    return rule.failed_at(state)[0] is not None


@pytest.mark.parametrize("counts", [[20, 19, 19], [18, 20, 20], [19, 19, 20]])
def test_half_errors_over_three_rounds_fail(counts: list[int]) -> None:
    """Failed before: no e-process crossed (evidence about 650 to 1, 750 needed) and the
    end's look read p 0.042 at a level of 6.7e-4."""
    rule = SequentialRule(MAX_RATE, None, "proportion", ALPHA, horizon=3)
    assert _failed(rule, counts, 40)
    (comp,) = rule.components
    assert comp.alpha == pytest.approx(ALPHA)  # the whole share: no detector, no look
    assert (comp.alpha_detector, comp.alpha_final) == (0.0, 0.0)


def test_a_longer_window_keeps_its_detector_and_its_look() -> None:
    rule = SequentialRule(MAX_RATE, None, "proportion", ALPHA, horizon=SHORT_WINDOW_ROUNDS + 1)
    (comp,) = rule.components
    assert comp.alpha_detector > 0 and comp.alpha_final > 0


@pytest.mark.parametrize("horizon", [2, 3])
def test_a_release_at_the_bound_fails_in_at_most_alpha_of_short_windows(horizon: int) -> None:
    """4,000 windows of 40 probes a round at exactly 5% errors, at a level of 0.05 (large
    enough that wrong fails would be counted): at most alpha of them fail."""
    rng = np.random.default_rng(51)
    alpha, windows = 0.05, 4_000
    rule = SequentialRule(MAX_RATE, None, "proportion", alpha, horizon=horizon)
    counts = rng.binomial(40, 0.05, size=(windows, horizon))
    failed = sum(_failed(rule, [int(c) for c in row], 40) for row in counts)
    assert failed / windows <= alpha

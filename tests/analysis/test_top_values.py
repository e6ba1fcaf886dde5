"""The judge's exact window percentile (`agent.analysis.top_values`): the top values it
keeps read the p95 or p99 of every value folded exactly as `stats.percentile` reads it of
all of them, while they are enough; past that they are dropped, and the state holds at
most `KEPT` values at any time."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest

from agent.analysis import top_values
from agent.analysis.judge import Judge
from agent.analysis.observe import observe
from agent.analysis.stats import percentile
from agent.analysis.types import Policy, Rule
from agent.analysis.verdicts import pooled
from common.samples import Sample


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_the_kept_values_read_the_percentile_of_every_value(q: float) -> None:
    rng = np.random.default_rng(11)
    for _ in range(60):
        top: list[float] | None = []
        seen: list[float] = []
        for _ in range(int(rng.integers(1, 30))):
            values = [float(v) for v in rng.lognormal(-3.0, 0.6, int(rng.integers(1, 90)))]
            seen += values
            top = top_values.fold(top, values, len(seen), q)
            assert top is None or len(top) <= top_values.KEPT
            got = top_values.quantile(top, len(seen), q)
            if top_values.needed(len(seen), q) <= top_values.KEPT:
                assert got == percentile(seen, q)
            else:
                assert top is None and got is None


def test_the_kept_values_are_the_largest_as_heapq_keeps_them() -> None:
    """A merge of the kept values with the round's keeps what `heapq.nlargest` kept, each
    float as it was: ties, infinities and NaN left out, and a 0.0 and a -0.0 at the cut."""
    rng = np.random.default_rng(5)
    for i in range(400):
        top = sorted(float(v) for v in rng.choice([-0.0, 0.0, 0.001, 0.002, 0.5], 120))
        pool = [-0.0, 0.0, 0.001, 0.003, 1.0, math.inf, math.nan] if i % 2 else [0.0, -0.0]
        values = [float(v) for v in rng.choice(pool, int(rng.integers(0, 40)))]
        finite = [v for v in values if math.isfinite(v)]
        want = sorted(top + finite)
        if len(want) > top_values.KEPT:
            want = sorted(heapq.nlargest(top_values.KEPT, top + finite))
        got = top_values.fold(top, values, len(top) + len(finite), 0.99)
        assert repr(got) == repr(want)


def test_the_judge_reads_its_window_p95_exactly_then_from_its_sketch() -> None:
    """2,541 samples (the most a p95 reads from 128 kept values): the exact figure; then a
    round more, and the state drops them for the sketch's (1% off)."""
    rule = Rule(name="latency", source="checks", metric="latency_p95", max=1.0)
    judge = Judge([rule], {}, Policy())
    state = judge.start()
    rng = np.random.default_rng(3)
    seen: list[float] = []
    for n in (2500, 41):
        values = [float(v) for v in rng.lognormal(-3.0, 0.6, n)]
        seen += values
        obs = observe(rule, [Sample("api", True, v) for v in values], 30.0)
        state = judge.advance(state, {"latency": obs})
        st = state["rules"]["latency"]
        assert pooled(rule, st) == percentile(seen, 0.95)
    assert top_values.needed(2541, 0.95) == top_values.KEPT < top_values.needed(2542, 0.95)
    values = [float(v) for v in rng.lognormal(-3.0, 0.6, 10)]
    seen += values
    state = judge.advance(
        state, {"latency": observe(rule, [Sample("a", True, v) for v in values], 1)}
    )
    st = state["rules"]["latency"]
    assert st["top"] is None
    figure = pooled(rule, st)
    assert figure is not None and figure != percentile(seen, 0.95)
    assert abs(figure / percentile(seen, 0.95) - 1) < 0.02

"""The exact top values of a window's latencies, enough to read its p95 or p99 exactly.

Pure: no I/O. The judge's window figure of a latency rule (`verdicts.pooled`) was read
from its quantile sketch, 1% off the exact figure the deploy page read from the stored
rounds: an alert, the rollback webhook's reason and `register --wait` said `p95 102ms`
where the page said 101ms. A high percentile of n values (`stats.percentile`, numpy's
linear interpolation) reads only the values from rank floor((n - 1) q) up: 5% of them for
a p95, 1% for a p99. So the judge keeps the top `KEPT` values it has seen, sorted, and
reads the percentile from them exactly while it needs no more (a p95 over up to 2,541
samples, a p99 over up to 12,701); past that it drops them (`None`) and the sketch's
figure is the window's, everywhere, since every place shows the judge's figure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from agent.analysis import stats

KEPT = 128
"""The most values kept: 128 floats of state per latency rule, about the sketch's size."""


def needed(n: int, q: float) -> int:
    """How many of the top values of `n` the q-quantile reads (`stats._linear_quantile`'s
    index: from floor((n - 1) q) up)."""
    virtual = (n - 1) * q
    if virtual >= n - 1:
        return 1
    return n - max(0, math.floor(virtual))


def fold(top: list[float] | None, values: Sequence[float], n: int, q: float) -> list[float] | None:
    """`top` (sorted, ascending) with this round's finite `values`, `n` the values seen in
    all, this round's included; None once the q-quantile needs more than `KEPT` (it never
    needs fewer again: n only grows)."""
    if top is None or needed(n, q) > KEPT:
        return None
    both = top + [float(v) for v in values if math.isfinite(v)]
    merged = sorted(both)  # `top` is sorted already: one merge, where `nlargest` cost 10x
    if len(merged) <= KEPT:
        return merged
    if merged[-KEPT - 1] == merged[-KEPT] == 0.0:
        # a 0.0 and a -0.0 tie at the cut: keep the earlier ones, as `nlargest` does
        return sorted(heapq.nlargest(KEPT, both))
    return merged[-KEPT:]


def quantile(top: Sequence[float] | None, n: int, q: float) -> float | None:
    """The q-quantile of the `n` values whose largest are `top`, exactly as
    `stats.percentile` reads it of all of them; None when `top` holds too few."""
    if top is None or n <= 0 or needed(n, q) > len(top):
        return None
    return stats.linear_quantile_of_top(top, n, q)

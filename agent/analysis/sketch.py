"""A quantile sketch of positive values: log-spaced buckets, 1% relative accuracy.

Pure: no I/O. The judge's state keeps one per distribution rule (the window's pooled
percentile, shown as `observed`) and round summaries keep one beside a few raw values, so
neither grows with the number of samples. Same idea as DDSketch (Masson, Rim & Lee, VLDB
2019): bucket i holds values in (g^(i-1), g^i], any quantile is read to within a factor g.
Written out because it is a dozen lines; a dependency would add more than it saves.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

import numpy as np

GAMMA = 1.02
"""Bucket ratio: a quantile read from the sketch is within 1% of the true value."""
_LOG_GAMMA = math.log(GAMMA)
_SMALL = 64
_ZERO = "z"
"""Bucket of values <= 0 (a latency of 0 on a coarse clock)."""


def add(sketch: dict[str, int], values: Iterable[float]) -> dict[str, int]:
    """Count `values` into `sketch` (updated in place and returned); non-finite ones skipped."""
    if isinstance(values, tuple | list) and len(values) <= _SMALL:
        return _add_few(sketch, [float(v) for v in values])
    x = np.fromiter(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    zeros = int(np.count_nonzero(x <= 0))
    if zeros:
        sketch[_ZERO] = sketch.get(_ZERO, 0) + zeros
    buckets = np.ceil(np.log(x[x > 0]) / _LOG_GAMMA)
    if buckets.size <= _SMALL:  # a round of probes: counting in Python beats np.unique
        for key in buckets.tolist():
            name = str(int(key))
            sketch[name] = sketch.get(name, 0) + 1
        return sketch
    keys, counts = np.unique(buckets, return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        name = str(int(key))
        sketch[name] = sketch.get(name, 0) + count
    return sketch


def _add_few(sketch: dict[str, int], values: list[float]) -> dict[str, int]:
    """`add` for a round of probes: numpy's calls cost more than the counting (math.log
    gives numpy's logarithm bit for bit, so the buckets are the same)."""
    finite = [v for v in values if math.isfinite(v)]
    zeros = sum(1 for v in finite if v <= 0)
    if zeros:
        sketch[_ZERO] = sketch.get(_ZERO, 0) + zeros
    for v in finite:
        if v > 0:
            name = str(math.ceil(math.log(v) / _LOG_GAMMA))
            sketch[name] = sketch.get(name, 0) + 1
    return sketch


def size(sketch: Mapping[str, int]) -> int:
    return sum(sketch.values())


def quantile(sketch: Mapping[str, int], q: float) -> float | None:
    """The q-quantile (nearest rank), as the bucket's geometric middle; None when empty."""
    n = size(sketch)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = sketch.get(_ZERO, 0)
    if seen >= rank:
        return 0.0
    keys = list(sketch)
    if _ZERO in sketch:
        keys.remove(_ZERO)
    for key in sorted(keys, key=int):
        seen += sketch[key]
        if seen >= rank:
            return float(GAMMA ** (int(key) - 0.5))
    return None


class Reader:
    """`quantile` of one growing sketch, read every round (the judge's pooled percentile)
    without sorting its buckets each time: their order is kept between reads and a new
    bucket (a round adds none or one, mostly) is put in its place. The same answer as
    `quantile` for any sketch; one that lost a bucket (another window's) is sorted anew.
    A high quantile is counted down from the top bucket, so a p95 walks a twentieth of
    the samples' buckets."""

    __slots__ = ("_keys", "_order")

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._order: list[tuple[int, str]] = []
        """The buckets but `_ZERO`, as (index, key), in order."""

    def quantile(self, sketch: Mapping[str, int], q: float) -> float | None:
        keys = sketch.keys()
        if keys != self._keys:
            self._follow(keys)
        n = sum(sketch.values())
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n))
        zeros = sketch.get(_ZERO, 0)
        if zeros >= rank:
            return 0.0
        # the answer is the lowest bucket whose cumulative count reaches `rank`, i.e. whose
        # count above it is at most n - rank: walk down while that holds
        room = n - rank
        if room < 0:
            return None
        order = self._order
        above = 0
        found: int | None = None
        for i in range(len(order) - 1, -1, -1):
            if above > room:
                break
            found = i
            above += sketch[order[i][1]]
        if found is None:
            return None
        return float(GAMMA ** (order[found][0] - 0.5))

    def _follow(self, keys: Iterable[str]) -> None:
        now = set(keys)
        if self._keys <= now:
            for key in now - self._keys:
                if key != _ZERO:
                    bisect.insort(self._order, (int(key), key))
        else:
            self._order = sorted((int(k), k) for k in now if k != _ZERO)
        self._keys = now

"""A quantile sketch of positive values: log-spaced buckets, 1% relative accuracy.

Pure: no I/O. The judge's state keeps one per distribution rule (the window's pooled
percentile, shown as `observed`) and round summaries keep one beside a few raw values, so
neither grows with the number of samples. Same idea as DDSketch (Masson, Rim & Lee, VLDB
2019): bucket i holds values in (g^(i-1), g^i], any quantile is read to within a factor g.
Written out because it is a dozen lines; a dependency would add more than it saves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GAMMA = 1.02
"""Bucket ratio: a quantile read from the sketch is within 1% of the true value."""
_LOG_GAMMA = math.log(GAMMA)
_ZERO = "z"
"""Bucket of values <= 0 (a latency of 0 on a coarse clock)."""


def add(sketch: dict[str, int], values: Iterable[float]) -> dict[str, int]:
    """Count `values` into `sketch` (updated in place and returned); non-finite ones skipped."""
    for v in values:
        if not math.isfinite(v):
            continue
        key = _ZERO if v <= 0 else str(math.ceil(math.log(v) / _LOG_GAMMA))
        sketch[key] = sketch.get(key, 0) + 1
    return sketch


def size(sketch: Mapping[str, int]) -> int:
    return sum(sketch.values())


def quantile(sketch: Mapping[str, int], q: float) -> float | None:
    """The q-quantile (nearest rank), as the bucket's geometric middle; None when empty."""
    n = size(sketch)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for key in sorted(sketch, key=lambda k: -math.inf if k == _ZERO else int(k)):
        seen += sketch[key]
        if seen >= rank:
            return 0.0 if key == _ZERO else GAMMA ** (int(key) - 0.5)
    return None

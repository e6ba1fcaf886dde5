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
from collections.abc import Iterable, KeysView, Mapping

import numpy as np

GAMMA = 1.02
"""Bucket ratio: a quantile read from the sketch is within 1% of the true value."""
_LOG_GAMMA = math.log(GAMMA)
_SMALL = 64
_INF = math.inf
_ZERO = "z"
"""Bucket of values <= 0 (a latency of 0 on a coarse clock)."""
_NAMES: dict[int, str] = {}
"""Each bucket's key, made once for the process (`_name`): every window's sketch, and
every `Reader`, holds the same string, and `_INDEX` the same int, instead of copies of its
own. A window's buckets keep growing slowly as its tails fill in (about 280 at 200 windows
after 30 minutes, a few more a minute), and their private copies were most of the agent's
memory growth. Bounded by the buckets any latency can fall in (~1,100 from 1 µs to 1 h)."""
_INDEX: dict[str, int] = {}


def _name(index: int) -> str:
    """The shared key of bucket `index`."""
    name = _NAMES.get(index)
    if name is None:
        name = _NAMES[index] = str(index)
        _INDEX[name] = index
    return name


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
            name = _name(int(key))
            sketch[name] = sketch.get(name, 0) + 1
        return sketch
    keys, counts = np.unique(buckets, return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        name = _name(int(key))
        sketch[name] = sketch.get(name, 0) + count
    return sketch


def _add_few(sketch: dict[str, int], values: list[float]) -> dict[str, int]:
    """`add` for a round of probes: numpy's calls cost more than the counting (math.log
    gives numpy's logarithm bit for bit, so the buckets are the same). One pass; the
    zero bucket is counted in before the others, as `add` does."""
    names = []
    zeros = 0
    shared = _NAMES.get
    for v in values:
        if 0.0 < v < _INF:
            index = math.ceil(math.log(v) / _LOG_GAMMA)
            names.append(shared(index) or _name(index))
        elif -_INF < v <= 0.0:
            zeros += 1
    if zeros:
        sketch[_ZERO] = sketch.get(_ZERO, 0) + zeros
    get = sketch.get
    for name in names:
        sketch[name] = get(name, 0) + 1
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


def values(sketch: Mapping[str, int]) -> list[float]:
    """Every value the sketch counted, as its bucket's geometric middle (`quantile`'s
    figure), in order: a chart drawn from them is within 1% of one drawn from the values."""
    out = [0.0] * int(sketch.get(_ZERO, 0))
    for key in sorted((k for k in sketch if k != _ZERO), key=int):
        out.extend([float(GAMMA ** (int(key) - 0.5))] * int(sketch[key]))
    return out


class Reader:
    """`quantile` of one growing sketch, read every round (the judge's pooled percentile)
    without sorting its buckets each time: their order is kept between reads (a new
    bucket, none or one a round mostly, is put in its place), and the search starts from
    the bucket the last read found (a round moves it by a step at most, mostly), counting
    the samples above it in one go. The same answer as `quantile` for any sketch; one that
    lost a bucket (another window's) is sorted anew."""

    __slots__ = ("_at", "_names", "_order")

    def __init__(self) -> None:
        self._order: list[int] = []
        """The buckets but `_ZERO`, in order."""
        self._names: list[str] = []
        """Their keys, in the same order."""
        self._at = 0
        """Where the last read found its quantile, in `_order`."""

    def quantile(self, sketch: Mapping[str, int], q: float) -> float | None:
        names = self._names
        if len(sketch) - (_ZERO in sketch) != len(names) or not all(
            map(sketch.__contains__, names)
        ):  # no set of its own: the names it keeps are its keys (shared ones, `_NAMES`)
            self._follow(sketch.keys())
        n = sum(sketch.values())
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n))
        if sketch.get(_ZERO, 0) >= rank:
            return 0.0
        # the answer is the lowest bucket whose cumulative count reaches `rank`: the lowest
        # with at most `room` samples above it (one exists: none are above the top one)
        room = n - rank
        names = self._names
        if room < 0 or not names:
            return None
        at = min(self._at, len(names) - 1)
        above = sum(map(sketch.__getitem__, names[at + 1 :]))
        if above <= room:
            while at > 0 and above + sketch[names[at]] <= room:
                above += sketch[names[at]]
                at -= 1
        else:
            while above > room:
                at += 1
                above -= sketch[names[at]]
        self._at = at
        return float(GAMMA ** (self._order[at] - 0.5))

    def _follow(self, keys: KeysView[str]) -> None:
        known = set(self._names)
        new = [_shared(k) for k in keys if k not in known and k != _ZERO]
        if len(keys) - (_ZERO in keys) == len(known) + len(new):  # it kept every bucket: it grew
            for index, name in new:
                where = bisect.bisect_right(self._order, index)
                self._order.insert(where, index)
                self._names.insert(where, name)
            return
        pairs = sorted(_shared(k) for k in keys if k != _ZERO)
        self._order = [k for k, _ in pairs]
        self._names = [name for _, name in pairs]


def _shared(key: str) -> tuple[int, str]:
    """A bucket's index and key, the process's shared ones when `add` has made them (a
    sketch read back from the store has keys of its own)."""
    index = _INDEX.get(key)
    return (int(key), key) if index is None else (index, _NAMES[index])

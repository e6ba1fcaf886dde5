"""Conformal ranks of a window's samples among its baseline and its own earlier samples.

Pure: no I/O, no clock; it must not keep anything between rounds that is not in the state it
is handed (the daemon resumes from a stored state). The rank test of a relative latency bound
(`agent.analysis.sequential`) bets on these placements instead of on placements in the
baseline alone, so it needs no margin for the baseline's sampling error.

Why (Vovk, Gammerman & Shafer, "Algorithmic learning in a random world", 2005, ch. 2 and 8;
Vovk, "Testing randomness online", Statistical Science 2021): in an exchangeable sequence
y_1, y_2, ..., the smoothed rank of each y_n among y_1..y_n, (#{i <= n: y_i < y_n} +
theta_n #{i <= n: y_i = y_n}) / n with theta_n uniform, is uniform on [0, 1] and
independent of the ranks before it, whatever the distribution and its ties. Put the
baseline first (in any order) and the deploy's samples, divided by the tolerance, after it:
under the boundary of the null (the deploy's samples are the baseline's distribution times
1 + delta, i.i.d.) the whole sequence is exchangeable, so the deploy's placements are i.i.d.
uniform, mean 1/2, and a bet on each round's mean placement is a test martingale with no
figure estimated from the baseline. A finite baseline costs no margin: its sampling error
is corrected by the deploy's own samples as they join the reference.

A deploy that is faster than the boundary (its samples are the boundary's pushed down by
one increasing map, as a uniform speed-up, or the tolerance's slack) places every sample
lower against the baseline and leaves the order among its own samples as it was, so each
placement, and every bet increasing in them, is at most the boundary's on the same draws:
the test stays valid. It assumes what Mann-Whitney (and Kayenta) assume: the deploy's
samples share one distribution over the window (a drift inside the tolerance is absorbed by
its slack).

Values are compared on a fixed log grid (`sketch.GAMMA`, 2%: the state keeps a histogram of
the deploy's samples, a few hundred counts, never more with more rounds); samples in one
bucket tie, and a tie counts half (theta's mean: the bet is linear in the placement).
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from agent.analysis.sketch import GAMMA
from agent.analysis.stats import FloatArray

ZERO_BUCKET = -(2**31)
"""The bucket of values <= 0 (below every other)."""

_LOG_GAMMA = math.log(GAMMA)

Seen = list[list[int]]
"""The deploy's samples so far, as the state keeps them: [sorted buckets, their counts]."""

IntArray = npt.NDArray[np.int64]


class Ranks(NamedTuple):
    """A round's conformal counts per sample (`Ranker.ranks`): earlier samples below it,
    those tied with it plus itself, earlier samples plus itself. Lists for a round of a
    few samples, arrays from `AT_ONCE` on (the same integers)."""

    below: list[int] | IntArray
    ties: list[int] | IntArray
    size: list[int] | IntArray


AT_ONCE = 256
"""Samples in a round from which `Ranker.ranks` counts them all at once with numpy
(`_ranks_at_once`): below it the loop's bisections cost less than numpy's calls; at 3,000
(a 30 s round at 100 req/s) the loop's sorted inserts cost twice the whole of numpy's."""


def bucket(value: float) -> int:
    """A value's bucket on the fixed log grid (the sketch's: ceil(log(v) / log(GAMMA)))."""
    return math.ceil(math.log(value) / _LOG_GAMMA) if value > 0 else ZERO_BUCKET


def placements(ranks: Ranks) -> list[float]:
    """Each sample's mid-rank placement (below + ties / 2) / size, in (0, 1)."""
    below, ties, size = ranks
    if isinstance(below, np.ndarray):  # the same float operations, element by element
        placed: list[float] = ((below + np.asarray(ties) / 2.0) / np.asarray(size)).tolist()
        return placed
    return [(b + t / 2.0) / s for b, t, s in zip(below, ties, size, strict=True)]


def shares_past(q: float, ranks: Ranks) -> list[float]:
    """Per sample, the share of theta in [0, 1] that puts its smoothed rank (below + theta
    ties) / size below `q`: (q size - below) / ties, clipped to [0, 1]."""
    below, ties, size = ranks
    if isinstance(below, np.ndarray):  # the same float operations and comparisons
        s = (q * np.asarray(size) - below) / np.asarray(ties)
        clipped: list[float] = np.where(s < 0.0, 0.0, np.where(s > 1.0, 1.0, s)).tolist()
        return clipped
    # each share is min(max(s, 0), 1), written out (a third of the sum's cost)
    shares = [(q * n - b) / t for b, t, n in zip(below, ties, size, strict=True)]
    return [0.0 if s < 0.0 else 1.0 if s > 1.0 else s for s in shares]


class Ranker:
    """Places a window's samples, scaled, among its baseline and its earlier samples."""

    def __init__(self, base: FloatArray, scale: float) -> None:
        """`base`: the baseline's samples; `scale`: the deploy's samples are divided by it
        (1 + delta for an increase), i.e. the baseline is multiplied by it."""
        values = np.asarray(base, dtype=np.float64)
        values = values[np.isfinite(values)]
        with np.errstate(over="ignore", under="ignore"):
            scaled = values * scale
        buckets = np.full(scaled.shape, ZERO_BUCKET, dtype=np.int64)
        positive = (scaled > 0) & np.isfinite(scaled)
        buckets[positive] = np.ceil(np.log(scaled[positive]) / _LOG_GAMMA)
        # a sample whose product overflowed (near 1.8e308) or underflowed to 0 is bucketed
        # by its logs' sum: it was dropped, or put below every other, which moved the ranks
        lost = ~positive & (values > 0)
        if lost.any():
            logs = np.log(values[lost]) + math.log(scale)
            buckets[lost] = np.ceil(logs / _LOG_GAMMA)
        ordered = _sorted_buckets(buckets)
        self.base = ordered.tolist()
        self._base_array = ordered
        self.size = len(self.base)
        self._in_base: dict[int, tuple[int, int]] = {}
        """Per bucket, the baseline's samples below it and in it (`ranks`)."""

    def place(self, seen: Seen, values: list[float]) -> tuple[list[float], Seen]:
        """Each value's mid-rank placement in (0, 1) among the baseline and every earlier
        sample (those in `seen`, then the earlier values of this round, in order), and the
        histogram with this round's values added (a new one: `seen` is not changed)."""
        ranks, seen = self.ranks(seen, values)
        return placements(ranks), seen

    def ranks(self, seen: Seen, values: list[float]) -> tuple[Ranks, Seen]:
        """`place`'s counts (`Ranks`): per value, earlier samples below it, those tied
        with it plus itself, earlier samples plus itself; its smoothed rank is (below +
        theta ties) / size.

        Counted in three parts, each exactly: the baseline's (`_in_base`, kept per bucket:
        it never changes), the earlier rounds' (one running sum of `seen`'s counts, made
        once a round, where summing its counts below each value cost a pass over the
        histogram per sample: most of a 100 req/s round's judging) and this round's earlier
        values (a sorted list of their buckets). A round of `AT_ONCE` values or more is
        counted at once (`_ranks_at_once`): the same integers."""
        if len(values) >= AT_ONCE:
            return self._ranks_at_once(seen, values)
        keys, counts = seen[0], seen[1]
        below_keys = list(itertools.accumulate(counts, initial=0))
        before = self.size + below_keys[-1]
        in_base, known = self._in_base, self._in_base.get
        left, right, log, ceil = bisect.bisect_left, bisect.bisect_right, math.log, math.ceil
        n_keys = len(keys)
        now: list[int] = []  # this round's buckets so far, sorted
        below: list[int] = []
        ties: list[int] = []
        for value in values:
            b = ceil(log(value) / _LOG_GAMMA) if value > 0 else ZERO_BUCKET  # `bucket`
            base = known(b)
            if base is None:
                base = in_base[b] = self._count_in_base(b)
            i = left(keys, b)
            seen_at = counts[i] if i < n_keys and keys[i] == b else 0
            now_lo = left(now, b)
            now_hi = right(now, b, now_lo)
            now.insert(now_hi, b)
            below.append(base[0] + below_keys[i] + now_lo)
            ties.append(base[1] + seen_at + now_hi - now_lo + 1)
        size = list(range(before + 1, before + 1 + len(values)))
        return Ranks(below, ties, size), _joined(keys, counts, now)

    def _ranks_at_once(self, seen: Seen, values: list[float]) -> tuple[Ranks, Seen]:
        """`ranks` of a large round with numpy: each part counted per bucket of the round
        (`_on_grid`) and read off by each value, this round's earlier values by
        `_earlier`."""
        grid, at, now = _on_grid(_buckets(values))
        less, tied = _earlier(at, grid.size)
        keys = np.asarray(seen[0], dtype=np.int64)
        counts = np.asarray(seen[1], dtype=np.int64)
        running = np.zeros(keys.size + 1, dtype=np.int64)
        np.cumsum(counts, out=running[1:])
        seen_lo, seen_hi = keys.searchsorted(grid), keys.searchsorted(grid, "right")
        base_lo, base_hi = (
            self._base_array.searchsorted(grid),
            self._base_array.searchsorted(grid, "right"),
        )
        below = (base_lo + running[seen_lo])[at] + less
        ties = (base_hi - base_lo + running[seen_hi] - running[seen_lo] + 1)[at] + tied
        first = self.size + int(running[-1]) + 1
        size = np.arange(first, first + at.size, dtype=np.int64)
        present = now > 0
        new_keys, new_counts = grid[present], now[present]
        joined = np.union1d(keys, new_keys)
        joined_counts = np.zeros(joined.size, dtype=np.int64)
        joined_counts[joined.searchsorted(keys)] += counts
        joined_counts[joined.searchsorted(new_keys)] += new_counts
        return Ranks(below, ties, size), [joined.tolist(), joined_counts.tolist()]

    def _count_in_base(self, b: int) -> tuple[int, int]:
        """The baseline's samples below bucket `b` and in it."""
        lo = bisect.bisect_left(self.base, b)
        if len(self._in_base) >= _IN_BASE_SIZE:  # buckets far apart: keep it small
            self._in_base.clear()
        return lo, bisect.bisect_right(self.base, b, lo) - lo


_IN_BASE_SIZE = 4096
"""Buckets a `Ranker` keeps its baseline's counts of (a window's samples fall in a few
hundred)."""


def _sorted_buckets(buckets: IntArray) -> IntArray:
    """`np.sort(buckets)`, by radix on 16 bits from the lowest bucket where they span
    fewer than 65,536 (a baseline without a value <= 0): 8x faster over the 180,000
    samples of a 100 req/s baseline, and the same integers (a sort has one answer)."""
    if not buckets.size:
        return np.sort(buckets)
    low = int(buckets.min())
    if int(buckets.max()) - low >= 1 << 16:
        return np.sort(buckets)
    narrow = np.sort((buckets - low).astype(np.uint16), kind="stable")
    ordered: IntArray = narrow.astype(np.int64) + low
    return ordered


def _joined(keys: list[int], counts: list[int], now: list[int]) -> Seen:
    """The histogram (`keys`, `counts`) with the sorted buckets `now` counted in: new lists
    (the state's are never changed in place)."""
    keys, counts = list(keys), list(counts)
    i = 0
    for b in now:
        i = bisect.bisect_left(keys, b, i)
        if i < len(keys) and keys[i] == b:
            counts[i] += 1
        else:
            keys.insert(i, b)
            counts.insert(i, 1)
    return [keys, counts]


def _buckets(values: list[float]) -> IntArray:
    """`bucket` of each value, its log by `math.log` as the loop's (numpy's may differ in
    the last bit, and a bucket's edge with it)."""
    x = np.asarray(values, dtype=np.float64)
    positive = x > 0
    if positive.all():
        logs = np.fromiter(map(math.log, values), dtype=np.float64, count=len(values))
        whole: IntArray = np.ceil(logs / _LOG_GAMMA).astype(np.int64)
        return whole
    out = np.full(x.size, ZERO_BUCKET, dtype=np.int64)
    logs = np.fromiter(map(math.log, x[positive].tolist()), dtype=np.float64)
    out[positive] = np.ceil(logs / _LOG_GAMMA)
    return out


_GRID_SPAN = 2048
"""A round's buckets are counted on every bucket from its lowest to its highest while
there are at most this many (no sort: 1 us to 1 h is ~1,100 buckets of 2%); a wider
spread (or a value <= 0) is counted on its distinct buckets (`np.unique`). It bounds
`_earlier`'s cells, n x 2 sqrt(grid)."""


def _on_grid(buckets: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """(grid: sorted buckets, each value's index in it, the round's count per grid bucket)."""
    low, high = int(buckets.min()), int(buckets.max())
    if low > ZERO_BUCKET and high - low < _GRID_SPAN:
        at = buckets - low
        grid = np.arange(low, high + 1, dtype=np.int64)
        return grid, at, np.bincount(at, minlength=grid.size).astype(np.int64)
    grid, at, now = np.unique(buckets, return_inverse=True, return_counts=True)
    return grid, at.astype(np.int64), now.astype(np.int64)


def _earlier(at: IntArray, width: int) -> tuple[IntArray, IntArray]:
    """Per value, the earlier values of its round on a lower grid index (`at` in [0,
    `width`)) and on the same one: in chunks of c ~ sqrt(width) values, the chunks before
    by a running count per grid index (n / c x width cells), the chunk's own earlier
    values by comparing each pair (n x c), where a sorted insert per value cost n^2."""
    n = at.size
    c = max(1, math.isqrt(width))
    chunks = -(-n // c)
    chunk = np.arange(n) // c
    per_chunk = np.bincount(chunk * width + at, minlength=chunks * width).reshape(chunks, width)
    before = np.cumsum(per_chunk, axis=0) - per_chunk  # in the chunks before, per index
    lower = np.cumsum(before, axis=1) - before  # in the chunks before, below each index
    less, same = lower[chunk, at], before[chunk, at]
    padded = np.full(chunks * c, width, dtype=np.int64)  # past every index, after every value
    padded[:n] = at
    rows = padded.reshape(chunks, c)
    mine, theirs = rows[:, :, None], rows[:, None, :]
    earlier = np.tri(c, k=-1, dtype=bool)  # [j, k]: value k comes before value j
    less += ((theirs < mine) & earlier).sum(axis=2).ravel()[:n]
    same += ((theirs == mine) & earlier).sum(axis=2).ravel()[:n]
    return less, same

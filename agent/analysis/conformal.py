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

import numpy as np

from agent.analysis.sketch import GAMMA
from agent.analysis.stats import FloatArray

ZERO_BUCKET = -(2**31)
"""The bucket of values <= 0 (below every other)."""

_LOG_GAMMA = math.log(GAMMA)

Seen = list[list[int]]
"""The deploy's samples so far, as the state keeps them: [sorted buckets, their counts]."""


def bucket(value: float) -> int:
    """A value's bucket on the fixed log grid (the sketch's: ceil(log(v) / log(GAMMA)))."""
    return math.ceil(math.log(value) / _LOG_GAMMA) if value > 0 else ZERO_BUCKET


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
        self.base = np.sort(buckets).tolist()
        self.size = len(self.base)
        self._in_base: dict[int, tuple[int, int]] = {}
        """Per bucket, the baseline's samples below it and in it (`ranks`)."""

    def place(self, seen: Seen, values: list[float]) -> tuple[list[float], Seen]:
        """Each value's mid-rank placement in (0, 1) among the baseline and every earlier
        sample (those in `seen`, then the earlier values of this round, in order), and the
        histogram with this round's values added (a new one: `seen` is not changed)."""
        ranks, seen = self.ranks(seen, values)
        return [(below + ties / 2.0) / size for below, ties, size in ranks], seen

    def ranks(self, seen: Seen, values: list[float]) -> tuple[list[tuple[int, int, int]], Seen]:
        """`place`'s counts: per value (earlier samples below it, those tied with it plus
        itself, earlier samples plus itself); its smoothed rank is (below + theta ties) /
        size.

        Counted in three parts, each exactly: the baseline's (`_in_base`, kept per bucket:
        it never changes), the earlier rounds' (one running sum of `seen`'s counts, made
        once a round, where summing its counts below each value cost a pass over the
        histogram per sample: most of a 100 req/s round's judging) and this round's earlier
        values (a sorted list of their buckets)."""
        keys, counts = seen[0], seen[1]
        below_keys = list(itertools.accumulate(counts, initial=0))
        before = self.size + below_keys[-1]
        in_base, known = self._in_base, self._in_base.get
        left, right, log, ceil = bisect.bisect_left, bisect.bisect_right, math.log, math.ceil
        n_keys = len(keys)
        now: list[int] = []  # this round's buckets so far, sorted
        out = []
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
            out.append(
                (
                    base[0] + below_keys[i] + now_lo,
                    base[1] + seen_at + now_hi - now_lo + 1,
                    before + len(now),
                )
            )
        return out, _joined(keys, counts, now)

    def _count_in_base(self, b: int) -> tuple[int, int]:
        """The baseline's samples below bucket `b` and in it."""
        lo = bisect.bisect_left(self.base, b)
        if len(self._in_base) >= _IN_BASE_SIZE:  # buckets far apart: keep it small
            self._in_base.clear()
        return lo, bisect.bisect_right(self.base, b, lo) - lo


_IN_BASE_SIZE = 4096
"""Buckets a `Ranker` keeps its baseline's counts of (a window's samples fall in a few
hundred)."""


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

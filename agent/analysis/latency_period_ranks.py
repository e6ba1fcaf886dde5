"""A relative latency bound's rounds ranked among its baseline's periods: a test with no model
of how a round's latencies move together, that finds a large slowdown in two rounds.

Pure: no I/O, no clock, no global random state. Why: the rank test's sub-Gaussian bets
(`agent.analysis.rank_bets`) read a round's evidence through the within-round dependence the
baseline's periods measured, so each is capped at `rank_bets.SUB_GAUSSIAN_ROUND_CAP` nats a
round (a good release whose rounds are now and then slowed whole, which 60 periods often do
not show, failed 84 of 200 windows uncapped), and latency x2 at the daemon's 30 s rounds took
three rounds. One round cannot be both fast and valid there: a round x2 looks like a heavy
round. Two rounds can, without any model, as `agent.analysis.period_ranks` does for error
counts (Vovk's conformal test martingales; its docstring has the argument and references):
each round's score is ranked among the baseline's N periods' and the rounds' before it, and
two rounds above every period gain up to C(N + 2, 2) (7,381 at N = 120, a 1 h lookback of the
daemon's 30 s background runs; 1,891 at the decision benchmark's 60).

Scores. A point (a baseline period, a round) is scored by the rule's quantile (p95 for
`latency_p95`) of `size` of its latencies drawn without replacement, `size` the smallest
period's count: given how a point is slowed (its latent state: a cold cache, a busy host),
if its latencies are exchangeable among themselves, `size` of them have one distribution
whatever the point's own size, so points of any sizes share one distribution of scores when
their states are drawn alike (a point's own quantile would not: a small point's p95 spreads
more, so the small ones would be the extreme ones). A round's latencies are divided by 1 +
delta (the rule's tolerance, `max_increase`), so a deploy at exactly the bound, every latency
(1 + delta) times the baseline's, scores as the baseline does; a faster one only lower. The
scores are kept on the conformal sketch's 2% log grid (`agent.analysis.conformal.bucket`,
the same map for every point, so exchangeability holds on it), which keeps the state a
histogram of a few dozen buckets whatever the rounds; ties are smoothed by theta
(`PeriodRanks.p_value`). A round with fewer latencies than `size` is not scored (no bet, not
kept). Periods too small to read the quantile (`min_size`) give no test: the quantile of a
few latencies is their largest, and x2 is then above every one of 60 periods twice in a row
in 28% of windows at 20 latencies, 58% at 40, all at 300 (lognormal, log-sd 0.6).

Ranks, bets and randomness: `agent.analysis.period_ranks.PeriodRanks` (the same strategies and
weights, registered as "period_ranks", and the same e-detector: a martingale started at every
scored round, betting its rounds rank within the top `age`, valid as the error test's on the
same p-values: latency x2 from minute 5 fails in three 30 s rounds, where the test from the
deploy has lost its wealth on the good rounds before and the rank and exceedance tests'
e-detectors took five), its draws seeded by a digest of the baseline's latencies and periods
and, for a round, its index and a digest of its latencies: a verdict is a function of its
inputs, replayed exactly after a restart.

What it assumes: the baseline's periods and the deploy's rounds, divided by 1 + delta, are
exchangeable: their slowdowns drawn alike and independently (a rare heavy round is fine: the
periods show it as often as the rounds; a slow episode that spans two rounds more often than
the periods show is not, as for `period_ranks`' error bursts), latencies within a point
exchangeable among themselves. A round that pools several checks' probes (a background run is
one check's) is less extreme than the periods, which errs the safe way. An absolute `max` is
not tested so: its null allows a release far slower than the baseline, so ranks among the
baseline's periods say nothing of it. A decrease bound is not wired: exchangeability would
hold there as well, but nothing measured its worth against the budget it would take.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.analysis import stats
from agent.analysis.conformal import bucket
from agent.analysis.period_ranks import MIN_PERIODS, PeriodRanks, seeded_generator
from agent.analysis.stats import FloatArray

MIN_SIZE = 20
"""The fewest latencies a period's score is drawn from (`min_size`): below 20, latency x2
(x1.8 past a +10% bound) ranks above every one of 60 periods in two rounds running in under
a third of windows, where the test's share of the budget is taken from the rank and
exceedance tests every window."""


def min_size(quantile: float) -> int:
    """The fewest latencies a point's score may be drawn from: `MIN_SIZE`, and enough that
    the quantile reads at least one latency beyond it on either side (20 for a p95, 100 for
    a p99)."""
    return max(MIN_SIZE, math.ceil(1.0 / min(quantile, 1.0 - quantile) - 1e-9))


@dataclass(frozen=True, slots=True)
class LatencyPeriodRanks:
    """The baseline's periods as scores, and how a round's latencies are scored."""

    ranks: PeriodRanks
    """The periods' scores (buckets), sorted, with the ranking and the bets."""
    quantile: float
    scale: float
    """A round's latencies are divided by it: 1 + delta."""

    @classmethod
    def of(
        cls,
        sorted_values: FloatArray,
        period_of: npt.NDArray[np.intp],
        quantile: float,
        delta: float,
    ) -> LatencyPeriodRanks | None:
        """The test for a baseline's latencies (`period_of`: the period each came from) and
        the rule's tolerance; None with fewer than `MIN_PERIODS` periods, or a smallest one
        below `min_size`."""
        if not period_of.size or period_of.size != sorted_values.size or delta < 0:
            return None
        if not 0.0 < quantile < 1.0:
            return None
        finite = np.isfinite(sorted_values)
        values, owner = sorted_values[finite], period_of[finite]
        sizes = np.bincount(owner)
        kept = np.flatnonzero(sizes)
        if kept.size < MIN_PERIODS:
            return None
        size = int(sizes[kept].min())
        if size < min_size(quantile):
            return None
        digest = hashlib.blake2b(digest_size=8)
        digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(owner, dtype=np.int64).tobytes())
        salt = digest.hexdigest()
        # 16-bit keys are sorted by radix, 10x faster than int64's (a stable order is the
        # one order: the same permutation)
        order = np.argsort(
            owner.astype(np.uint16) if sizes.size <= 1 << 16 else owner, kind="stable"
        )
        groups = np.split(values[order], np.cumsum(sizes)[:-1])
        scores = [
            _score(seeded_generator(salt, "period", int(i)), groups[i], size, quantile, 1.0)
            for i in kept.tolist()
        ]
        return cls(PeriodRanks(tuple(sorted(scores)), size, 1.0, salt), quantile, 1.0 + delta)

    def score(self, index: int, values: FloatArray) -> int | None:
        """Round `index`'s score: the quantile of `size` of its (finite) latencies over
        `scale`, bucketed; None with fewer latencies than `size`."""
        size = self.ranks.size
        if values.size < size:
            return None
        digest = hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=8)
        rng = seeded_generator(self.ranks.salt, "round", index, digest.hexdigest())
        return _score(rng, values, size, self.quantile, self.scale)


def _score(
    rng: np.random.Generator, values: FloatArray, size: int, quantile: float, scale: float
) -> int:
    """The bucket of the `quantile` of `size` of `values` drawn without replacement, over
    `scale`."""
    drawn = values[rng.choice(values.size, size, replace=False)] if values.size > size else values
    return bucket(stats.percentile(drawn, quantile) / scale)

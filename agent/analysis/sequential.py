"""The sequential policy's tests of one rule, compiled against its baseline, stepped per round.

Pure: no I/O, no clock. `SequentialRule` is built once per window from a rule, its baseline,
the rule's share of the error budget and the window's planned rounds; `step` folds one
round's observation into a small JSON state (a few floats per test, never more with more
rounds). The daemon, `judge()` and the decision benchmark all call `step`. Methods: see
`agent.analysis.stats` (round-level betting e-processes, a Shiryaev-Roberts e-detector, an
asymptotic confidence sequence for passing on evidence).

Error budget. The window's alpha = 1 - confidence is split evenly between rules, then between
a rule's failing tests (its bounds; a relative latency bound runs two: a rank test for a
shift of the whole distribution and an exceedance test of the quantile the rule names, for
regressions confined to the tail). A relative test against a measured baseline (counts,
raw samples; either direction) treats the baseline as the estimate it is: a ladder over its
confidence limits (`SequentialRule._ladder`) prices the baseline by an e-value, and spends a
`COUNT_TAIL_SHARE` of its share beyond the farthest limit. A bare baseline figure is taken at
face value, and the pass side spends `BASELINE_SHARE` on one confidence limit. The rest is
split between the e-process started at the deploy and the e-detector for a regression that
starts later (when the window's length in rounds is known): halves for values, the deploy's
`COUNT_START_SHARE` for a two-sample count test, `RANK_DETECTOR_SHARE` and `ONSET_RATIO` for
the rank and exceedance tests, after a relative test on samples or on counts (an increase:
a decrease's bad events are the complement, which the ratio test does not cover), or an absolute
`max`/`min` on a proportion or a distribution, has set aside `FINAL_SHARE` for one look at
the whole window at its last round (`finish`). An increase's two-sample count test whose
baseline kept enough periods gives `PERIOD_RANKS_SHARE` of its e-process's level from
the deploy to a test of its rounds' ranks among those periods (`agent.analysis.period_ranks`:
no model of burstiness, two rounds for errors x5), and `PERIOD_RANKS_DETECTOR_SHARE` to that
test's e-detector (three rounds for errors x5 from minute 5); one whose baseline prices no
two-sample test has that ranks test alone at its whole share (no e-detector). An increase's
rank and exceedance tests likewise give `LATENCY_PERIOD_RANKS_SHARE` of theirs to ranking its
rounds' percentiles among the periods (`agent.analysis.latency_period_ranks`: two rounds for
latency x2), and `LATENCY_PERIOD_RANKS_DETECTOR_SHARE` to that test's e-detector (three
rounds for latency x2 from minute 5). A conformal rank or exceedance test whose baseline's
periods measure a within-round correlation gives `CORRELATION_SHARE` of its remaining
e-process's and e-detector's levels to that correlation's upper limit, which its tilted
bets read. Union bound:
the chance that any rule of a good deploy ever fails is at most alpha. A baseline's counts
are pooled from periods (background runs, provider buckets): its confidence limits take the
periods, not the requests, as the units (`BaselineData.rate_limit`), so errors that come in
bursts are not read as independent; Student's correction there is the limit's own deviate
at its level (a t-limit), not a second limit, so it spends no alpha of its own. When the
periods show bursts, the two-sample test's limits are widened (`BaselineData.burst_limit`)
by one that does take a second limit, on how many bursts the count holds (read from the
periods but the one farthest from their rate: `BaselineData.burst_spread`): it spends half
of each ladder level on it and half on the rate given it, a union bound inside each limit,
so the ladder prices its levels, and the budget splits, as without it.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from agent.analysis import exceedance_bets, period_ranks, rank_bets, stats
from agent.analysis.conformal import Ranker, Ranks, placements, shares_past
from agent.analysis.describe import (
    change_floor,
    format_percent,
    format_value,
    never_negative,
    outage_share,
    quantile_of,
)
from agent.analysis.latency_period_ranks import LatencyPeriodRanks
from agent.analysis.period_ranks import PeriodRanks
from agent.analysis.sketch import GAMMA
from agent.analysis.stats import FloatArray
from agent.analysis.types import Observation, Rule
from common import units

Kind = Literal["proportion", "distribution", "value"]
"""How a rule's evidence is read: counts, raw samples, or bare values."""
Bound = Literal["max_increase", "max", "min"]
Test = Literal["proportion", "rank", "exceedance", "value", "periods", "latency_periods"]

_EMPTY: FloatArray = np.empty(0)
_NO_PERIODS: npt.NDArray[np.intp] = np.empty(0, dtype=np.intp)

BASELINE_SHARE = 0.2
"""Part of a relative test's alpha spent on the baseline's confidence limit. Small, because a
limit widens only like sqrt(log(1 / alpha)) while the e-value threshold grows like
log(1 / alpha)."""

COUNT_TAIL_SHARE = 0.05
"""A two-sample test's alpha spent on the baseline's figure lying past its farthest confidence
limit (the only region it does not test with the new samples)."""

COUNT_START_SHARE = 0.86
"""A two-sample count test's share (of what its tail leaves) for the e-process started at
the deploy; the e-detector gets the rest. Small regressions are found, if at all, by the
end of the window from the deploy's evidence, where every nat counts (errors x2 at
10 req/s: 90% of windows, against 85% at an even split); a regression that starts later is
large enough to be found within seconds of rounds either way (errors x5 from minute 5 at
10 req/s: 39.5 s, against 37 s at 0.75 and 41 s at 0.87, where the goal of 1.5x the 28 s
from the deploy is near)."""

BASELINE_LADDER = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4)
"""Levels beta of the baseline's e-value sum_i w_i 1{baseline figure past its limit at
beta_i} / beta_i: one step per confidence limit, so a baseline near its estimate costs
log(1 / w_0) nats, not a whole confidence limit's share of alpha."""

FIRST_RUNG_WEIGHT = 0.5
"""w_0, the weight of the first level (beta = 1: the baseline is where its data put it): most
of the time it is, so it gets half the weight; the other levels share the rest equally."""

DEFAULT_T_OPT = 30.0
"""Without a planned number of rounds, the confidence sequence is tuned for 30."""

SHORT_WINDOW_ROUNDS = 3
"""A window planned for this many rounds or fewer spends its tests' whole shares on their
e-processes from the deploy, as one of unknown length does: its e-detector has no rounds
before an onset and after it to tell one by, and its look at the end, its counts divided by
the burstiness measured across 2 rounds (Student at 2 degrees of freedom, about 70 times at
a level of 1e-3, capped at a round's size), never fails (58 errors in 120 probes over 3
rounds against `max 5%`: p 0.04 at a level of 7e-4). A rank or exceedance test keeps its
look (`_split_distribution`): its e-process, capped a round (`rank_bets.EPISODE_ROUNDS`), cannot
fail in so few rounds, and its look can. Decided from the planned rounds, before any data, so
the union bound is the same sum."""

VALUE_FLOOR = 0.1
"""A bare value's rounds are taken to vary by at least 10% of the bound (standard deviation),
so a few identical provider figures never prove a pass."""

RANK_DETECTOR_SHARE = 0.3
"""The rank test's alpha given to its e-detector, the rest to its e-process from the deploy:
a round's mean placement is at most 1, so the rank test gains at most log 2 nats a round
and its part is the slow shifts present from the deploy (`ONSET_RATIO` for the other)."""

RANK_MULTIPLES: FloatArray = np.array([1.0, 3.0, 10.0])
"""The rank test's bets, in multiples of its aimed stake (`SequentialRule._aimed_stake`):
the stake that just reaches the threshold by the window's end, and two larger ones for
shifts found sooner (the exceedance test catches the large ones within seconds)."""
RANK_MULTIPLE_WEIGHTS: FloatArray = np.array([0.6, 0.2, 0.2])
"""Their prior weights: most on the aimed stake. The rank test's part is the slow shifts,
which are found, if at all, near the window's end at about that stake (latency x1.2 at
1 req/s in the decision benchmark, 300 windows on seeds it does not use: 57% found, against
46% with fixed stakes per sample spread over 0.003-1, whose best bet got a fifth of the
weight and sat up to a factor 1.7 from the useful one)."""
RANK_AIM = 1.0
"""Nats past the test's threshold its aimed stake is sized for (what the mixture's weight
and the noise of the window's end cost, roughly); 0 to 2 find the same windows."""
rank_bets.register("conformal_rank", RANK_MULTIPLES, RANK_MULTIPLE_WEIGHTS)

EXCEEDANCE_MULTIPLES: FloatArray = np.array([1.0, 3.0])
"""A conformal exceedance test's first bets, in multiples of its aimed stake
(`SequentialRule._aimed_stake`, as the rank test's); `stats.COUNT_BETS` per expected bad
event follow them for the large shifts it must catch within seconds."""
EXCEEDANCE_MULTIPLE_WEIGHTS: FloatArray = np.array([0.85, 0.15])
"""Their weights among themselves: most on the stake that just reaches the threshold by the
window's end."""
EXCEEDANCE_AIMED_WEIGHT = 0.85
"""The aimed bets' part of the exceedance test's mixture from the deploy (the count bets
share the rest by their prior). A regression confined to the tail is found, if at all, near
the window's end at about the aimed stake, where every nat counts; a large shift is found
within seconds either way, and the e-detector's share (`ONSET_RATIO`) is sized against the
count bets' part, so one that starts mid-window keeps its ratio."""
stats.register_bets("exceedance_aimed", EXCEEDANCE_MULTIPLES, EXCEEDANCE_MULTIPLE_WEIGHTS)
exceedance_bets.register(
    "conformal_exceedance",
    EXCEEDANCE_MULTIPLES,
    stats.COUNT_BETS,
    np.concatenate(
        [
            EXCEEDANCE_AIMED_WEIGHT
            * EXCEEDANCE_MULTIPLE_WEIGHTS
            / np.sum(EXCEEDANCE_MULTIPLE_WEIGHTS),
            (1.0 - EXCEEDANCE_AIMED_WEIGHT) * np.exp(stats.BET_LOG_WEIGHTS["count"]),
        ]
    ),
)

ONSET_RATIO = 1.45
"""The exceedance test (the one that catches a large shift within a few rounds) gives its
e-detector the smallest share of its alpha (in steps of 0.05) at which a regression that
starts mid-window needs at most this many times the evidence of one present from the
deploy: the detector needs log(rounds) nats more for not knowing when. So at a rule's
alpha of 0.005 (confidence 0.99, two rules) the detector gets 0.05 of the share over 30
rounds (the default window) and 0.45 over 900 (`tests/analysis/test_onset.py`; the
decision benchmark's doubled latency from minute 5 at 10 req/s is caught in 11 s, from the
deploy in 7 s)."""

MIXTURE_OVERHEAD = 2.0
"""Nats the bet mixture costs over the best single bet (its prior weight), roughly: half of
it is what the exceedance test's mixture from the deploy pays over its e-detector's largest
bet (`SequentialRule._onset_share`, `ONSET_RATIO`'s one use of it)."""

FINAL_SHARE = 0.2
"""A relative test's share (two-sample counts, conformal rank and exceedance) spent on one
look at the whole window at its last round, when the window's length is known
(`SequentialRule.finish`). The e-processes must hold at every round, so they fail only at
1 / alpha, where a test looked at once needs far less: a small regression found, if at
all, near the window's end is found there far more often (decision benchmark, 100 windows
a cell on three seed sets apart from its own: rare errors x5 at 10 req/s 96-99% against
94%, errors x2 98-99% against 95-96%, latency x1.2 at 1 req/s 60-70% against 54-62%). The
e-processes keep the rest for what must be caught within seconds: errors x5 at 10 req/s
lose about a round (0.2 of the share is 0.22 nats)."""

MIDWAY_SHARE = 0.08
"""A relative count bound's share of its two-sample e-process from the deploy (taken before
the test of ranks among the baseline's periods takes its part) spent on one look at the
window's midpoint (`SequentialRule._look_midway`), when the window's length is known: the
look at the end (`FINAL_SHARE`) as it would be read there, at this level. One linear bet a
round gains at most log 2 nats however many requests the round holds, so at 30 s rounds a
regression that is plain in the counts is not in the e-process: errors x1.5 at 100 req/s
reached its bar in few windows before the window's end, where the look's p-value was 1e-7
to 1e-5 (decision benchmark, 100 windows on seeds it does not use: median 810 s, against
Flagger's 660 s on the windows both found; with the look at 450 s, 450 s). The e-process's
bar rises by log(1 / 0.92) = 0.08 nats (errors x5 at 10 req/s: still two rounds). One look,
not a group-sequential schedule: the same budget spent over looks at 1/3, 1/2, 2/3 and the
end (Lan-DeMets' O'Brien-Fleming-like or Pocock-like increments, each its look's level:
the union bound) caught regressions later or less often: errors x1.5 at 100 req/s in a
median of 600 or 450 s (450 s), errors x2 at 10 req/s in 98% of windows in 540 s or 94.5%
in 510 s (97% in 510 s) (`bench/look_schedules.py`). A look over few rounds pays
Student's correction for the burstiness it measures across them: at round 9 (270 s, before
Kayenta's 300 s) more than half the windows' p-values were past 1e-3, a fifth of the rule's
whole share."""

WARN_SHARE = 2.0 / 3.0
"""The `rule breached` warning (contract section 4) under the sequential policy: a test's
e-process from the deploy, read as it stands after each round (its wealth now, not its
peak, so it falls again as rounds within the bound come), at this share of the log of its
failing bar or more: 1 / alpha^(2/3). At the null's edge a test's chance of ever reaching
it is at most alpha^(2/3) (Ville), 0.8% for the example's `probe-errors` (1,500 fails it,
131 warns), which is warned after two rounds all errors at 40 probes a round or more and
fails at the third (`tests/analysis/test_breach_warning.py`). Of the decision benchmark's
1,200 A/A-like windows it warned 10 (0.8%), all at `boundary` (`bench/breach_warnings.py`);
a bar at the square root warned 1.9%, a fixed 15 to 1 (one round of all errors reaches
it) 3.2%, and the e-detector's statistic, which grows like the rounds under the null, far
more. Read, never stepped: no verdict depends on it."""

FOUR_IN_FIVE = 0.8
"""The chance of a catch a "can detect" figure stands for (`LOOK_POWER` is its z)."""

LOOK_POWER = 0.84
"""What a rule can detect by the look at the window's end is the effect it catches four
times in five (the z of 0.8; the usual power of a minimum detectable effect). Sized at its
expected statistic alone (a coin flip), an error-rate rule like the decision benchmark's
(1% errors, +10%, 10 and 100 req/s, 30 and 900 rounds) was caught in 35-45% of windows at
its figure, against 64-90% at the e-processes' figures: the two would not have meant the
same."""

BURSTS_SHOWN = 0.01
"""A count baseline's periods show bursts when their spread's Pearson statistic is past
chi-square's upper quantile at this level (`BaselineData.shows_bursts`); only then is its
ladder's limit widened for them (`BaselineData.burst_limit`)."""

PERIOD_RANKS_SHARE = 0.35
"""A relative count bound's share of its two-sample e-process from the deploy (not of its
e-detector, tail or look at the window's end) given to ranking its rounds among the
baseline's periods (`agent.analysis.period_ranks`), when the baseline kept them: two rounds
of errors x5 above every one of 60 periods give 0.6 x 60.4 x 30.7 = 1,112, past the 1 /
(0.35 a) = 886 of the decision benchmark's error rule (a = 0.0032); the ladder's threshold
rises by log(1 / 0.65) = 0.43 nats. Given back when the window's first round is less than
half the smallest period (`SequentialRule._unranked`: no round would be ranked)."""
LATENCY_PERIOD_RANKS_SHARE = 0.35
"""A relative latency bound's share of its rank and exceedance tests' e-processes from the
deploy (not of their e-detectors or looks at the window's end) given to ranking its rounds'
latencies among the baseline's periods (`agent.analysis.latency_period_ranks`), when the
baseline kept enough of them: two rounds above every one of 60 periods give 0.6 x 60.4 x
30.7 = 1,112, past the 1 / (0.35 a) of the decision benchmark's latency rule (a: the two
e-processes' levels, 0.0032 together)."""
LATENCY_PERIOD_RANKS_DETECTOR_SHARE = 0.25
"""A relative latency bound's share of its rank and exceedance tests' e-processes from the
deploy (as `LATENCY_PERIOD_RANKS_SHARE`, of their levels before it) given to the e-detector
of its latency period-rank test (`period_ranks.DETECTOR_ROUNDS`), when the window's length
is known and rounds above every period reach its threshold in `PERIOD_RANKS_DETECTOR_ROUNDS`:
latency x2 from minute 5 is then caught in three 30 s rounds, where three rounds above the
60 periods and the 10 good rounds before them give about 0.6 x 60,400 + 0.25 x 45,800 +
0.15 x 7,600 = 48,800 against the detector's 30 / (0.25 a) = 36,400 (a = 0.0033, the two
e-processes' levels before the ranks' shares); at 0.15 (61,000) it took four. The rank and
exceedance tests' detectors keep theirs: they find the onsets below x2 (and every onset of
1 s rounds, too small to rank)."""
PERIOD_RANKS_DETECTOR_SHARE = 0.2
"""A relative count bound's share of its two-sample e-process from the deploy given to the
e-detector of its period-rank test (`period_ranks.DETECTOR_ROUNDS`), when the window's
length is known: errors x5 from minute 5 at 10 req/s are then caught in three 30 s rounds
(the decision benchmark's median 90 s at 10 and 100 req/s, against 60 s from the deploy:
1.5x; 240 s and 210 s without it, by the two-sample test's e-detector), where three rounds
above the 60 periods and the 10 good rounds before them give the detector's mixture
(`period_ranks.DETECTOR_WEIGHTS`) 54,829 against its 30 / (0.2 a) = 50,554 (a = 0.00297;
at the test's own weights 48,813: four rounds, 120 s). Taken from the two-sample e-process,
whose threshold rises by log(0.45 / 0.65) = 0.37 nats (errors x2 at 10 req/s: the same
windows found, a median of 570 s against 510 s), not from its e-detector, which finds
errors x5 from minute 5 at 1 req/s (rounds of a few errors, ranks there tie)."""
PERIOD_RANKS_DETECTOR_ROUNDS = 4
"""The period-rank e-detector is worth its share only if rounds above every period reach
its threshold (horizon / its level) in this many rounds from the deploy's first (later
starts rank among the earlier rounds too, so gain more): the benchmark's 30 rounds reach it
in four; a window of 900 1 s rounds would need six, and its rounds are too small to rank."""

stats.register_bets(
    "period_ranks",
    np.array([g for g, _ in period_ranks.STRATEGIES]),
    np.array(period_ranks.WEIGHTS),
)
stats.register_bets(
    "period_ranks_detector",
    np.array([g for g, _ in period_ranks.STRATEGIES]),
    np.array(period_ranks.DETECTOR_WEIGHTS),
)

CORRELATION_SHARE = 0.2
"""A conformal rank or exceedance test's part of its levels from the deploy and of its
e-detector spent on the upper limit of the within-round correlation its tilted bets read
from the baseline's periods (`SequentialRule._charge_correlation`); the limit was taken at
the e-process's own level and charged nowhere."""

COUNT_LADDER_STEP = 0.8
"""Ratio of one level of the two-sample count test's ladder to the one before it."""
COUNT_LADDER_LAST = 2.6e-4
"""Its levels go down to the first past this (the tail share of the default budget, 0.005
per rule x `COUNT_TAIL_SHARE`, lies just below it)."""


def _geometric_ladder(
    step: float, last: float, first_weight: float
) -> tuple[tuple[float, float], ...]:
    """Levels 1, step, step^2, ... while above `last`: w_0 = `first_weight`, the rest equal."""
    levels = [1.0]
    while levels[-1] * step > last:
        levels.append(levels[-1] * step)
    return ((1.0, first_weight), *((b, 1.0) for b in levels[1:]))


COUNT_LADDER: tuple[tuple[float, float], ...] = _geometric_ladder(
    COUNT_LADDER_STEP, COUNT_LADDER_LAST, 0.3
)
"""The two-sample count test's baseline levels (beta, weight), its own ladder (the rank and
exceedance tests keep `BASELINE_LADDER`): w_0 as it stands, the others relative, scaled to
share 1 - w_0 among the levels above the test's tail share. A fine geometric grid (37
levels, about log-uniform weights): the new samples' wealth is read at each interval's far
end and the baseline's e-value at its near end, so a coarse step loses the ratio of the two
limits' levels. Where the least over the intervals lies depends on how large the baseline
is beside the window and on the effect (near the baseline's estimate for errors x5 at
100 req/s, near its 0.3% limit for errors x2 at 10 req/s, near 0.1% for rare errors x5),
so no level is favoured beyond w_0. Against the 12 levels of halving steps it replaces
(0.4 on the first), on seeds apart from the benchmark's (offsets 5000 and 6000, count
rule alone): errors x2 at 10 req/s 95.3% against 93.5% of 400 windows, rare errors x5
96.3% against 94.8%, errors x1.5 at 100 req/s median 195 s against 202 s, errors x5 27 s
either way. A continuous log-uniform calibrator (the limit of finer grids) would give
about 95.7% and 94.1% on offsets 1000-3000: the grid is near it."""


@dataclass(frozen=True, slots=True)
class BaselineData:
    """A baseline as the tests need it: the value, counts, and sorted raw samples."""

    value: float
    count: float | None = None
    total: float | None = None
    sorted_values: FloatArray = field(default_factory=lambda: _EMPTY)
    periods: int = 1
    dispersion: float = 0.0
    """Within-period correlation of events (rho), measured across the baseline's periods
    (background runs, provider buckets); 0 when they carry no information."""
    period_of: npt.NDArray[np.intp] = field(default_factory=lambda: _NO_PERIODS)
    """The period each of `sorted_values` came from (`Observation.period_sizes`), so that
    how samples past a cutoff cluster in periods can be measured (`share_dispersion`);
    empty when the baseline did not keep its periods."""
    period_counts: tuple[tuple[int, int], ...] = ()
    """Each pooled period's (bad events, total) (`Observation.period_counts`): a relative
    count bound ranks its rounds among them (`agent.analysis.period_ranks`)."""

    @classmethod
    def from_observation(cls, obs: Observation | None) -> BaselineData | None:
        """None when the baseline has no data (missing, NaN, or an error)."""
        if obs is None or obs.value is None or obs.error is not None:
            return None
        if not math.isfinite(obs.value):
            return None
        values = np.asarray(obs.values, dtype=np.float64) if obs.values else _EMPTY
        period_of = _period_of(obs.period_sizes, values.size)
        finite = np.isfinite(values)
        if period_of.size:
            values, period_of = values[finite], period_of[finite]
            order = np.argsort(values, kind="stable")
            values, period_of = values[order], period_of[order]
        else:
            values = np.sort(values[finite])
        return cls(
            value=float(obs.value),
            count=None if obs.count is None else float(obs.count),
            total=None if obs.total is None else float(obs.total),
            sorted_values=values,
            periods=max(1, obs.periods),
            dispersion=obs.dispersion or 0.0,
            period_of=period_of,
            period_counts=obs.period_counts,
        )

    def share_dispersion(self, cutoff: float, *, below: bool) -> float:
        """Within-period correlation (rho) of samples past `cutoff` (below it when `below`),
        measured across the periods the samples came from, as `dispersion` is for counts:
        slow whole background runs show as a large one. 0 when the periods were not kept or
        carry no information."""
        if not self.period_of.size:
            return 0.0
        past = self.sorted_values < cutoff if below else self.sorted_values > cutoff
        periods = int(self.period_of.max()) + 1
        counts = np.bincount(self.period_of[past], minlength=periods)
        totals = np.bincount(self.period_of, minlength=periods)
        return stats.intra_period_correlation(counts, totals) or 0.0

    @property
    def has_counts(self) -> bool:
        return self.count is not None and self.total is not None and self.total > 0

    @property
    def inflation(self) -> float:
        """Variance inflation of the pooled count: 1 + (mean period size - 1) * rho."""
        if not self.has_counts or self.total is None:
            return 1.0
        return max(1.0, 1.0 + (self.total / self.periods - 1.0) * self.dispersion)

    @property
    def event_periods(self) -> int:
        """The periods whose counts hold any event of the rarer kind (bad, or good when
        most are bad): what the spread of the counts is measured from
        (`measured_periods`); every period when the baseline did not keep them."""
        if not self.period_counts or self.count is None or self.total is None:
            return self.periods
        rare = self.count <= self.total - self.count
        return sum(1 for bad, n in self.period_counts if (bad if rare else n - bad) > 0)

    @property
    def measured_periods(self) -> int:
        """The periods the inflation's uncertainty is read from: those that hold events,
        when fewer. A spread of counts that are mostly 0 rests on the few that are not (its
        kurtosis is about k / D), so it is as uncertain as one measured from D periods, not
        k: a baseline that missed its bursts (2-16 errors in 2-6 of 10-60 periods, at
        Beta-distributed rates of rho 0.05-0.2) measured a calm spread that Student's
        correction on k - 1 degrees of freedom took at its word, and its limits sat several
        times below the true rate (`tests/analysis/test_round_burst_ladder.py`)."""
        return min(self.periods, self.event_periods)

    @property
    def measured_spread(self) -> tuple[float, int, float, float]:
        """(inflation, `measured_periods`, events of the rarer kind, mean period size): what
        a Student correction of the inflation reads (`stats.welch_inflations`)."""
        assert self.count is not None and self.total is not None
        events = min(self.count, self.total - self.count)
        return self.inflation, self.measured_periods, events, self.total / self.periods

    def inflation_at(self, alpha: float) -> float:
        """The inflation a limit at level `alpha` divides the counts by: the measured one
        with Student's correction for the few periods it was measured from
        (`measured_periods`), or every period one unit when its events are too few to
        measure it, or lie in one period (`stats.inflation_limit`). A baseline of one period
        says nothing of its burstiness: its own figure (none: 1)."""
        if self.periods < 2 or self.count is None or self.total is None:
            return self.inflation
        events = min(self.count, self.total - self.count)
        return stats.inflation_limit(
            self.inflation, self.measured_periods, events, self.total / self.periods, alpha
        )

    def rate_limit(self, alpha: float, *, upper: bool) -> float:
        """Clopper-Pearson limit of the baseline rate on effective counts: the periods are
        the units, their burstiness measured with its uncertainty (`inflation_at`)."""
        assert self.count is not None and self.total is not None
        inflation = self.inflation_at(alpha)
        x, n = self.count / inflation, self.total / inflation
        return stats.rate_upper_bound(x, n, alpha) if upper else stats.rate_lower_bound(x, n, alpha)

    @property
    def shows_bursts(self) -> bool:
        """Whether the periods' spread of counts is past what chance gives independent
        events (`BURSTS_SHOWN`): the inflation over chi2_{k - 1}'s upper quantile / (k - 1).
        Below it the spread is mostly noise (18 errors in 60 periods at rho 0.0005 measure
        an inflation of 1.15): read as bursts (`burst_limit`), it cost a small regression
        against a small baseline 0.85 nats where no baseline shows danger."""
        if self.periods < 2 or self.inflation <= 1.0:
            return False
        df = self.periods - 1.0
        return self.inflation > stats.chi2_share(df, 1.0 - BURSTS_SHOWN)

    def burst_inflation(self, alpha: float, at: float | None = None) -> float:
        """`inflation_at`, or the inflation at the chi-square lower limit (level `alpha`) of
        the bursts the count holds, if more: its shape count / (inflation - 1)
        (`stats.burst_rate_bound`) is measured from the periods, as the inflation is, and a
        normal-theory limit for it is (k - 1) / chi2_{alpha, k - 1} of its estimate, where
        Student's correction (`inflation_at`) is about its square root. Never above the mean
        period size (each period one unit); k: `measured_periods`. `at`: the Student-corrected
        inflation when the caller corrected it otherwise (`stats.welch_inflations`)."""
        at = self.inflation_at(alpha) if at is None else at
        if not self.shows_bursts or self.total is None:
            return at
        top = max(self.total / self.periods, 1.0)
        inflation, periods = self.burst_spread
        df = max(periods, 2) - 1
        wide = 1.0 + (inflation - 1.0) / stats.chi2_share(df, alpha)
        return max(at, min(wide, top))

    @property
    def burst_spread(self) -> tuple[float, int]:
        """(inflation, measured periods) the widening for bursts (`burst_inflation`) reads:
        the spread of the periods but the one farthest from the pooled rate, when the rest
        still hold two events of the rarer kind (`_spread_but_farthest`); else the whole
        spread (`inflation`, `measured_periods`). The widening scales the spread's excess by
        chi-square's lower limit, a normal-theory read that one period holding most of the
        excess breaks: 13 errors in 60 periods of 300 requests, 4 of them in one, measure
        an inflation of 1.7 from it alone, which it widened to 6.5 at a level of 1e-3,
        where independent errors give 1 (rare errors x5 at 10 req/s: 5 of the decision
        benchmark's 6 missed windows had such a baseline). That period's excess stays in
        the Student-corrected inflation, the widening's floor (`inflation_at`: 3.3 there).
        Bursts the other periods show are widened as before; the ladder keeps its
        baseline e-value's mean within 1 (`tests/analysis/test_round_burst_ladder.py`)."""
        spread = _spread_but_farthest(self.period_counts) if self.period_counts else None
        return spread if spread is not None else (self.inflation, self.measured_periods)

    def burst_limit(self, alpha: float, *, upper: bool) -> float:
        """The two-sample count test's confidence limit at level `alpha`: the wider of
        `rate_limit` and a negative-binomial limit (`stats.burst_rate_bound`) that spends
        alpha / 2 on the bursts' lower limit (`burst_inflation`) and alpha / 2 on the rate
        given it, so the limit is one at level `alpha` (union bound within it: the ladder
        prices each of its levels as before). `rate_limit` alone divides the count by an
        inflation that shrinks with it when a baseline under-drew its bursts, so its limits
        did too: errors drawn once per 30 s round (Beta, rho 0.2) at 100 req/s, 60 periods,
        put the true rate past the 0.00025 limit in 4.2% of baselines, the ladder's e-value
        at it had mean 3.1 (`tests/analysis/test_round_burst_ladder.py`). Either limit is
        valid alone; the wider is too."""
        assert self.count is not None and self.total is not None
        limit = self.rate_limit(alpha, upper=upper)
        if not self.shows_bursts:
            return limit
        inflation = self.burst_inflation(alpha / 2)
        burst = stats.burst_rate_bound(self.count, self.total, inflation, alpha / 2, upper=upper)
        return max(limit, burst) if upper else min(limit, burst)


@dataclass(frozen=True, slots=True)
class Component:
    """One always-valid failing test of one bound of a rule."""

    bound: Bound
    test: Test
    alpha: float
    """Level of the e-process started at the deploy: it fails at 1 / alpha."""
    alpha_detector: float
    """Level of the e-detector (0: none); it fails at horizon / alpha_detector."""
    null: str
    """The hypothesis it tests, for humans: `error_rate <= 0.0146 (baseline 0.0101 +20%)`."""
    claim: str
    """What a failure asserts about the metric: `> 0.0146 (baseline 0.0101 +20%)`."""
    alpha_final: float = 0.0
    """Level of the look at the whole window at its last round (0: none): a relative test
    on counts or samples, or an absolute bound on a proportion or a distribution, in a
    window whose length is known (`FINAL_SHARE`, `finish`)."""
    alpha_midway: float = 0.0
    """Level of the same look at the window's midpoint (0: none): a relative count bound's
    (`MIDWAY_SHARE`, `SequentialRule._look_midway`)."""
    level: float = 0.5
    """The null's largest acceptable mean of the round statistic (share of bad events, mean
    placement, value)."""
    flip: bool = False
    """The bad side is low (decrease direction, `min` bounds)."""
    cutoff: float = 0.0
    """Exceedance: samples past it are bad events."""
    scale: float = 1.0
    """Rank: samples are divided by it (the tolerance) before being placed in the baseline."""
    baseline_bound: float | None = None
    """The baseline's confidence limit (rate or quantile) the relative bound was built on."""
    ladder: tuple[tuple[float, float, float], ...] = ()
    """A relative bound tested against a baseline that is itself an estimate: per interval
    between two confidence limits of the baseline's figure (rate, quantile, or the empirical
    distribution's error), (the null's level, its cutoff, log of the baseline's e-value on
    that interval), the level and cutoff taken at the interval's far end. Its e-process is
    the least over intervals of the baseline e-value times the new samples' e-process."""
    conformal: bool = False
    """Rank and exceedance against raw baseline samples: the round's samples are placed
    among the baseline and the window's earlier samples (`agent.analysis.conformal`)."""

    # worked out once from the fields above (every test reads them every round)
    bets: str = field(init=False, repr=False, compare=False)
    log_threshold: float = field(init=False, repr=False, compare=False)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.test == "proportion" and self.ladder:
            bets = "two_sample"  # the two-sample count test's own bets (`stats.TWO_SAMPLE_BETS`)
        elif self.test in ("periods", "latency_periods"):
            bets = "period_ranks"
        elif self.test == "exceedance" and self.conformal:
            bets = "conformal_exceedance"  # aimed stakes first (`EXCEEDANCE_MULTIPLES`)
        else:
            bets = _BETS_OF.get(self.test, "value")
        object.__setattr__(self, "bets", bets)
        object.__setattr__(self, "log_threshold", math.log(1.0 / self.alpha))
        object.__setattr__(self, "key", f"{self.bound}:{self.test}")

    def detector_log_threshold(self, horizon: int) -> float:
        return math.log(max(horizon, 1) / self.alpha_detector) if self.alpha_detector else math.inf


_BETS_OF = {"proportion": "count", "exceedance": "count", "rank": "conformal_rank"}

AGED_DETECTORS: dict[Test, int] = {
    "periods": period_ranks.DETECTOR_ROUNDS,
    "latency_periods": period_ranks.DETECTOR_ROUNDS,
}
"""Tests whose e-detector's martingales bet by their age, so each keeps its own wealth
(`SequentialRule._bet_aged`, `stats.sr_window`), and how many each keeps: a rank test's
bet on a round is "within the top `age`" of the points ranked so far."""
AGED_DETECTOR_BETS: dict[Test, str] = {"periods": "period_ranks_detector"}
"""Tests whose e-detector mixes its bets by weights of its own, not the test's from the
deploy (`period_ranks.DETECTOR_WEIGHTS`)."""


class Breaching(NamedTuple):
    """A test past its warning bar (`SequentialRule.breaching`): its e-process from the
    deploy's log e-value now, and the bar's."""

    comp: Component
    log_e: float
    log_warn: float


class RunEvidence(NamedTuple):
    """One run of a test as its verdict shows it: its peak log e-value, the log threshold
    it must reach, and whether it is the e-detector's (a regression begun at any round) or
    the e-process's from the deploy. Which run it is travels with it: the words once told
    them apart by comparing `log_needed` with the detector's threshold, a float compare."""

    log_e: float
    log_needed: float
    detector: bool


@dataclass(frozen=True, slots=True)
class PassTest:
    """The evidence that a bound holds: a confidence sequence for the mean of a round
    statistic lies on the good side of `limit`."""

    bound: Bound
    statistic: Literal["rate", "share", "value"]
    limit: float
    upper: bool
    """True: pass when the sequence's upper end is at most `limit`; False: lower end at least."""
    alpha: float
    cutoff: float = 0.0
    """Share: samples past it (above; below when `below`) are counted."""
    below: bool = False
    text: str = ""
    """What the limit is, for humans: `max 2%`, `p95 share above 412ms`."""
    counted_from: str = ""
    """A relative bound's nearer limit passing is shown against, not the bound `text` names
    (the one its failing test uses): the baseline's percentile or rate at its least (most,
    for a decrease) on its samples or counts, as `123ms (+10% of 112ms, ...)`; empty when
    both figures read the same."""
    dispersion: float = 0.0
    """Within-period correlation (rho) of the statistic's events (errors, samples past the
    cutoff) across the baseline's periods: the floor's design effect
    (`SequentialRule._design_effect`); 0 when nothing measured it."""
    outage: float | None = None
    """The baseline's share of errors when it looks taken while the service was down (a
    checks rule's background probes, a provider's previous release: `describe.outage_share`),
    for an absolute bound on its rate: its burstiness, then, is the outage's (whole runs
    failed beside runs that passed: rho near 1), not the release's, and is not read
    (`dispersion` 0); the verdict says so. None otherwise."""

    @property
    def key(self) -> str:
        return f"{self.bound}:{self.statistic}"


class SequentialRule:
    """A rule's always-valid tests, compiled against its baseline for one window."""

    def __init__(
        self,
        rule: Rule,
        baseline: BaselineData | None,
        kind: Kind,
        alpha: float,
        *,
        horizon: int = 0,
        pass_alpha: float | None = None,
    ) -> None:
        self.rule = rule
        self.baseline = baseline
        self.kind: Kind = kind
        self.alpha = alpha
        self._pass_alpha = pass_alpha
        self.horizon = max(0, horizon)
        self.t_opt = self.horizon / 2 if self.horizon > 1 else DEFAULT_T_OPT
        """Rounds after which the pass side's confidence sequence is tightest."""
        self.quantile = quantile_of(rule.metric) or 0.5
        plan = self._planned()
        made = [(p, self._component(p, alpha / len(plan))) for p in plan]
        self._period_ranks: PeriodRanks | None = None
        """The baseline's periods as scores, when a relative count bound ranks its rounds
        among them (`_with_period_ranks`)."""
        untested = kind == "proportion" and any(p == "relative" and c is None for p, c in made)
        self._latency_ranks: LatencyPeriodRanks | None = None
        """The baseline's periods as latency scores, when a relative latency bound ranks its
        rounds among them (`_with_latency_ranks`)."""
        self._correlation_levels: dict[Test, float] = {}
        """The level of each conformal test's upper limit of its within-round correlation,
        charged to its share (`_charge_correlation`)."""
        self.components: tuple[Component, ...] = self._charge_correlation(
            self._with_latency_ranks(
                self._with_period_ranks(
                    [c for _, c in made if c is not None], alpha / len(plan) if untested else 0.0
                )
            )
        )
        self._conformal_scale = next((c.scale for c in self.components if c.conformal), 0.0)
        """The tolerance's scale of the rule's conformal tests (0: none)."""
        self._base_size = int(np.isfinite(baseline.sorted_values).sum()) if baseline else 0
        """The baseline's samples: the conformal reference the rank test starts from."""
        rank = next((c for c in self.components if c.test == "rank"), None)
        self._rank_rho = (
            rank_bets.placement_correlation(
                baseline.sorted_values, baseline.period_of, self._correlation_levels["rank"]
            )
            if rank is not None and baseline is not None and "rank" in self._correlation_levels
            else None
        )
        """The rank test's within-round correlation of placements, measured across the
        baseline's periods at an upper limit (`rank_bets`); None: its periods measure
        nothing, and its bets are linear only."""
        exceed = next((c for c in self.components if c.test == "exceedance" and c.conformal), None)
        self._exceedance_rho = (
            exceedance_bets.exceedance_correlation(
                baseline.sorted_values,
                baseline.period_of,
                exceed.level,
                self._correlation_levels["exceedance"],
                below=exceed.flip,
            )
            if exceed is not None
            and baseline is not None
            and "exceedance" in self._correlation_levels
            else None
        )
        """The conformal exceedance test's within-round correlation of samples past the
        baseline's quantile, measured across its periods at an upper limit
        (`exceedance_bets`); None: its periods measure nothing."""
        self.cannot_fail = untested and not any(c.test == "periods" for c in self.components)
        """A relative count bound with no test: its baseline's rate is too uncertain (too few
        errors in too few periods, or bursts) for any count to exceed the bound built on it,
        and its periods too few to rank its rounds among (`_with_period_ranks`)."""
        bounds = self._bounds()
        # Passing is an intersection-union test (Berger 1982): the window passes only when
        # every bound of every rule shows its evidence, so a deploy that breaks any one bound
        # passes only if that bound's own sequence errs. Each takes the whole budget; the
        # union bound that splits `alpha` among rules and tests is the failing side's.
        whole = alpha if pass_alpha is None else pass_alpha
        self.passes: tuple[PassTest, ...] = tuple(
            self._bursty(t) for t in (self._pass_test(b, whole) for b in bounds) if t is not None
        )
        self.unpassable = len(self.passes) < len(bounds)
        """A bound has no test of its evidence (no baseline to compare with, say)."""
        self._ladders: dict[str, _Ladder] = {}
        """Each ladder's columns as arrays (`_ladder_of`)."""
        self._events_base: dict[str, float] = {}
        """`_baseline_events` by pass test, worked out once."""
        self._held: dict[str, tuple[list[Any], list[Any] | None, FloatArray] | None] = {}
        """A ladder's last wealth and e-detector lists with their array (`_bet_ladder`)."""
        self._factors: dict[tuple[str, float, float], FloatArray] = {}
        """A ladder's log factors by the round's samples and bad events (`_ladder_factors`)."""
        self._last_values: tuple[float, ...] | None = None
        self._last_finite: FloatArray = _EMPTY
        self._ranker: Ranker | None = None
        """The baseline on the conformal grid (`_conformal_ranks`), made once per window."""
        self._logs: dict[bool, FloatArray] = {}
        """`_oriented_logs` by direction."""
        self._detectable: dict[float, Detectable | None] = {}
        """`detectable` by samples per round: a search over the baseline, the same answer
        every round while the traffic per round holds (it usually does), so done once."""
        self._inputs_key: tuple[Any, ...] | None = None
        """`_inputs`, made once."""
        self._placed: dict[tuple[str, float], float] = {}
        """The rank test's mean placement of the baseline moved by a scale (`_mean_placement`):
        the look's search and the e-process's try the same scales (2, 4, 8 first, then the
        halvings between), at every traffic."""
        self._exceeding: dict[tuple[str, float, int, float], FloatArray] = {}
        """`_exceedance_rounds` by test, traffic, rounds and scale, while one `_easiest`
        search runs: its look and its e-process bisect the same bracket, so the second reads
        the first's paths (half the calls). Emptied when the search ends: no other search
        reads them (each answer is kept, `_detectable`), and a path is a float a round of
        the window: kept, they held 9 x 28.8 KB a rule of a one-hour window at 1 s after its
        first worded verdict."""

    # -- construction ---------------------------------------------------------------------

    def _bounds(self) -> list[Bound]:
        rule = self.rule
        out: list[Bound] = []
        if rule.max_increase is not None:
            out.append("max_increase")
        if rule.max is not None:
            out.append("max")
        if rule.min is not None:
            out.append("min")
        return out

    def _planned(self) -> list[str]:
        rule, base = self.rule, self.baseline
        plan: list[str] = []
        if rule.max_increase is not None and base is not None:
            if self.kind == "distribution" and base.sorted_values.size:
                plan += ["rank", "exceedance"]
            elif self.kind != "value" or rule.direction == "increase" or _is_share(rule):
                plan.append("relative")
        if rule.max is not None:
            plan.append("max")
        if rule.min is not None and (self.kind != "value" or _is_share(rule)):
            plan.append("min")
        return plan

    def _split(self, share: float, relative: bool) -> tuple[float, float]:
        """(alpha from the deploy, alpha of the e-detector) out of a test's share."""
        seq = share * (1 - BASELINE_SHARE) if relative else share
        return (seq / 2, seq / 2) if self.horizon > SHORT_WINDOW_ROUNDS else (seq, 0.0)

    def _split_distribution(self, share: float, test: Test) -> tuple[float, float, float]:
        """A rank or exceedance test's (alpha from the deploy, alpha of the e-detector, alpha
        of the look at the window's end): `FINAL_SHARE` for the look, then of the rest
        `RANK_DETECTOR_SHARE` or `ONSET_RATIO` for the detector. Their placements are
        conformal (`agent.analysis.conformal`): nothing is spent on the baseline."""
        if self.horizon <= 1:
            return share, 0.0, 0.0
        final = share * FINAL_SHARE
        if self.horizon <= SHORT_WINDOW_ROUNDS:
            # no detector (no rounds around an onset), but the look stays: capped at
            # `rank_bets.EPISODE_ROUNDS`, the e-process cannot fail in so few rounds
            return share - final, 0.0, final
        detector = share * (RANK_DETECTOR_SHARE if test == "rank" else self._onset_share(share))
        kept = 1.0 - FINAL_SHARE
        return (share - detector) * kept, detector * kept, final

    def _onset_share(self, alpha: float) -> float:
        """`ONSET_RATIO`: the e-detector fails at log(horizon / (d alpha)), the e-process
        from the deploy, for the large shifts both catch, at log(1 / ((1 - d) alpha)) plus
        what its count bets' part costs (`EXCEEDANCE_AIMED_WEIGHT`: the rest is the aimed
        bets', for slow regressions) and their mixture's overhead (`MIXTURE_OVERHEAD / 2`:
        it mixes all its bets, the detector its largest)."""
        count_part = 1.0 - EXCEEDANCE_AIMED_WEIGHT
        for step in range(1, 20):
            d = step / 20
            detector = math.log(self.horizon / (d * alpha))
            start = math.log(1.0 / ((1.0 - d) * alpha * count_part)) + MIXTURE_OVERHEAD / 2
            if detector <= ONSET_RATIO * start:
                return d
        return 0.95

    def _fmt(self, value: float) -> str:
        return format_value(self.rule.metric, value)

    def _share(self, value: float) -> str:
        """A share the rule can detect, in % for a rate as free text shows its values and
        bound (`error_rate 9.18% or more` beside `max 5%`; it said `0.0918`), to the three
        significant digits it had."""
        return (
            units.judged_rate(self.rule.metric, value)
            if units.is_rate(self.rule.metric)
            else f"{value:.3g}"
        )

    def _level_is_a_share(self) -> bool:
        """Whether a test's level is a share (at 1 or more nothing is past it), as for a
        proportion or a rate; a bare value's is its bound, of any scale: the value test
        bets on value / bound. It was held to below 1 as a share, so a p95 of 3 s against
        `max: 2s` (or a query's `max: 100`) had no test and never failed."""
        return self.kind == "proportion" or _is_share(self.rule)

    def _component(self, plan: str, share: float) -> Component | None:
        """One planned test with its `share` of the rule's alpha; None if it cannot reject."""
        rule, base, metric, q = self.rule, self.baseline, self.rule.metric, self.quantile
        up = rule.direction == "increase"
        if plan in ("max", "min"):
            is_max = plan == "max"
            which: Bound = "max" if is_max else "min"
            bound = rule.max if is_max else rule.min
            assert bound is not None
            a, d = self._split(share, False)
            final = 0.0
            if d and self.kind in ("proportion", "distribution"):
                # a look at the window's end, as the relative tests' (`FINAL_SHARE`): union
                # bound share (1 - final) + share x final
                final = share * FINAL_SHARE
                a, d = a * (1.0 - FINAL_SHARE), d * (1.0 - FINAL_SHARE)
            null = f"{metric} {'<=' if is_max else '>='} {self._fmt(bound)}"
            claim = f"{'>' if is_max else '<'} {which} {self._fmt(bound)}"
            if self.kind == "distribution":
                level = 1.0 - q if is_max else q
                test: Test = "exceedance"
                return Component(
                    which,
                    test,
                    a,
                    d,
                    null,
                    claim,
                    alpha_final=final,
                    level=level,
                    flip=not is_max,
                    cutoff=bound,
                )
            level = bound if is_max else 1.0 - bound
            if self.kind == "value" and not is_max and not _is_share(rule):
                return None
            test = "proportion" if self.kind == "proportion" else "value"
            if level == 0.0 and (
                self.kind == "proportion" or _is_share(rule) or (is_max and never_negative(metric))
            ):
                # a rate's `max: 0` (`min: 1`), a count's or a duration's `max: 0`: no bad
                # event (a value above 0: none is below it) can happen under the null
                # (`_refuted`), so the first one fails the rule, and no detector is needed;
                # a value of either sign (a delta's) has no such test
                return Component(which, test, share, 0.0, null, claim, level=0.0, flip=not is_max)
            if level <= 0.0 or (level >= 1.0 and self._level_is_a_share()):
                return None
            return Component(
                which, test, a, d, null, claim, alpha_final=final, level=level, flip=not is_max
            )
        assert base is not None and rule.max_increase is not None
        delta = rule.max_increase
        change = f"{'+' if up else '-'}{format_percent(delta)}"
        sign, past = ("<=", ">") if up else (">=", "<")
        a, d = self._split(share, True)
        b_alpha = share * BASELINE_SHARE
        if plan == "rank":
            if not up and delta >= 1.0:
                return None
            a, d, final = self._split_distribution(share, "rank")
            return Component(
                "max_increase",
                "rank",
                a,
                d,
                f"{metric} distribution within baseline {change}",
                # the test is of the whole distribution, not of the percentile shown
                # before it: "112ms above baseline 102ms +50%" read as false arithmetic
                f"(baseline {self._fmt(base.value)}): its latencies run "
                f"{'slower' if up else 'faster'} than the baseline's {change} "
                "(compared latency by latency)",
                alpha_final=final,
                level=0.5,
                flip=not up,
                scale=1.0 + delta if up else 1.0 - delta,
                conformal=True,
            )
        if plan == "exceedance":
            if not up and delta >= 1.0:  # as the rank test: a bound of 0, nothing below it
                return None
            a, d, final = self._split_distribution(share, "exceedance")
            scale = 1.0 + delta if up else 1.0 - delta
            rest = f"{self._fmt(base.value * scale)} (baseline {self._fmt(base.value)} {change})"
            return Component(
                "max_increase",
                "exceedance",
                a,
                d,
                f"{metric} {sign} {rest}",
                f"{past} {rest}",
                alpha_final=final,
                level=(1.0 - q) if up else q,
                flip=not up,
                cutoff=base.value * scale,
                scale=scale,
                conformal=True,
            )
        if self.kind == "distribution":
            # a bare baseline value (a provider's percentile): taken at face value
            a, d = self._split(share, False)
            limit = base.value * (1.0 + delta) if up else base.value * (1.0 - delta)
            rest = f"{self._fmt(limit)} (baseline {self._fmt(base.value)} {change})"
            return Component(
                "max_increase",
                "exceedance",
                a,
                d,
                f"{metric} {sign} {rest}",
                f"{past} {rest}",
                level=(1.0 - q) if up else q,
                flip=not up,
                cutoff=limit,
            )
        if base.has_counts and self.kind == "proportion":
            return self._two_sample(share, change)
        if base.has_counts:
            rate = base.rate_limit(b_alpha, upper=up)
            baseline_bound: float | None = rate
        else:
            # a bare baseline value (one provider figure): taken at face value
            a, d = self._split(share, False)
            rate, baseline_bound = base.value, None
        mean = rate * (1.0 + delta) if up else rate * (1.0 - delta)
        if baseline_bound is None:
            mean = _bare_floor(metric, rate, mean, up)
        level = mean if up else 1.0 - mean
        rest = f"{mean:.3g} (baseline {base.value:.3g} {change})"
        test = "proportion" if self.kind == "proportion" else "value"
        if level == 0.0 and up and self.kind == "value" and never_negative(metric):
            # a count's bound over a baseline of 0 (its floor is 0) is its `max: 0`: the
            # first count above 0 fails it (`_refuted`); it had no test
            null, claim = f"{metric} {sign} {rest}", f"{past} {rest}"
            return Component("max_increase", test, share, 0.0, null, claim, level=0.0)
        if level <= 0.0 or (level >= 1.0 and self._level_is_a_share()):
            return None
        return Component(
            "max_increase",
            test,
            a,
            d,
            f"{metric} {sign} {rest}",
            f"{past} {rest}",
            level=level,
            flip=not up,
            baseline_bound=baseline_bound,
        )

    def _ladder(
        self, share: float, limit: Callable[[float], float | None]
    ) -> list[tuple[float, float, float]] | None:
        """The baseline's figure as an estimate: its confidence limits at the levels of
        `BASELINE_LADDER` down to the tail share, as (limit at the interval's far end, 0,
        log of the baseline's e-value on the interval). None when the far limit is unknown.

        For each value v of the baseline's figure, e_base(v) = sum_i w_i 1{v past the
        limit at beta_i} / beta_i (mean <= 1 at the true value, monotone in v) times the new
        samples' e-process against v (monotone the other way) is an e-process; its least
        value over v is bounded below, on each interval between two limits, by e_base at
        the near end times the new e-process at the far end. Past the far limit (a
        `COUNT_TAIL_SHARE` of the alpha) the test spends that share instead. Union bound:
        share (1 - tail) + share x tail.
        """
        tail = share * COUNT_TAIL_SHARE
        betas = [b for b in BASELINE_LADDER if b > tail]
        limits = [limit(b) for b in [*betas[1:], tail]]
        if any(v is None for v in limits):
            return None
        rest = (1.0 - FIRST_RUNG_WEIGHT) / max(1, len(betas) - 1)
        weights = [FIRST_RUNG_WEIGHT if k == 0 else rest for k in range(len(betas))]
        log_e = np.log(np.cumsum([w / b for w, b in zip(weights, betas, strict=True)]))
        return [(float(v), 0.0, float(log_e[k])) for k, v in enumerate(limits) if v is not None]

    def _charge_correlation(self, components: tuple[Component, ...]) -> tuple[Component, ...]:
        """The conformal rank and exceedance tests with `CORRELATION_SHARE` of their levels
        from the deploy and of their e-detectors set aside for the upper limit of the
        within-round correlation their tilted bets read from the baseline's periods
        (`rank_bets.placement_correlation`, `exceedance_bets.exceedance_correlation`), when
        the periods measure one: those bets are e-values only where the true correlation
        is within the limit, so the limit's level is charged to the test. Union bound:
        (alpha + alpha_detector) (1 - share) + the limit's level, share (alpha +
        alpha_detector), + the look at the window's end (which reads no limit) is the
        test's share."""
        base = self.baseline
        if base is None or stats.period_shape(base.period_of, base.sorted_values.size) is None:
            return components
        out = []
        for c in components:
            if c.conformal and c.test in ("rank", "exceedance"):
                self._correlation_levels[c.test] = CORRELATION_SHARE * (c.alpha + c.alpha_detector)
                kept = 1.0 - CORRELATION_SHARE
                c = replace(c, alpha=c.alpha * kept, alpha_detector=c.alpha_detector * kept)
            out.append(c)
        return tuple(out)

    def _with_period_ranks(
        self, components: list[Component], untested: float
    ) -> tuple[Component, ...]:
        """The tests, with an increase's two-sample count test followed by a test of its
        rounds' ranks among the baseline's periods (`agent.analysis.period_ranks`) when
        the baseline kept enough of them to catch a large regression in two rounds
        (`period_ranks.ROUNDS_TO_CATCH`): `PERIOD_RANKS_SHARE` of the two-sample
        e-process's level from the deploy is its, and `PERIOD_RANKS_DETECTOR_SHARE` its
        e-detector's when the window's length is known and that share is worth it
        (`PERIOD_RANKS_DETECTOR_ROUNDS`). Union bound: the levels add up to the one they
        split. A relative count bound whose two-sample test could not be built
        (`untested`, its share: a baseline's rate so uncertain that its limit at the tail
        share, times 1 + delta, reaches 1, as bursty periods make it) has the ranks test
        alone at that whole share, if its rounds can reach the threshold within the window
        (`_lone_period_ranks`): the share has no other use, and no e-detector."""
        base, delta = self.baseline, self.rule.max_increase
        if base is None or delta is None:
            return tuple(components)
        at = next(
            (k for k, c in enumerate(components) if c.ladder and c.test == "proportion"), None
        )
        if at is None:
            lone = self._lone_period_ranks(base, delta, untested) if untested else None
            return tuple(components) if lone is None else (*components, lone)
        if components[at].flip:
            return tuple(components)
        ranks = PeriodRanks.of(base.period_counts, delta)
        ladder = components[at]
        share = ladder.alpha * PERIOD_RANKS_SHARE
        if ranks is None or not ranks.catches_in(
            period_ranks.ROUNDS_TO_CATCH, math.log(1.0 / share)
        ):
            return tuple(components)
        self._period_ranks = ranks
        detector = ladder.alpha * PERIOD_RANKS_DETECTOR_SHARE if ladder.alpha_detector else 0.0
        if detector and not ranks.catches_in(
            PERIOD_RANKS_DETECTOR_ROUNDS, math.log(self.horizon / detector)
        ):
            detector = 0.0
        ranked = Component(
            "max_increase",
            "periods",
            share,
            detector,
            ladder.null,
            ladder.claim,
            level=ladder.level,
            baseline_bound=ladder.baseline_bound,
        )
        components[at] = replace(ladder, alpha=ladder.alpha - share - detector)
        components.insert(at + 1, ranked)
        return tuple(components)

    def _lone_period_ranks(
        self, base: BaselineData, delta: float, share: float
    ) -> Component | None:
        """The ranks test as a relative count bound's only failing test, at its whole
        `share`, from the deploy (no e-detector, no look at the window's end: its bets are
        on the first rounds ranking above every period); None for a decrease, with fewer
        than `period_ranks.MIN_PERIODS` periods, or when rounds above every period would
        not reach its threshold within the window (`period_ranks.rounds_to_catch`). With 20
        periods (a new agent's 10 minutes of background runs) it needs two such rounds at
        the share of one rule at confidence 0.99, three at four rules'."""
        if self.rule.direction != "increase":
            return None
        ranks = PeriodRanks.of(base.period_counts, delta)
        window = self.horizon if self.horizon > 1 else int(2 * DEFAULT_T_OPT)
        if ranks is None or ranks.rounds_to_catch(math.log(1.0 / share)) > window:
            return None
        self._period_ranks = ranks
        mean = base.value * (1.0 + delta)
        rest = f"{mean:.3g} (baseline {base.value:.3g} +{format_percent(delta)})"
        return Component(
            "max_increase",
            "periods",
            share,
            0.0,
            f"{self.rule.metric} <= {rest}",
            f"> {rest}",
            level=min(max(mean, 1e-9), 1.0 - 1e-9),
        )

    def _with_latency_ranks(self, components: tuple[Component, ...]) -> tuple[Component, ...]:
        """The tests, with an increase's rank and exceedance tests followed by a test of
        its rounds' latencies ranked among the baseline's periods
        (`agent.analysis.latency_period_ranks`) when the baseline kept enough periods of
        enough latencies to catch a large slowdown in two rounds
        (`period_ranks.ROUNDS_TO_CATCH`): `LATENCY_PERIOD_RANKS_SHARE` of each one's
        e-process from the deploy is its (not of their e-detectors' or looks'), and
        `LATENCY_PERIOD_RANKS_DETECTOR_SHARE` its e-detector's when the window's length is
        known and that share is worth it (`PERIOD_RANKS_DETECTOR_ROUNDS`, as the error
        test's). Union bound: the four levels add up to the two they split."""
        base, delta = self.baseline, self.rule.max_increase
        tests = [
            k
            for k, c in enumerate(components)
            if c.conformal and c.bound == "max_increase" and not c.flip
        ]
        if len(tests) != 2 or base is None or delta is None:
            return components
        ranks = LatencyPeriodRanks.of(base.sorted_values, base.period_of, self.quantile, delta)
        pooled = sum(components[k].alpha for k in tests)
        share = pooled * LATENCY_PERIOD_RANKS_SHARE
        if ranks is None or not ranks.ranks.catches_in(
            period_ranks.ROUNDS_TO_CATCH, math.log(1.0 / share)
        ):
            return components
        self._latency_ranks = ranks
        detector = pooled * LATENCY_PERIOD_RANKS_DETECTOR_SHARE
        if not all(components[k].alpha_detector for k in tests) or not ranks.ranks.catches_in(
            PERIOD_RANKS_DETECTOR_ROUNDS, math.log(self.horizon / detector)
        ):
            detector = 0.0
        kept = 1.0 - (share + detector) / pooled
        out = list(components)
        for k in tests:
            out[k] = replace(out[k], alpha=out[k].alpha * kept)
        exceed = out[tests[-1]]
        ranked = Component(
            "max_increase",
            "latency_periods",
            share,
            detector,
            exceed.null,
            exceed.claim,
            level=exceed.level,
        )
        out.insert(tests[-1] + 1, ranked)
        return tuple(out)

    def _two_sample(self, share: float, change: str) -> Component | None:
        """The relative count bound as a two-sample test: the baseline's rate p is unknown.
        A ladder (`_count_ladder`) over the baseline rate's confidence limits (upper for an
        increase, lower for a decrease: the side where the null is widest).

        Validity (increase; the decrease is its mirror on the complement). H0: every round's
        rate, given the past, is at most (1 + delta) p. Let L(beta) be the baseline rate's
        limit at level beta, L(1) = -inf, over the ladder's levels beta_0 = 1 > beta_1 >
        ... > beta_K > beta_{K+1} = tail, and e_base(v) = sum_{i<=K} w_i 1{v > L(beta_i)} /
        beta_i with sum w_i = 1. Each limit holds, P(p > L(beta)) <= beta, so
        E[e_base(p)] <= 1 (`burst_limit`: the periods are the units, their measured burstiness
        corrected for how few they are; with too few events to measure it, each period counts once;
        bursts the periods show read as a negative binomial's). For a fixed v the new side's wealth
        W_t(v), one bet per round on count / (n (1 + delta) v), is a nonnegative supermartingale
        under H0 if v >= p, however the requests of a round are correlated (only the round's mean
        enters: `stats`), and is non-increasing in v. The baseline is measured before the deploy, so
        it is independent of the new side's bets. On {p <= L(tail)}, p lies in some (L(beta_k),
        L(beta_{k+1})], where e_base(p) >= sum_{i<=k} w_i / beta_i =: E_k and W_t(p) >=
        W_t(L(beta_{k+1})): the test's statistic min_k E_k W_t(L(beta_{k+1})) is at most e_base(p)
        W_t(p), a supermartingale given the baseline with mean at most E[e_base(p)] <= 1; by Ville's
        inequality it ever reaches 1 / a with probability at most a. Adding P(p > L(tail)) <= tail:
        the bound's share. The e-detector is the same argument with Shiryaev-Roberts sums (threshold
        horizon / a_d). The fixed-horizon test at the window's last round (`FINAL_SHARE`, `finish`)
        adds its level: share (1 - tail - final) + share x tail + share x final."""
        base, rule = self.baseline, self.rule
        assert base is not None and rule.max_increase is not None
        delta = rule.max_increase
        up = rule.direction == "increase"
        ladder = _count_ladder(share, lambda beta: base.burst_limit(beta, upper=up))
        # the null's share of bad events: (1 + delta) p for an increase; for a decrease the
        # bad events are the complement, 1 - (1 - delta) p
        levels = [
            min(p * (1.0 + delta), 1.0) if up else 1.0 - p * (1.0 - delta) for p, _, _ in ladder
        ]
        if min(levels) <= 0.0 or max(levels) >= 1.0:
            return None
        a, d = self._split(share, False)
        final = FINAL_SHARE if d and up else 0.0
        if d:
            a, d = (a + d) * COUNT_START_SHARE, (a + d) * (1.0 - COUNT_START_SHARE)
        kept = 1.0 - COUNT_TAIL_SHARE - final
        a, d, final = a * kept, d * kept, share * final
        midway = a * MIDWAY_SHARE if final and self.horizon >= 4 else 0.0
        a -= midway
        mean = base.value * (1.0 + delta) if up else base.value * (1.0 - delta)
        sign, past = ("<=", ">") if up else (">=", "<")
        rest = f"{mean:.3g} (baseline {base.value:.3g} {change})"
        return Component(
            "max_increase",
            "proportion",
            a,
            d,
            f"{rule.metric} {sign} {rest}",
            f"{past} {rest}",
            alpha_final=final,
            alpha_midway=midway,
            level=min(max(mean if up else 1.0 - mean, 1e-9), 1.0 - 1e-9),
            flip=not up,
            baseline_bound=ladder[-1][0],
            ladder=tuple(
                (level, 0.0, log_e) for level, (_, _, log_e) in zip(levels, ladder, strict=True)
            ),
        )

    def _pass_test(self, bound: Bound, share: float) -> PassTest | None:
        """The evidence a bound holds, or None when nothing could show it (no baseline)."""
        rule, base, q = self.rule, self.baseline, self.quantile
        up = rule.direction == "increase"
        if bound in ("max", "min"):
            value = rule.max if bound == "max" else rule.min
            assert value is not None
            is_max = bound == "max"
            text = f"{bound} {self._fmt(value)}"
            if self.kind == "distribution":
                # p_q <= max  <=>  P(X > max) <= 1 - q;  p_q >= min  <=>  P(X < min) <= q
                return PassTest(
                    bound,
                    "share",
                    (1.0 - q) if is_max else q,
                    True,
                    share,
                    cutoff=value,
                    below=not is_max,
                    text=text,
                )
            statistic: Literal["rate", "value"] = "rate" if self.kind == "proportion" else "value"
            return PassTest(bound, statistic, value, is_max, share, text=text)
        assert rule.max_increase is not None
        if base is None:
            return None
        delta = rule.max_increase
        a = share * (1 - BASELINE_SHARE)
        b_alpha = share * BASELINE_SHARE
        change = f"{'+' if up else '-'}{format_percent(delta)}"
        if self.kind == "distribution":
            sv = base.sorted_values
            if sv.size:
                bq = (
                    stats.quantile_lower_bound(sv, q, b_alpha)
                    if up
                    else stats.quantile_upper_bound(sv, q, b_alpha)
                )
                if bq is None:
                    return None
            else:
                bq, a = base.value, share
            cutoff = bq * (1.0 + delta) if up else bq * (1.0 - delta)
            # one bound, the one the failing test and its null name (the baseline's figure
            # +delta): "limit 83ms" beside "null: <=92ms" read as two limits of one rule
            rule_bound = base.value * (1.0 + delta) if up else base.value * (1.0 - delta)
            text = f"{self._fmt(rule_bound)} (baseline {self._fmt(base.value)} {change})"
            counted_from = ""
            if self._fmt(cutoff) != self._fmt(rule_bound):
                # passing needs the baseline's quantile at its least (most, for a decrease)
                # on its samples, so it counts from a nearer cutoff; said as such, with its
                # arithmetic ("41ms (baseline 25ms +100%)" read as false arithmetic)
                counted_from = (
                    f"{self._fmt(cutoff)} ({change} of {self._fmt(bq)}, the"
                    f" {'least' if up else 'most'} the baseline's p{q * 100:g} may be on its"
                    f" {sv.size} samples)"
                )
            return PassTest(
                "max_increase",
                "share",
                (1.0 - q) if up else q,
                True,
                a,
                cutoff=cutoff,
                below=not up,
                text=text,
                counted_from=counted_from,
            )
        rule_bound = base.value * (1.0 + delta) if up else base.value * (1.0 - delta)
        if base.has_counts and self.kind == "proportion":
            rate = base.rate_limit(b_alpha, upper=not up)
            limit = rate * (1.0 + delta) if up else rate * (1.0 - delta)
        else:
            rate, a = base.value, share
            limit = rule_bound = _bare_floor(rule.metric, rate, rule_bound, up)
        statistic2: Literal["rate", "value"] = "rate" if self.kind == "proportion" else "value"
        # as for latencies: one bound, the failing test's; passing needs the baseline's rate
        # at its least (most, for a decrease) on its counts, a nearer limit said as such
        text = f"{rule_bound:.3g} (baseline {base.value:.3g} {change})"
        counted_from = ""
        if f"{limit:.3g}" != f"{rule_bound:.3g}":
            counted_from = (
                f"{limit:.3g} ({change} of {rate:.3g}, the {'least' if up else 'most'} the"
                " baseline's rate may be on its counts)"
            )
        return PassTest(
            "max_increase", statistic2, limit, up, a, text=text, counted_from=counted_from
        )

    @property
    def outage_baseline(self) -> float | None:
        """The baseline's share of errors when it looks taken while the service was down
        (probed between windows, or a provider's previous release: `describe.outage_share`),
        else None: an absolute bound on its rate is then judged on the release's own rounds,
        its pass side (`_bursty`) and what its look can detect (`_detectable_look`) alike; a
        `max_increase` still reads the baseline."""
        base = self.baseline
        if base is None or self.kind != "proportion":
            return None
        return outage_share(self.rule, base.count, base.total)

    def _bursty(self, test: PassTest) -> PassTest:
        """`test` with its events' burstiness across the baseline's periods (`dispersion`):
        a rate's as `merge` measured it, a share's from the periods' samples past its
        cutoff (`BaselineData.share_dispersion`). Not an absolute bound's rate over a
        baseline taken while the service was down (`PassTest.outage`): its rho near 1 is
        the outage's (whole runs failed beside whole runs passed), and widened a healthy
        release's upper end past its bound, 0.047 to 0.146 at 30 rounds of 12 probes
        against `max 0.05`, so it ended inconclusive for the old release's outage
        (`bench/outage_baseline_rho.py`: passed 0 of 300, 267 now, as over a calm
        baseline). Its floor is then the binomial one, the window's own spread read as
        always. Passing only: the failing side never reads the baseline's burstiness."""
        base = self.baseline
        if base is None or test.statistic == "value":
            return test
        if test.statistic == "rate":
            outage = self.outage_baseline
            if outage is not None and test.bound != "max_increase":
                return replace(test, outage=outage)  # the window's own spread alone
            rho = base.dispersion
        else:
            rho = base.share_dispersion(test.cutoff, below=test.below)
        return replace(test, dispersion=rho) if rho else test

    # -- the fold -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """The state before the first round (JSON-able)."""
        return {
            "tests": {
                c.key: {
                    "w": _grid(c, 0.0),
                    "sr": _grid(c, None),
                    "peak": 0.0,
                    "peak_d": None,
                    "crossed": None,
                }
                | ({"fin": [0.0] * stats.ROUND_SUMS, "final_p": None} if c.alpha_final else {})
                | ({"midway_p": None} if c.alpha_midway else {})
                | ({"seen": [[], []]} if c.test in ("periods", "latency_periods") else {})
                for c in self.components
            },
            "passes": {
                p.key: {"t": 0, "mean": 0.0, "m2": 0.0, "size": 0.0, "bad": 0.0}
                for p in self.passes
            },
            "samples": 0.0,
        } | ({"seen": [[], []]} if self._conformal_scale else {})

    def step(self, state: dict[str, Any], obs: Observation | None, index: int) -> None:
        """Fold round `index`'s observation (None or without data: nothing) into `state`."""
        if obs is None:
            return
        size = self._size(obs)
        if size <= 0:
            return
        state["samples"] += size
        if self._period_ranks is not None and state["samples"] == size:
            self._unranked(state, obs)
        eligible = state["samples"] >= max(1, self.rule.min_samples)
        ranks = self._conformal_ranks(state, obs) if self._conformal_scale else None
        for comp in self.components:
            if comp.level == 0.0:
                refuted = self._refuted(comp, obs)
                self._bet(state["tests"][comp.key], comp, 0.0, 0.0, index, eligible, refuted)
                continue
            if comp.test == "periods":
                self._bet_ranks(state["tests"][comp.key], comp, obs, index, eligible)
                continue
            if comp.test == "latency_periods":
                self._bet_latency_ranks(state["tests"][comp.key], comp, obs, index, eligible)
                continue
            if comp.ladder:
                st = state["tests"][comp.key]
                self._bet_ladder(st, comp, obs, index, eligible)
                if comp.alpha_final:
                    n = float(obs.total or 0)
                    bad = min(max(float(obs.count or 0), 0.0), n)
                    st["fin"] = stats.add_round_sums(st["fin"], bad, n)
                if comp.alpha_midway and index + 1 == self.horizon // 2 and eligible:
                    self._look_midway(st, comp, index)
                continue
            if comp.conformal:
                stat = self._conformal(comp, ranks) if ranks else None
            else:
                stat = self._statistic(comp, obs)
            if stat is None:
                continue
            y, weight = stat
            if comp.alpha_final:
                st = state["tests"][comp.key]
                # the round's score (placements, or samples past the quantile) and size
                n = weight if comp.test == "rank" else weight / comp.level
                score = y * comp.level * n if comp.test == "rank" else y * weight
                st["fin"] = stats.add_round_sums(st["fin"], score, n)
            log_f = None
            if comp.test == "rank":
                stake = self._aimed_stake(comp, state["samples"], index)
                log_f = rank_bets.log_factors(
                    y, weight, stake, self._rank_rho, RANK_MULTIPLES, comp.level
                )
            elif comp.conformal:  # exceedance: aimed bets, tilted ones, count bets
                log_f = self._exceedance_factors(comp, y, weight, state["samples"], index)
            elif comp.test == "proportion":  # from the count: y overflows at a tiny `max`
                log_f = stats.count_log_factors(comp.bets, self._bad(comp, obs), weight)
            if log_f is not None and comp.conformal:  # a slow episode's rounds: `rank_bets`
                log_f = rank_bets.episode_capped(log_f, comp.log_threshold)
            self._bet(state["tests"][comp.key], comp, y, weight, index, eligible, log_f)
        for test in self.passes:
            x = self._pass_statistic(test, obs)
            if x is not None:
                st = state["passes"][test.key]
                if st["t"] == 0 and test.statistic != "value":
                    st["w0"] = self._no_event_weight(test, size, self.horizon)
                _fold_pass(st, x, size)
                self._intersect(test, st)

    def _unranked(self, state: dict[str, Any], obs: Observation) -> None:
        """At the window's first round with data: a period-rank test beside a two-sample
        test whose rounds are less than half the smallest period (1 s rounds against 30 s
        periods, 30 s rounds against a provider's minute buckets) could never score one, so
        it is switched off and its levels (from the deploy and its e-detector's) go back to
        the two-sample e-process from the deploy, as a credit of log((a + given) / a) on its
        wealth: its e-value times that crosses 1 / a when its own crosses 1 / (a + given).
        Valid as the split is: the choice reads the round's requests alone, which the
        null's bets take as given (each bet's stake is sized by them), so given the traffic
        each test keeps its level and the levels add up to the share they split."""
        ranks = self._period_ranks
        if ranks is None or 2 * float(obs.total or 0) >= ranks.size:
            return
        ranked = next((c for c in self.components if c.test == "periods"), None)
        ladder = next((c for c in self.components if c.ladder and not c.flip), None)
        if ranked is None or ladder is None:
            return  # the ranks test alone (`_lone_period_ranks`): nothing to give it to
        state["tests"][ranked.key]["off"] = True
        credit = math.log((ladder.alpha + ranked.alpha + ranked.alpha_detector) / ladder.alpha)
        st = state["tests"][ladder.key]
        st["w"] = [[w + credit for w in row] for row in st["w"]]

    def _size(self, obs: Observation) -> float:
        if self.kind == "proportion":
            return float(obs.total or 0) if _has_counts(obs) else 0.0
        if self.kind == "distribution":
            if not self.components and not self.passes:  # no test reads them (no baseline)
                return float(len([v for v in obs.values if math.isfinite(v)]))
            return float(self._finite(obs.values).size)
        return 1.0 if obs.has_data else 0.0

    def _finite(self, values: tuple[float, ...]) -> FloatArray:
        """The finite samples of a round as an array: every test of the round reads them,
        so they are made once (the round's tuple is kept, so its identity is its value)."""
        if values is not self._last_values:
            self._last_values, self._last_finite = values, _finite(values)
        return self._last_finite

    @staticmethod
    def _bad(comp: Component, obs: Observation) -> float:
        """A proportion test's bad events in the round (its successes, for a `min`)."""
        n = float(obs.total or 0)
        count = min(max(float(obs.count or 0), 0.0), n)
        return n - count if comp.flip else count

    def _refuted(self, comp: Component, obs: Observation) -> list[float]:
        """The round's log factors of a rate's test against a level of 0 (`max: 0`, `min:
        1`): +inf with a bad event, else 0. Valid: under its null (a rate of 0, or of 1)
        no bad event ever happens, so the factor is 1 almost surely, and the e-process's
        mean stays 1. Its limit as the level falls to 0 is the likelihood ratio of one bad
        event, infinite (a tiny level's bets are sized per expected event, so they stay
        finite: `stats.count_log_factors`)."""
        if comp.test == "proportion":
            bad = self._bad(comp, obs) > 0.0
        else:
            assert obs.value is not None
            bad = (1.0 - obs.value if comp.flip else obs.value) > 0.0
        return [math.inf if bad else 0.0] * len(stats.BETS[comp.bets])

    def _statistic(self, comp: Component, obs: Observation) -> tuple[float, float] | None:
        """(y, weight) of one round: y's mean is at most 1 under the component's null."""
        if comp.test == "proportion":
            bad, expected = self._bad(comp, obs), float(obs.total or 0) * comp.level
            return bad / expected, expected
        if comp.test == "value":
            assert obs.value is not None
            v = 1.0 - obs.value if comp.flip else obs.value
            return max(v, 0.0) / comp.level, 1.0
        x = self._finite(obs.values)
        if not x.size:
            return None
        if comp.test == "exceedance":
            bad = float(np.count_nonzero(x < comp.cutoff if comp.flip else x > comp.cutoff))
            expected = x.size * comp.level
            return bad / expected, expected
        return None  # rank: `_conformal`

    def _conformal_ranks(self, state: dict[str, Any], obs: Observation) -> Ranks | None:
        """The round's samples' conformal ranks (`agent.analysis.conformal.Ranker.ranks`),
        shared by the rule's rank and exceedance tests (one tolerance, one histogram); the
        samples join the rule's histogram."""
        x = self._finite(obs.values)
        if not x.size:
            return None
        if self._ranker is None:
            assert self.baseline is not None
            self._ranker = Ranker(self.baseline.sorted_values, self._conformal_scale)
        ranks, state["seen"] = self._ranker.ranks(state["seen"], x.tolist())
        return ranks

    def _aimed_stake(self, comp: Component, samples: float, index: int) -> float:
        """A conformal test's aimed stake per sample in round `index` (the rank test's bets
        are `RANK_MULTIPLES` of it, the exceedance test's first `EXCEEDANCE_MULTIPLES`),
        with `samples` seen so far, this round's included.

        Sized for the smallest shift it could find by the window's end at the traffic so
        far: one sample's y (rank: its placement over the level, variance v = 1 / (12
        level^2); exceedance: whether it is past the quantile, over the level, v = (1 -
        level) / level) has variance v under the null; a bet of l per sample on a mean excess
        e grows by l e - l^2 v / 2 a sample, at most e^2 / (2 v) (at l = e / v), so over N
        samples it reaches T = threshold + `RANK_AIM` from e = sqrt(2 v T / N), at l = sqrt(2
        T / (v N)). N is the samples expected by the end, counted as N_eff = m N / (m + N) against a
        baseline of m: each sample's excess is the baseline's share of its conformal
        reference (`agent.analysis.conformal`), so a finite baseline stretches the shift
        that can be found, and the bet on it.

        Valid as the bets before it were (b x the round's size): the stake depends on the
        rounds before and on this round's count, never on its values, so under the null
        every bet's factor still has mean 1 given all it depends on."""
        horizon = self.horizon if self.horizon > 1 else 2 * DEFAULT_T_OPT
        expected = samples / (index + 1) * max(horizon, index + 1)
        base = self._base_size
        effective = base * expected / (base + expected) if base else expected
        if comp.test == "rank":
            variance = 1.0 / (12.0 * comp.level**2)
        else:
            variance = (1.0 - comp.level) / comp.level
        aim = comp.log_threshold + RANK_AIM
        return math.sqrt(2.0 * aim / (variance * max(effective, 1.0)))

    def _exceedance_factors(
        self, comp: Component, y: float, expected: float, samples: float, index: int
    ) -> list[float]:
        """Log factors of a conformal exceedance test's bets for one round: `EXCEEDANCE_
        MULTIPLES` of the aimed stake per sample (`_aimed_stake`; `expected` / level is the
        round's size), the tilted bets on the round's count (`exceedance_bets`: valid as far
        as the baseline's periods measured the round's dependence, each capped a round), then
        `stats.COUNT_BETS` per expected bad event. Valid as the rank test's: every stake is
        fixed by the rounds before and this round's size."""
        stake = self._aimed_stake(comp, samples, index) / comp.level
        aimed = stats.bet_log_factors("exceedance_aimed", y, stake * expected)
        tilted = exceedance_bets.log_factors(
            y, expected / comp.level, comp.level, self._exceedance_rho
        )
        return aimed + tilted + stats.bet_log_factors("count", y, expected)

    @staticmethod
    def _conformal(comp: Component, ranks: Ranks) -> tuple[float, float]:
        """(y, weight) of a conformal test's round. Rank: the mean placement (1 - it, for a
        decrease) over its level 1/2. Exceedance: the samples whose smoothed rank is past
        the quantile, each counted by the share of theta in [0, 1] that puts it there
        (uniform ranks: the share past q has mean 1 - q), over those the level allows.
        Each summed from a list in the round's order: the same float, bit for bit."""
        n = float(len(ranks.size))
        if comp.test == "exceedance":
            q = comp.level if comp.flip else 1.0 - comp.level
            below_q = sum(shares_past(q, ranks))
            expected = n * comp.level
            return (below_q if comp.flip else n - below_q) / expected, expected
        mean = sum(placements(ranks)) / n
        return (1.0 - mean if comp.flip else mean) / comp.level, n

    def _bet(
        self,
        st: dict[str, Any],
        comp: Component,
        y: float,
        weight: float,
        index: int,
        eligible: bool,
        log_f: list[float] | None = None,
    ) -> None:
        """One round's bets on y with stakes `weight` x each bet (`log_f`: their log factors,
        when the test computes them itself)."""
        if log_f is None:
            log_f = stats.bet_log_factors(comp.bets, y, weight)
        wealth = [w + f for w, f in zip(st["w"], log_f, strict=True)]
        st["w"] = wealth
        log_d: float | None = None
        if comp.alpha_detector:
            sr = _sr_step(st["sr"], log_f)
            # all finite (as usual: their sum is), it is its own JSON
            st["sr"] = sr if math.isfinite(sum(sr)) else _to_json(sr)
            # conformal tests' detectors mix their largest bets (`DETECTOR_BETS`), as ladders'
            mix = stats.log_mix_large if comp.conformal else stats.log_mix
            log_d = mix(sr, comp.bets)
        _record(st, comp, stats.log_mix(wealth, comp.bets), log_d, index, eligible, self)

    def _bet_ranks(
        self, st: dict[str, Any], comp: Component, obs: Observation, index: int, eligible: bool
    ) -> None:
        """A round's errors ranked among the baseline's periods and the rounds before it
        (`agent.analysis.period_ranks`); a round smaller than the periods is not ranked."""
        ranks = self._period_ranks
        assert ranks is not None
        if st.get("off"):
            return  # its rounds are too small to score (`_unranked`)
        score = ranks.score(index, int(obs.count or 0), int(obs.total or 0))
        self._bet_ranked(st, comp, ranks, score, index, eligible)

    def _bet_ranked(
        self,
        st: dict[str, Any],
        comp: Component,
        ranks: PeriodRanks,
        score: int | None,
        index: int,
        eligible: bool,
    ) -> None:
        """A round's `score` (None: not scored, no bet) ranked among the periods of `ranks`
        and the rounds before it: the period-rank tests' bets from the deploy, and their
        e-detector's by age when it has a level (`_bet_aged`), for errors and latencies
        alike."""
        if score is None:
            return
        seen = st["seen"]
        p = ranks.p_value(score, seen, index)
        period_ranks.add_seen(seen, score)
        rounds = period_ranks.seen_rounds(seen)
        log_f = ranks.log_factors(p, rounds)
        if not comp.alpha_detector:
            self._bet(st, comp, 0.0, 0.0, index, eligible, log_f)
            return
        self._bet_aged(st, comp, log_f, ranks.detector_log_factors(p, rounds), index, eligible)

    def _bet_aged(
        self,
        st: dict[str, Any],
        comp: Component,
        log_f: list[float],
        aged: list[list[float]],
        index: int,
        eligible: bool,
    ) -> None:
        """A round's bets (`log_f`) for a test whose e-detector's martingales bet by their
        age (`aged`: per bet, by age, `stats.sr_window`), as a rank test's do: a component of
        a test in `AGED_DETECTORS`."""
        st["w"] = [w + f for w, f in zip(st["w"], log_f, strict=True)]
        st["sr"] = stats.sr_window(st["sr"], aged)
        log_d = stats.log_mix_windows(st["sr"], AGED_DETECTOR_BETS.get(comp.test, comp.bets))
        _record(st, comp, stats.log_mix(st["w"], comp.bets), log_d, index, eligible, self)

    def _bet_latency_ranks(
        self, st: dict[str, Any], comp: Component, obs: Observation, index: int, eligible: bool
    ) -> None:
        """A round's latencies ranked among the baseline's periods and the rounds before it
        (`agent.analysis.latency_period_ranks`); a round smaller than the periods is not
        ranked."""
        latency = self._latency_ranks
        assert latency is not None
        score = latency.score(index, self._finite(obs.values))
        self._bet_ranked(st, comp, latency.ranks, score, index, eligible)

    def _bet_ladder(
        self, st: dict[str, Any], comp: Component, obs: Observation, index: int, eligible: bool
    ) -> None:
        """A two-sample test's round: one bet per interval of the baseline's figure, the whole
        ladder at once (`stats.bet_ladder`)."""
        log_f = self._ladder_factors(comp, obs)
        if log_f is None:
            return
        stored_sr = st["sr"] if comp.alpha_detector else None
        last = self._held.get(comp.key)
        held = last[2] if last and last[0] is st["w"] and last[1] is stored_sr else None
        if held is None and stored_sr is not None:  # read as `_to_json` stored it
            held = np.array((st["w"], [_from_json(row) for row in stored_sr]), dtype=np.float64)
        rows, log_e, log_d = stats.ladder_round(
            comp.bets, log_f, st["w"], stored_sr, self._ladder_of(comp).bases, held=held
        )
        as_lists = rows.tolist()
        st["w"] = as_lists[0]
        finite = stored_sr is None or math.isfinite(np.add.reduce(rows[1], axis=None))
        if stored_sr is not None:
            st["sr"] = as_lists[1] if finite else [_to_json(row) for row in as_lists[1]]
        # the lists just stored are never changed in place: next round reads `rows` again
        # while they are still the state's (an e-detector with an infinity or NaN is read
        # from the lists, `_from_json`: the same numbers)
        self._held[comp.key] = (st["w"], stored_sr and st["sr"], rows) if finite else None
        _record(st, comp, log_e, log_d, index, eligible, self)

    def _ladder_of(self, comp: Component) -> _Ladder:
        """A ladder's columns as arrays, made once per window."""
        ladder = self._ladders.get(comp.key)
        if ladder is None:
            levels, cutoffs, bases = zip(*comp.ladder, strict=True)
            ladder = _Ladder(np.array(levels), list(cutoffs), np.array(bases), np.ones(len(levels)))
            self._ladders[comp.key] = ladder
        return ladder

    def _ladder_factors(self, comp: Component, obs: Observation) -> FloatArray | None:
        """The round's log factor per interval of the ladder and bet
        (`stats.ladder_log_factors`), None without samples. They depend on the round's
        samples and bad events alone, which repeat from round to round (ten probes, none
        failed), so they are kept by those two numbers."""
        if comp.test != "proportion":
            return None  # only counts have ladders (rank, exceedance: `_conformal`)
        n = float(obs.total or 0)
        count = min(max(float(obs.count or 0), 0.0), n)
        bad = n - count if comp.flip else count
        key = (comp.key, n, bad)
        log_f = self._factors.get(key)
        if log_f is None:
            y, weight = self._ladder_statistics(comp, n, bad)
            stakes = stats.bet_lambdas(comp.bets, weight)
            if len(self._factors) >= 64:  # traffic that varies: keep the memo small
                self._factors.clear()
            log_f = self._factors[key] = stats.ladder_log_factors(y, stakes)
            log_f.flags.writeable = False
        return log_f

    def _ladder_statistics(
        self, comp: Component, n: float, bad: float
    ) -> tuple[FloatArray, FloatArray]:
        """(y, weight) of one round per interval of the ladder, as two arrays."""
        expected = n * self._ladder_of(comp).levels
        return bad / expected, expected

    def _pass_statistic(self, test: PassTest, obs: Observation) -> float | None:
        if test.statistic == "rate":
            n = float(obs.total or 0)
            return min(max(float(obs.count or 0), 0.0), n) / n if n > 0 else None
        if test.statistic == "value":
            return float(obs.value) if obs.value is not None else None
        x = self._finite(obs.values)
        if not x.size:
            return None
        past = x < test.cutoff if test.below else x > test.cutoff
        return float(np.count_nonzero(past)) / x.size

    def finish(self, state: dict[str, Any], index: int) -> None:
        """The window's last round (`index`) is folded: the fixed-horizon tests look once.

        Validity: each is looked at once, at a round the clock fixes (the window's end), so
        its chance of failing a good deploy is its level, `alpha_final`; with the
        e-processes' levels the union bound keeps the test within its share."""
        if state["samples"] < max(1, self.rule.min_samples):
            return
        for comp in self.components:
            st = state["tests"][comp.key]
            if not comp.alpha_final or st["crossed"] is not None:
                continue
            st["final_p"] = p = self._final_p(comp, st)
            if p <= comp.alpha_final:
                st["crossed"] = index

    def _look_midway(self, st: dict[str, Any], comp: Component, index: int) -> None:
        """The look at the window's end (`_final_p`) taken once at its midpoint, round `index`
        (the window's length in rounds over 2), at its own level `alpha_midway`.

        Validity: looked at once, at a round the clock fixes, its p-value is valid there as
        the end's is at the end, so its chance of failing a good deploy is its level; the
        union bound adds it to the test's other levels (`MIDWAY_SHARE`)."""
        if st["crossed"] is not None:
            return
        st["midway_p"] = p = self._final_p(comp, st, comp.alpha_midway)
        if p <= comp.alpha_midway:
            st["crossed"] = index

    def _final_p(self, comp: Component, st: dict[str, Any], level: float | None = None) -> float:
        """A test's p-value over the whole window, its counts divided by the variance
        inflation measured across the window's rounds at the test's level (Student-corrected
        for how few they are), so samples that move together within a round are not read
        as independent. Counts: the two-sample test (`stats.rate_ratio_greater`), the
        baseline's counts likewise divided by what its periods show, the two corrected once
        for their difference (`_look_inflations`). Conformal tests: their
        placements over the window are i.i.d. uniform at the null's edge
        (`agent.analysis.conformal`), so the rank test's sum is that of uniforms
        (`stats.sum_of_uniforms_greater`) and the samples past the quantile are binomial
        at the test's level (`stats.share_greater`). `level`: the look's (None: the end's,
        `alpha_final`), at which the inflations are Student-corrected."""
        sums = st["fin"]
        level = comp.alpha_final if level is None else level
        if comp.test == "rank":
            inflation = stats.inflation_of_sums(sums, level, variance=1.0 / 12.0)
            return stats.sum_of_uniforms_greater(sums[1], sums[2], inflation)
        if comp.test == "exceedance" or not comp.ladder:
            # samples past the quantile (conformal or against an absolute bound), or a
            # rate's events against its absolute `max` (its successes against a `min`:
            # the level is then the complement, `_bad`)
            inflation = stats.inflation_of_sums(sums, level)
            return stats.share_greater(sums[1], sums[2], inflation, comp.level)
        base, delta = self.baseline, self.rule.max_increase
        assert base is not None and base.count is not None and base.total is not None
        assert delta is not None
        new_infl, base_infl = self._look_inflations(base, sums, level)
        return stats.rate_ratio_greater(
            sums[1], sums[2], new_infl, base.count, base.total, base_infl, 1.0 + delta
        )

    @staticmethod
    def _look_inflations(
        base: BaselineData, sums: list[float], level: float
    ) -> tuple[float, float]:
        """The window's and the baseline's inflations for the two-sample look at `level`:
        Student-corrected once for their difference (`stats.welch_inflations`), the
        baseline's measured from its periods that hold events (`measured_periods`), then
        widened for the bursts it shows (`burst_inflation`); each side at its own degrees
        of freedom when either holds too few events to measure."""
        pair = (
            stats.welch_inflations(stats.measured_inflation(sums), base.measured_spread, level)
            if sums[0] >= 2 and sums[2] > 0 and base.periods >= 2
            else None
        )
        if pair is None:
            return stats.inflation_of_sums(sums, level), base.burst_inflation(level)
        return pair[0], base.burst_inflation(level, at=pair[1])

    @staticmethod
    def failed_at_end(state: dict[str, Any], comp: Component) -> bool:
        """Whether `comp` failed by its fixed-horizon test (not by an e-process)."""
        st = state["tests"][comp.key]
        p = st.get("final_p")
        return p is not None and st["crossed"] is not None and p <= comp.alpha_final

    @staticmethod
    def failed_midway(state: dict[str, Any], comp: Component) -> bool:
        """Whether `comp` failed by its look at the window's midpoint (`_look_midway`)."""
        st = state["tests"][comp.key]
        p = st.get("midway_p")
        return p is not None and st["crossed"] is not None and p <= comp.alpha_midway

    # -- reading the state ----------------------------------------------------------------

    def failed_at(self, state: dict[str, Any]) -> tuple[int | None, Component | None]:
        """The first round at which a test crossed, and which."""
        hits = [
            (st["crossed"], c)
            for c in self.components
            if (st := state["tests"][c.key])["crossed"] is not None
        ]
        if not hits:
            return None, None
        return min(hits, key=lambda h: h[0])

    def closest(self, state: dict[str, Any]) -> Component | None:
        """The test closest to failing (largest evidence against its threshold)."""
        if not self.components:
            return None
        return max(self.components, key=lambda c: self.margin(state, c))

    def margin(self, state: dict[str, Any], comp: Component) -> float:
        st = state["tests"][comp.key]
        start = float(st["peak"]) - comp.log_threshold
        if st["peak_d"] is None:
            return start
        return max(start, float(st["peak_d"]) - comp.detector_log_threshold(self.horizon))

    def log_evidence(self, state: dict[str, Any], comp: Component) -> RunEvidence:
        """The more advanced of a test's two runs (the deploy's on a tie), naming which; the
        deploy's when the test failed by its look at the window's end (`failed_at_end`) or
        midpoint (`failed_midway`): that look, not the e-detector, failed it, and its words
        say a p-value, so the detector's bar (rounds / its level) shown beside them went
        unexplained."""
        st = state["tests"][comp.key]
        start = RunEvidence(st["peak"], comp.log_threshold, detector=False)
        looked = self.failed_at_end(state, comp) or self.failed_midway(state, comp)
        if st["peak_d"] is None or looked:
            return start
        detector = RunEvidence(st["peak_d"], comp.detector_log_threshold(self.horizon), True)
        return max(start, detector, key=lambda run: run.log_e - run.log_needed)

    def log_now(self, state: dict[str, Any], comp: Component) -> float | None:
        """The log e-value of `comp`'s e-process from the deploy after the latest round: its
        wealth now, not its peak, so it falls again as rounds within the bound come (None
        before the rule has `min_samples`, as its peak)."""
        if state["samples"] < max(1, self.rule.min_samples):
            return None
        st = state["tests"][comp.key]
        if comp.ladder:
            return stats.ladder_log_e(comp.bets, st["w"], self._ladder_of(comp).bases)
        return stats.log_mix(st["w"], comp.bets)

    def breaching(self, state: dict[str, Any]) -> Breaching | None:
        """The read-out behind the `rule breached` warning (`WARN_SHARE`): the test whose
        e-process from the deploy stands furthest past its warning bar after the latest
        round, None when none does. Read, never stepped: no verdict depends on it."""
        best: Breaching | None = None
        for comp in self.components:
            log_e = self.log_now(state, comp)
            if log_e is None or math.isnan(log_e):
                continue
            log_warn = WARN_SHARE * comp.log_threshold
            if log_e >= log_warn and (
                best is None or log_e - log_warn > best.log_e - best.log_warn
            ):
                best = Breaching(comp, log_e, log_warn)
        return best

    def p_value(self, state: dict[str, Any]) -> float:
        """Always-valid p-value of the rule (union over its tests and their two runs)."""
        p = 1.0
        for comp in self.components:
            st = state["tests"][comp.key]
            weight = self.alpha / comp.alpha
            p = min(p, weight * math.exp(-min(max(st["peak"], 0.0), 700.0)))
            if st["peak_d"] is not None and comp.alpha_detector:
                horizon = max(self.horizon, 1)
                p = min(
                    p,
                    (self.alpha / comp.alpha_detector)
                    * horizon
                    * math.exp(-min(max(st["peak_d"], 0.0), 700.0)),
                )
            if st.get("final_p") is not None:
                p = min(p, self.alpha / comp.alpha_final * st["final_p"])
        return min(p, 1.0)

    def evidence_bounds(self, state: dict[str, Any]) -> list[Reached]:
        """Each bound's confidence-sequence end now, and whether it shows the bound holds."""
        out = []
        for test in self.passes:
            st = state["passes"][test.key]
            reached = self._reached(test, st)
            ok = reached is not None and (
                reached <= test.limit if test.upper else reached >= test.limit
            )
            out.append(Reached(test, reached, ok))
        return out

    def _reached(self, test: PassTest, st: dict[str, Any]) -> float | None:
        """The tightest end so far (`_intersect`); the last one for a state stored before."""
        if st.get("tightest") is not None:
            return float(st["tightest"])
        return self._last_end(test, st)

    def _last_end(self, test: PassTest, st: dict[str, Any]) -> float | None:
        ends = self._ends(test, st, one=True)
        if ends is None:
            return None
        return ends[1] if test.upper else ends[0]

    def _intersect(self, test: PassTest, st: dict[str, Any]) -> None:
        """Keep the sequence's running intersection: its chance of ever erring is at most
        alpha, so the tightest end so far is as valid as the last, which rose with each
        error a round brought (an A/A window's `max 0.05` read pass, inconclusive, pass).
        Ends are one sequence while the spread they were worked out on holds: when the
        window's rounds spread more (`_spread` rises), the earlier ones assumed too little
        and the intersection starts again from the last end."""
        end = self._last_end(test, st)
        if end is None or not math.isfinite(end):
            return
        spread, at = self._spread(test, st), st.get("tightest_spread")
        tightest = st.get("tightest")
        if tightest is None or at is None or spread > at:
            st["tightest"], st["tightest_spread"] = end, spread
        else:
            st["tightest"] = min(tightest, end) if test.upper else max(tightest, end)

    def _spread(self, test: PassTest, st: dict[str, Any]) -> float:
        """What the sequence's width is worked out on besides its counts: a share's or
        rate's design effect, a bare value's variance (`_ends`)."""
        t = st["t"]
        variance = float(st["m2"]) / (t - 1)
        if test.statistic != "value":
            return self._window_design_effect(test, variance, st["size"] / t)
        try:
            return float(max(variance, (VALUE_FLOOR * abs(test.limit)) ** 2))
        except OverflowError:
            return math.inf

    def interval(self, test: PassTest, state: dict[str, Any]) -> tuple[float, float] | None:
        """Both ends of the confidence sequence behind `test` (None before two rounds)."""
        return self._ends(test, state["passes"][test.key])

    def _ends(
        self, test: PassTest, st: dict[str, Any], *, one: bool = False
    ) -> tuple[float, float] | None:
        """The sequence's (lower, upper) ends; `one`: only the end the test reads is worked
        out for a share or rate (the other is 0 or 1)."""
        t = st["t"]
        if t < 2:
            return None
        spread = self._spread(test, st)  # inf: a bound near float's end (`max` of 1e300 s)
        if test.statistic != "value":
            weight = float(st.get("w0", 0.0))  # a state from before it: the uniform mixture
            return _count_ends(test, _events(st), float(st["size"]), spread, weight, one=one)
        radius = stats.cs_radius(t, spread, test.alpha, self.t_opt)
        mean = float(st["mean"])
        return mean - radius, mean + radius

    def _no_event_weight(self, test: PassTest, per_round: float, rounds: int) -> float:
        """A share's or rate's weight on no event (`stats.no_event_weight`), sized to a
        window of `rounds` rounds of `per_round` samples, divided by the design effect its
        baseline gives (`_design_effect`), times the chance that a release like its
        baseline has no event in them (a baseline at 2.5% errors has one in 92% of 100
        trials: the full weight would only cost such a release, 14.3% shown where 11.5%,
        and this share of it 11.6%); none under `stats.NONE_WEIGHT_LEAST`. All known
        before the window's events: at its first round, that round's samples; 0 (the
        uniform mixture) for a window of unknown length."""
        if rounds <= 0:
            return 0.0
        planned = rounds * per_round / self._design_effect(test, per_round)
        rate = test.limit if test.upper else 1.0 - test.limit
        clean = (1.0 - self._baseline_events(test)) ** planned
        weight = stats.no_event_weight(rate, test.alpha, planned) * clean
        return weight if weight >= stats.NONE_WEIGHT_LEAST else 0.0

    def _baseline_events(self, test: PassTest) -> float:
        """The share of the baseline's trials that are the pass test's events (errors, or
        samples past the cutoff; a `min`'s the other outcome): 0 without a baseline, or
        over an outage's (`PassTest.outage`: not the release's)."""
        if test.key not in self._events_base:
            base = self.baseline
            mean = None
            if base is not None and test.outage is None:
                mean = self._baseline_statistic(test, base)
            share = 0.0 if mean is None else mean if test.upper else 1.0 - mean
            self._events_base[test.key] = min(max(share, 0.0), 1.0)
        return self._events_base[test.key]

    def _window_design_effect(self, test: PassTest, variance: float, size: float) -> float:
        """What a share's or rate's counts are divided by before their binomial sequence
        (`_count_ends`): the baseline's burstiness (`_design_effect`), or more where the
        window's own rounds spread more than the limit's binomial law allows at their size
        (the floor the normal-mixture sequence took its variance at, as a ratio)."""
        p = min(max(test.limit, 1e-6), 1 - 1e-6)
        binomial = p * (1.0 - p) / max(size, 1.0)
        return max(self._design_effect(test, size), variance / binomial)

    @staticmethod
    def _design_effect(test: PassTest, size: float) -> float:
        """How much more a round's rate, or share past a cutoff, varies than its requests'
        binomial law says, by the burstiness measured across the baseline's periods (Kish:
        1 + (n - 1) rho, `PassTest.dispersion`).

        The floor is what a window whose rounds showed no spread is granted: errors that
        fill whole rounds (a pod down for a round), none seen yet, pass a deploy past its
        bound on a binomial floor (30 rounds of 40, 6% of rounds failing whole against
        `max 0.05`: 41 of 300 windows), and so do whole rounds slow past a latency
        cutoff. The background runs of the same service show the bursts (an hour of them:
        0 of 300)."""
        if test.statistic == "value" or size <= 1.0:
            return 1.0
        return 1.0 + (size - 1.0) * test.dispersion

    # -- what the rule can see -----------------------------------------------------------

    def pass_reach(self, per_round: float, horizon: int) -> list[PassReach]:
        """Each bound's evidence at the window's end if the release were just like its
        baseline, at `per_round` samples a round: the confidence sequence's end after
        `horizon` rounds and the rounds a window would need to show the bound holds. At
        best: the round's statistic has the baseline's mean and only sampling noise, as the
        sequence's own floor allows (its design effect included: the baseline's bursts
        widen it as they widen `_ends`), so a bound said to fall short cannot pass by the
        window's end on any release like its baseline. Over an outage's baseline
        (`PassTest.outage`) the release is the best one instead (no error, for a `max`):
        the bound is judged on its own rounds, and one like the outage is not the release
        to ask about."""
        out: list[PassReach] = []
        base = self.baseline
        if base is None or per_round <= 0 or horizon < 1:
            return out
        for test in self.passes:
            mean = self._baseline_statistic(test, base)
            if test.outage is not None:  # judged on the release's own rounds: at best none
                mean = 0.0 if test.upper else 1.0
            if mean is None:
                continue
            p = min(max(test.limit, 1e-6), 1 - 1e-6)
            variance = (
                max(mean * (1.0 - mean), p * (1.0 - p))
                / max(per_round, 1.0)
                * self._design_effect(test, per_round)
            )
            design = self._window_design_effect(test, variance, per_round)
            weight = functools.partial(self._no_event_weight, test, per_round)
            end = functools.partial(_reach_end, test, mean, variance, per_round, design, weight)
            # a sequence needs two rounds (`_ends`): a one-round window never shows it
            reached = end(horizon, self.t_opt) if horizon > 1 else None
            needed: int | None = None
            if reached is not None and _shows(test, reached):
                needed = horizon
            elif _shows(test, mean):

                def holds(
                    t: int, end: Callable[[int, float], float] = end, test: PassTest = test
                ) -> bool:
                    # a longer window is tightest at its own half, as it would be run
                    return _shows(test, end(t, t / 2))

                hi = max(2, 2 * horizon)
                while not holds(hi) and hi < 1 << 24:
                    hi *= 2
                if holds(hi):
                    lo = horizon  # the end falls as the window grows: the first that holds
                    while hi - lo > 1:
                        mid = (lo + hi) // 2
                        lo, hi = (lo, mid) if holds(mid) else (mid, hi)
                    needed = hi
            out.append(PassReach(test, mean, reached, needed))
        return out

    def _baseline_statistic(self, test: PassTest, base: BaselineData) -> float | None:
        """A pass test's round statistic on the baseline: its rate, or its share of
        samples past the cutoff (None for a bare value: its spread is not a proportion's)."""
        if test.statistic == "rate":
            return base.value if self.kind == "proportion" and base.has_counts else None
        if test.statistic != "share":
            return None
        sv = base.sorted_values[np.isfinite(base.sorted_values)]
        if not sv.size:
            return None
        past = sv < test.cutoff if test.below else sv > test.cutoff
        return float(np.count_nonzero(past)) / sv.size

    def detectable(self, state: dict[str, Any], rounds_with_data: int) -> Detectable | None:
        """The smallest regression each test would likely catch by the window's end (four
        times in five, `FOUR_IN_FIVE`), at the traffic seen so far, its e-process round by
        round as the judge bets it (capped bets, `_detectable_counts`,
        `_detectable_two_sample`) and its look at the window's end (`_detectable_look`).
        The easiest of the rule's tests is reported: where two come close, the rule, failed
        by either, catches it more often than that. The look at the window's midpoint
        (`MIDWAY_SHARE`) is left out: half the rounds at a smaller level, it is never the
        easiest (tests/analysis/test_detectable.py)."""
        if rounds_with_data <= 0:
            return None
        # An estimate of what the window's end will show needs no more than two significant
        # digits of the traffic: rounded, the memo hits although almost every wording sees a
        # slightly different mean (a dropped probe, a round with 9 latencies).
        per_round = float(f"{state['samples'] / rounds_with_data:.2g}")
        if per_round not in self._detectable:
            if len(self._detectable) >= 64:  # traffic that varies: keep the memo small
                self._detectable.clear()
            key = (self._inputs, per_round)
            found = _DETECTABLE.get(key, _MISSING)
            if found is _MISSING:
                found = self._easiest(per_round)
                if len(_DETECTABLE) >= _DETECTABLE_SIZE:
                    _DETECTABLE.clear()
                _DETECTABLE[key] = found
            self._detectable[per_round] = cast("Detectable | None", found)
        return self._detectable[per_round]

    @property
    def _inputs(self) -> tuple[Any, ...]:
        """What `_easiest` is a function of: this rule's construction (the rule, its tests,
        its baseline's figures and a digest of its samples, kind, levels, horizon)."""
        if self._inputs_key is None:
            base = self.baseline
            figures: tuple[Any, ...] | None = None
            if base is not None:
                digest = hashlib.blake2b(base.sorted_values.tobytes(), digest_size=16).digest()
                figures = (base.value, base.count, base.total, base.periods, base.dispersion)
                figures += (base.sorted_values.size, digest, self._rank_rho)
            self._inputs_key = (
                self.rule,
                self.components,
                figures,
                self.kind,
                self.alpha,
                self.horizon,
                self._pass_alpha,
            )
        return self._inputs_key

    def _easiest(self, per_round: float) -> Detectable | None:
        """`detectable`'s search; the exceedance paths it kept go with it (`_exceeding`)."""
        try:
            return self._search_easiest(per_round)
        finally:
            self._exceeding.clear()

    def _search_easiest(self, per_round: float) -> Detectable | None:
        # a window of one round is one round (0: its length unknown)
        horizon = self.horizon if self.horizon >= 1 else 2 * DEFAULT_T_OPT
        found: list[Detectable] = []
        if self.cannot_fail:
            found.append(Detectable("max_increase", math.inf, math.inf, UNBOUNDED))
        for comp in self.components:
            # a conformal exceedance test is searched only below the scale already found
            # (the rank test's): what it cannot catch there cannot be the easiest
            within = 1.0 + min((d.effect for d in found), default=math.inf)
            if comp.alpha_final:
                look = self._detectable_look(comp, per_round, int(horizon), within)
                if look is not None:
                    found.append(look)
            if comp.test == "rank":  # its bets' weights are counted in it
                rank = self._detectable_shift(comp, per_round, horizon, comp.log_threshold)
                if rank is not None:
                    found.append(rank)
            elif comp.level == 0.0:
                if comp.test == "proportion":
                    found.append(self._detectable_first(comp, per_round * horizon))
            elif comp.test == "proportion" and comp.ladder:
                found.append(self._detectable_two_sample(comp, per_round, horizon))
            elif comp.test == "periods" and not any(c.ladder for c in self.components):
                found.append(self._detectable_periods(comp, per_round, horizon))
            elif comp.test == "latency_periods":
                ranked = self._detectable_latency_periods(comp, per_round, horizon)
                if ranked is not None:
                    found.append(ranked)
            elif comp.test in ("proportion", "exceedance"):
                found.append(self._detectable_counts(comp, per_round, horizon, within))
        if not found:
            return None
        easiest = min(found, key=lambda d: d.effect)
        # the period ranks catch in two rounds: a window too short for the other tests
        # is not too short for them
        return easiest if easiest.text.endswith(BY_PERIOD_RANKS) else self._too_short(easiest)

    def _too_short(self, found: Detectable) -> Detectable:
        """`found`, said with why it is so large when the window's rounds are too few for
        the bound's tests to fail. A conformal rank or exceedance test's bets gain at most
        `rank_bets.episode_cap` a round, so that `EPISODE_ROUNDS` slow rounds cannot fail a
        good release: in a window that short only its look at the window's end (and a
        latency bound's period ranks, whose figure `_search_easiest` keeps as it is) can.
        In a window of one round no test can (a round's bets are capped, the look needs
        two rounds to measure their spread): a p95 +10% said +36% there, errors x90 at
        3,000 requests did not fail (tests/analysis/test_detectable.py). "too little data by
        then" sent users to more traffic, which does not help."""
        rounds = self.horizon
        if not 0 < rounds <= rank_bets.EPISODE_ROUNDS:
            return found
        if any(c.conformal and c.bound == found.bound for c in self.components):
            few = (
                f"the window's {rounds} round{'s are' if rounds > 1 else ' is'} too few for its"
                " tests from the deploy to fail: they need at least"
                f" {rank_bets.EPISODE_ROUNDS + 1} rounds, so that a slow minute or two cannot"
                " fail a good release"
            )
        elif rounds == 1 and not math.isfinite(found.effect):
            few = (
                "the window's 1 round is too few for its tests to fail: a round counts for at"
                " most a part of the evidence they need"
            )
        else:  # a test that fails at the first bad event (`_detectable_first`), or rounds enough
            return found
        few += "; a longer `window` or a shorter `interval` gives them the rounds"
        if math.isfinite(found.effect):
            return replace(
                found, text=f"{found.text}, by its look at the window's end alone ({few})"
            )
        later = "; a large one may still be caught at times" if rounds > 1 else ""
        return replace(found, text=f"no regression of any size four times in five ({few}{later})")

    def _detectable_periods(self, comp: Component, per_round: float, horizon: float) -> Detectable:
        """The ranks test alone (`_lone_period_ranks`): the error rate at which the rounds it
        needs above every period (`PeriodRanks.rounds_to_catch`) all score above the highest
        period four times in five (`FOUR_IN_FIVE`), a round of a steady rate r scoring
        Binomial(size, r / (1 + delta)) (`PeriodRanks.score`). A tie with the highest period,
        and the bets that allow one period above or one round below, catch more: the figure
        errs high, never low. Rounds smaller than the smallest period are not ranked."""
        ranks = self._period_ranks
        assert ranks is not None
        needed = ranks.rounds_to_catch(comp.log_threshold)
        top = ranks.periods[-1]
        if per_round < ranks.size or needed > horizon or top >= ranks.size:
            return Detectable(comp.bound, math.inf, math.inf, UNRANKED)

        def missed(kept: float) -> float:
            return 1.0 - stats.binomial_greater(top + 1, ranks.size, kept) ** needed

        kept = _smallest(missed, 1.0 - FOUR_IN_FIVE, 0.0, 1.0)
        if not math.isfinite(kept):
            return Detectable(comp.bound, math.inf, math.inf, UNRANKED)
        return self._express(comp, kept / ranks.keep / comp.level)

    def _detectable_latency_periods(
        self, comp: Component, per_round: float, horizon: float
    ) -> Detectable | None:
        """A relative latency bound's rounds ranked among the baseline's periods
        (`_with_latency_ranks`): the slowdown, every latency times f, at which the rounds it
        needs above every period (`PeriodRanks.rounds_to_catch`, two at the daemon's
        defaults) all score above the highest period four times in five (`FOUR_IN_FIVE`),
        in closed form: a round's score is the quantile of `size` of its latencies over
        1 + delta (`LatencyPeriodRanks.score`), above the highest period's bucket when the
        order statistic below the interpolated quantile is, Binomial over the baseline's
        latencies times f. Ties with the highest period, and the bets that allow a round
        below, catch more: the figure errs high, never low. None when its rounds are
        smaller than the smallest period or more than the window's."""
        ranks = self._latency_ranks
        base = self.baseline
        if ranks is None or base is None:
            return None
        needed = ranks.ranks.rounds_to_catch(comp.log_threshold)
        size = ranks.ranks.size
        if per_round < size or needed > horizon:
            return None
        values = base.sorted_values[np.isfinite(base.sorted_values)]
        edge = GAMMA ** ranks.ranks.periods[-1] * ranks.scale  # above it: a higher bucket
        order = math.floor((size - 1) * ranks.quantile) + 1  # 1-based, the one below

        def missed(f: float) -> float:
            below = int(np.searchsorted(values, edge / f, side="right")) / values.size
            above = 1.0 - stats.binomial_greater(order, size, below)
            return 1.0 - above**needed

        f = _smallest(missed, 1.0 - FOUR_IN_FIVE, 1.0, 1e6, grow=True)
        if not math.isfinite(f):
            return None
        metric, effect = self.rule.metric, f - 1.0
        text = f"{metric} +{format_percent(round(effect, 2))} or more{BY_PERIOD_RANKS}"
        return Detectable(comp.bound, f * base.value, effect, text)

    def _detectable_first(self, comp: Component, samples: float) -> Detectable:
        """A test against a level of 0 fails at the first bad event: it catches a rate r
        four times in five (`FOUR_IN_FIVE`) when 1 - (1 - r)^samples reaches it."""
        share = -math.expm1(math.log1p(-FOUR_IN_FIVE) / max(samples, 1.0))
        value = 1.0 - share if comp.flip else share
        side = "or less" if comp.flip else "or more"
        return Detectable(
            comp.bound, value, math.inf, f"{self.rule.metric} {self._share(value)} {side}"
        )

    def _detectable_look(
        self, comp: Component, per_round: float, rounds: int, within: float = math.inf
    ) -> Detectable | None:
        """The look at the window's end (`finish`): the effect it catches with the power
        `LOOK_POWER`, i.e. at which the window's statistic still reaches the look's level when
        it falls short of its expectation by that many standard deviations. The look divides
        the window's counts by the inflation measured across its rounds, Student-corrected for
        how few they are (`stats.inflation_limit`): so does this, the deploy's rounds taken to
        be as bursty as the baseline's periods (for counts: its correlation, at the deploy's
        round size; conformal placements: independent). A conformal test's placements are
        diluted as its e-process's are: the rank test's mean placement moved from its null
        by the baseline's share of the reference only (`_mean_placement`), the exceedance
        test's share past the quantile as `_exceedance_rounds` finds it; and their excess
        falling round by round is read as burstiness too (`_trend_inflation`)."""
        base, samples, level = self.baseline, per_round * rounds, comp.alpha_final
        if samples <= 0 or (base is None and comp.bound == "max_increase"):
            return None

        def inflation(rho: float, events: float, trend: float = 0.0) -> float:
            return stats.inflation_limit(
                1.0 + (per_round - 1.0) * rho + trend, rounds, events, per_round, level
            )

        if comp.test == "rank":
            moved = self._mean_placement(comp, per_round, rounds)
            if moved is None:
                return None
            spread = inflation(0.0, samples)
            base_var = _baseline_noise(1.0 / 12.0, samples, self._base_size)
            dilution = _dilution(samples, self._base_size)

            shares = _round_shares(per_round, rounds, self._base_size)
            trend_per_excess = _trend_inflation(shares, 1.0 / 12.0, per_round)

            def rank_p(scale: float) -> float:
                trend = trend_per_excess * ((moved(scale) - 0.5) / dilution) ** 2
                short = LOOK_POWER * math.sqrt(spread * samples / 12.0 + base_var)
                total = samples * moved(scale) - short
                return stats.sum_of_uniforms_greater(total, samples, inflation(0.0, samples, trend))

            return self._scaled(comp, _smallest(rank_p, level, 1.0, 1e3, grow=True))
        if comp.test == "exceedance" or not comp.ladder:
            # an absolute bound on a rate: its events read as bursty as the baseline's, if
            # it has one (conformal placements, samples past a bound: independent, as before),
            # but for an outage's (`outage_baseline`): its pass side reads the window's own
            # spread alone (`_bursty`), and so does this
            rho = 0.0
            if self.kind == "proportion" and base is not None and base.has_counts:
                rho = _dispersion_limit(base, level) if self.outage_baseline is None else 0.0
            m = self._base_size if comp.conformal else 0
            base_var = _baseline_noise(comp.level * (1.0 - comp.level), samples, m)

            def exceed_p(shares: FloatArray) -> float:
                """The look's p-value when the rounds' samples are past the quantile with
                these shares (each a round's mean), the power's shortfall taken off."""
                seen = float(np.mean(shares))
                events = seen * samples
                fewer = min(events, samples - events)
                sd = math.sqrt(inflation(rho, fewer) * events * (1.0 - seen) + base_var)
                read = inflation(
                    rho, fewer, _trend_inflation(shares, seen * (1.0 - seen), per_round)
                )
                return stats.share_greater(events - LOOK_POWER * sd, samples, read, comp.level)

            if comp.conformal:
                scale = _smallest_within(
                    lambda s: exceed_p(self._exceedance_rounds(comp, per_round, rounds, s)),
                    level,
                    within,
                )
                return self._scaled(comp, scale)
            share = _smallest(lambda x: exceed_p(np.full(rounds, x)), level, comp.level, 1.0)
        else:
            delta = self.rule.max_increase
            if base is None or not base.has_counts or delta is None:
                return None
            assert base.count is not None and base.total is not None
            base_measured = base.measured_spread

            def count_p(rate: float) -> float:
                events = rate * samples
                rarer = min(events, samples - events)
                measured = (1.0 + (per_round - 1.0) * base.dispersion, rounds, rarer, per_round)
                spread, base_spread = stats.welch_inflations(measured, base_measured, level) or (
                    inflation(base.dispersion, rarer),
                    base.inflation_at(level),
                )
                return stats.rate_ratio_greater(
                    events - LOOK_POWER * math.sqrt(spread * events * (1.0 - rate)),
                    samples,
                    spread,
                    base.count or 0.0,
                    base.total or 0.0,
                    base_spread,
                    1.0 + delta,
                )

            share = _smallest(count_p, level, 0.0, 1.0)
        if not math.isfinite(share):
            return Detectable(comp.bound, math.inf, math.inf, UNBOUNDED)
        return self._express(comp, share / comp.level)

    def _detectable_counts(
        self, comp: Component, per_round: float, horizon: float, within: float = math.inf
    ) -> Detectable:
        """A count e-process against its level (one-sample counts, samples past a quantile):
        the smallest change (the ratio of its share to its level; a conformal test's deploy
        scale, searched below `within`) at which its bets, mixed by their prior weights, are
        expected to reach the threshold by the window's end with `LOOK_POWER`'s power, each
        round's factor taken over the round's binomial count
        (`stats.round_log_factor_moments`). Round by round, not as one Poisson count over
        the window: a bet is at most `stats.MAX_BET` a round, so a heavy round gains at
        most log r, however many samples it holds. A conformal exceedance test's share past
        its quantile is `_exceedance_rounds`' (with a small baseline only its first rounds
        see the shift), and the baseline's quantile error, common to every round, adds to
        the spread (`_baseline_noise`'s reasoning)."""
        n = max(round(per_round), 1)
        count = max(horizon * per_round / n, 1.0)
        rounds = math.ceil(horizon)
        m = self._base_size if comp.conformal else 0
        level = comp.level
        lambdas = np.minimum(stats.COUNT_BETS * n * level, stats.MAX_BET)
        if comp.conformal:
            aimed = self._aimed_stake(comp, per_round, 0) * n
            lambdas = np.concatenate(
                [np.minimum(EXCEEDANCE_MULTIPLES * aimed, stats.MAX_BET), lambdas]
            )
        # the linear bets at their weights in the mixture: a conformal test's tilted ones
        # (`exceedance_bets`) are not counted, so the figure is what the linear ones reach
        log_weights = (
            exceedance_bets.linear_log_weights(comp.bets, EXCEEDANCE_MULTIPLES.size)
            if comp.conformal
            else stats.BET_LOG_WEIGHTS[comp.bets]
        )
        quantile_var = level * (1.0 - level) / m if m else 0.0
        edges = _round_groups(rounds)
        weights = np.diff(edges) * (count / rounds)
        base_shares = _group_means(_round_shares(per_round, rounds, m), edges)

        # a conformal test's bets gain at most the episode cap a round, as it bets them
        cap = rank_bets.episode_cap(comp.log_threshold) if comp.conformal else math.inf

        def short(shares: FloatArray) -> float:
            """What the likely evidence by the end lacks of the threshold (none: caught),
            the rounds' samples past the quantile with these shares (a group's mean each)."""
            if comp.conformal:
                mean, var = stats.round_log_factor_moments(lambdas, n, shares, level, cap)
            else:
                mean, var = _moments_alike(lambdas, n, shares, level)
            gain, spread = mean @ weights, var @ weights
            if quantile_var:  # d gain / d share of the baseline's quantile, every round alike
                slope = (
                    lambdas[:, None] * base_shares / (level + lambdas[:, None] * (shares - level))
                )
                spread = spread + (slope @ weights) ** 2 * quantile_var
            # mixed as the e-process mixes them: bets that a heavy round caps alike at
            # `MAX_BET` are one bet with their weights summed
            likely = log_weights + gain - LOOK_POWER * np.sqrt(spread)
            return comp.log_threshold - float(np.logaddexp.reduce(likely))

        if comp.conformal:
            scale = _smallest_within(
                lambda s: short(
                    _group_means(self._exceedance_rounds(comp, per_round, rounds, s), edges)
                ),
                0.0,
                within,
            )
            return self._scaled(comp, scale)
        top = 1.0 / level
        ratio = _smallest(
            lambda r: short(np.full(edges.size - 1, r * level)), 0.0, 1.0, top, steps=10
        )
        if not ratio < top:  # only every sample past it: not a change it can be said to see
            return Detectable(comp.bound, math.inf, math.inf, NOTHING)
        return self._express(comp, ratio)

    def _exceedance_rounds(
        self, comp: Component, per_round: float, rounds: int, scale: float
    ) -> FloatArray:
        """Each round's expected share of samples past a conformal exceedance test's
        quantile when the deploy is the baseline x `scale` (/ it, for a decrease): sample t
        is past when fewer than its level's share of its reference (the baseline x the
        tolerance, and the t deploy samples before it) lie above it, so once the deploy's
        own samples fill that top share its excess is gone. Not the rank test's linear
        dilution: the baseline's tail holds only level x m samples, so with a small
        baseline a large shift is seen in a few dozen samples and then no more."""
        key = (comp.key, per_round, rounds, scale)
        kept = self._exceeding.get(key)
        if kept is None:
            kept = self._exceeding[key] = self._exceedance_path(comp, per_round, rounds, scale)
            kept.flags.writeable = False
        return kept

    def _exceedance_path(
        self, comp: Component, per_round: float, rounds: int, scale: float
    ) -> FloatArray:
        """`_exceedance_rounds`, worked out."""
        a = self._oriented_logs(comp.flip)
        m, total = a.size, per_round * rounds
        if not m or total <= 0:
            return np.full(rounds, comp.level)
        shift = math.log(scale) + (math.log(comp.scale) if comp.flip else -math.log(comp.scale))
        grid = a[:: max(1, m // 4000)]
        xs = np.sort(np.concatenate([grid, grid + shift]))
        above_base = m - np.searchsorted(a, xs, "right")  # of the baseline, above each x
        above_deploy = 1.0 - np.searchsorted(a, xs - shift, "right") / m
        t = _reference_sizes(total)
        room = comp.level * (m + t + 1.0)
        # per t, the first x whose reference above it fits in the level's share: both
        # counts fall in x, so one binary search over xs for every t at once (the last x,
        # above everything, always fits)
        lo = np.zeros(t.size, dtype=np.int64)
        step = 1 << int(xs.size - 1).bit_length()
        while step:
            ahead = np.minimum(lo + step, xs.size - 1)
            too_crowded = above_base[ahead - 1] + t * above_deploy[ahead - 1] > room
            lo = np.where(too_crowded & (ahead > lo), ahead, lo)
            step >>= 1
        past = above_deploy[lo]
        area = np.concatenate([[0.0], np.cumsum(np.diff(t) * (past[1:] + past[:-1]) / 2.0)])
        at = np.interp(per_round * np.arange(rounds + 1), t, area)
        out: FloatArray = np.diff(at) / per_round
        return out

    def _oriented_logs(self, flip: bool) -> FloatArray:
        """The baseline's positive samples' logs, sorted, negated for a decrease (so that
        "past the quantile" is above it either way): once per rule and direction."""
        if flip not in self._logs:
            assert self.baseline is not None
            sv = self.baseline.sorted_values
            logs = np.log(sv[np.isfinite(sv) & (sv > 0)])
            self._logs[flip] = np.sort(-logs) if flip else logs
        return self._logs[flip]

    def _detectable_two_sample(
        self, comp: Component, per_round: float, horizon: float
    ) -> Detectable:
        """Two-sample counts: the test's statistic is the least over the ladder's intervals of
        the baseline's e-value times the bets against the interval's level (`_two_sample`),
        so every interval must reach the threshold: the smallest share of bad events at
        which each interval's bets, mixed by their prior weights, are expected to by the
        window's end with `LOOK_POWER`'s power, each round's factor taken over its count
        (`stats.round_log_factor_moments`), as `_detectable_counts` takes a one-sample
        test's. Not as one Poisson count over the window: a round's bet is capped
        (`stats.MAX_BET`), so a round gains at most log(1 + 0.98 (y - 1)) however many
        events it holds; at 30 s rounds of 100 req/s (450 events expected at a 1.5% level,
        every bet capped) the Poisson figure said 1.86% errors against a 1% baseline
        (`max_increase: 50%`, 10 rounds), and 32% of windows were caught there
        (`bench/detectable_figures.py`). The rounds' counts are read as bursty as the
        baseline's periods (its correlation at the round's size, as the look reads them):
        binomial over the round's samples divided by that design effect."""
        base = self.baseline
        n = max(round(per_round), 1)
        rounds = max(horizon * per_round / n, 1.0)
        rho = base.dispersion if base is not None else 0.0
        effective = max(round(n / (1.0 + (n - 1) * rho)), 1)
        bets, log_weights = stats.BETS[comp.bets], stats.BET_LOG_WEIGHTS[comp.bets]
        ladder = np.array([(level, log_e) for level, _, log_e in comp.ladder])
        levels = np.repeat(ladder[:, 0], bets.size)  # each interval's bets, one row each
        lambdas = np.minimum(np.tile(bets, len(ladder)) * n * levels, stats.MAX_BET)
        log_base = ladder[:, 1]

        def short(share: float) -> float:
            """What the least interval's likely evidence by the end lacks of the threshold."""
            mean, var = stats.round_log_factor_moments(
                lambdas, effective, np.array([share]), levels
            )
            likely = log_weights + (
                rounds * mean[:, 0] - LOOK_POWER * np.sqrt(rounds * var[:, 0])
            ).reshape(len(ladder), bets.size)
            return comp.log_threshold - float(
                np.min(log_base + np.logaddexp.reduce(likely, axis=1))
            )

        share = _smallest_share(short, comp.level)
        if not share < 1.0:
            return Detectable(comp.bound, math.inf, math.inf, UNBOUNDED)
        return self._express(comp, share / comp.level)

    def _detectable_shift(
        self, comp: Component, per_round: float, horizon: float, needed: float
    ) -> Detectable | None:
        """Rank test: the smallest scale s (the deploy = baseline x s) at which one of its
        bets (`RANK_MULTIPLES` of the aimed stake, `_aimed_stake`) is expected to reach the
        threshold by the end, its prior weight included. A round's mean placement varies
        like 1 / (12 n) (times the design effect the baseline's periods show, for the
        sub-Gaussian bets: `rank_bets`); a bet of lambda on it grows by lambda (y - 1) -
        lambda^2 var / 2 a round (a linear one at most log(1 + lambda (y - 1))), y its
        placement over 1/2 (`_mean_placement`). Reached with `LOOK_POWER`'s power: the
        window's gain falls short of its expectation by that many of its standard
        deviations, lambda sqrt(T var + T^2 noise), the rounds' own spread and the
        baseline's sampling error, common to every round (`_baseline_noise`). Sized at its
        expected gain alone (a coin flip), a p95 `max_increase: 10%` at 30 s rounds of 1
        req/s over 10 rounds said +28%, caught in 52% of windows
        (`bench/detectable_figures.py`)."""
        mean_placement = self._mean_placement(comp, per_round, horizon)
        if mean_placement is None:
            return None
        var_y = 1.0 / (12.0 * per_round * comp.level**2)
        stake = self._aimed_stake(comp, per_round * horizon, int(horizon) - 1)
        linear = np.minimum(RANK_MULTIPLES * stake * per_round, stats.MAX_BET)
        # the sub-Gaussian bets (`rank_bets`): capped a round, on the round's variance times its
        # design effect; without a measured one (or under two effective samples a round) they
        # are the linear bets
        measured = rank_bets.sub_gaussian_design(per_round, self._rank_rho)
        design = 1.0 if measured is None else measured
        sub = RANK_MULTIPLES * stake * per_round / math.sqrt(design)
        lambdas = np.concatenate([linear, linear if measured is None else sub])
        capped = np.concatenate([np.ones(linear.size, bool), np.full(sub.size, measured is None)])
        # what does not move with the scale, worked out once for the search's calls
        variance = np.where(capped, var_y, var_y * design)
        penalty, prior = lambdas**2 * variance / 2.0, stats.BET_LOG_WEIGHTS[comp.bets] / horizon
        episode = rank_bets.episode_cap(comp.log_threshold)
        samples = per_round * horizon
        # the standard deviation of the window's mean y that the baseline's error gives
        common = math.sqrt(_baseline_noise(1.0 / 12.0, samples, self._base_size))
        common /= samples * comp.level
        shortfall = LOOK_POWER * lambdas * np.sqrt(variance / horizon + common**2)

        def growth(scale: float) -> float:
            """Likely evidence by the end, per round (the threshold's share of it)."""
            excess = mean_placement(scale) / comp.level - 1.0
            if excess <= 0.0:
                return 0.0
            gained = lambdas * excess
            bound = np.where(capped, np.log1p(gained), rank_bets.SUB_GAUSSIAN_ROUND_CAP)
            bound = np.minimum(bound, episode)
            per_bet = np.minimum(gained - penalty, bound) - shortfall
            return float(np.max(per_bet + prior))

        def short(scale: float) -> float:
            """What the evidence by the end lacks of the threshold (none: caught)."""
            return needed - horizon * growth(scale)

        return self._scaled(comp, _smallest(short, 0.0, 1.0, 1e3, grow=True))

    def _scaled(self, comp: Component, scale: float) -> Detectable:
        """A shift of the whole distribution by `scale` (down by it for a decrease)."""
        assert self.baseline is not None
        if not math.isfinite(scale):
            return Detectable(comp.bound, math.inf, math.inf, NOTHING)
        effect = scale - 1.0
        sign = "-" if comp.flip else "+"
        text = f"{self.rule.metric} {sign}{format_percent(round(effect, 2))} or more"
        return Detectable(comp.bound, scale * self.baseline.value, effect, text)

    def _mean_placement(
        self, comp: Component, per_round: float, horizon: float
    ) -> Callable[[float], float] | None:
        """The rank test's expected placement over the window (1 - it for a decrease) when
        the deploy is the baseline x scale: the window's own samples join the conformal
        reference, so the excess over 1/2 is the baseline's share of it, m / (m + t n), on
        average over the window."""
        assert self.baseline is not None
        sv = self.baseline.sorted_values
        if not sv.size or per_round <= 0:
            return None
        grid = sv[:: max(1, sv.size // 400)]
        dilution = _dilution(horizon * per_round, sv.size)

        def mean_placement(scale: float) -> float:
            u = self._placed.get((comp.key, scale))
            if u is None:
                with np.errstate(over="ignore"):  # past float's end: above every sample
                    moved = (
                        grid * scale / comp.scale if not comp.flip else grid / scale / comp.scale
                    )
                u = float(np.mean(stats.placements(sv, moved)))
                if len(self._placed) >= 4096:  # many traffics: keep the memo small
                    self._placed.clear()
                self._placed[comp.key, scale] = u
            return 0.5 + ((1.0 - u if comp.flip else u) - 0.5) * dilution

        return mean_placement

    def _express(self, comp: Component, ratio: float) -> Detectable:
        base, metric = self.baseline, self.rule.metric
        share = min(ratio * comp.level, 1.0)
        if comp.test in ("proportion", "periods"):
            value = 1.0 - share if comp.flip else share
            # a change from the baseline's rate, but from the bound over an outage's: the
            # bound is judged on the release's own rounds (`outage_baseline`)
            if base is not None and base.value and self.outage_baseline is None:
                effect = abs(value / base.value - 1.0)
            else:
                effect = ratio - 1
            side = "or less" if comp.flip else "or more"
            return Detectable(comp.bound, value, effect, f"{metric} {self._share(value)} {side}")
        sv = base.sorted_values if base is not None else _EMPTY
        if sv.size and share < 1.0:
            at = float(np.quantile(sv, share if comp.flip else 1.0 - share))
            scale = comp.cutoff / at if at > 0 else math.inf
            effect = abs(scale - 1.0)
            value = scale * self.baseline.value if self.baseline else scale
            if comp.bound in ("max", "min") and self.baseline is not None:
                # an absolute bound reads in the rule's units: "+14286%" of the baseline
                # said little about a max of 200ms
                side = "or less" if comp.flip else "or more"
                text = f"{metric} {self._fmt(value)} {side}" if math.isfinite(value) else NOTHING
            else:
                text = f"{metric} {'-' if comp.flip else '+'}{format_percent(round(effect, 2))}"
                text += " or more"
            return Detectable(comp.bound, value, effect, text)
        return Detectable(
            comp.bound,
            share,
            ratio - 1.0,
            f"{format_percent(round(share, 3))} of samples past {self._fmt(comp.cutoff)}",
        )


def _grid(comp: Component, value: float | None) -> list[Any]:
    """A test's initial wealth: one per bet, per interval of the baseline for a ladder; an
    e-detector whose martingales bet by their age (`AGED_DETECTORS`), per bet, one per
    martingale it keeps."""
    row = [value] * len(stats.BETS[comp.bets])
    if comp.test in AGED_DETECTORS and comp.alpha_detector and value is None:
        return [[None] * AGED_DETECTORS[comp.test] for _ in row]
    return [list(row) for _ in comp.ladder] if comp.ladder else row


def _record(
    st: dict[str, Any],
    comp: Component,
    log_e: float,
    log_d: float | None,
    index: int,
    eligible: bool,
    rule: SequentialRule,
) -> None:
    """Keep a test's peaks and the round it first crossed its threshold."""
    crossed = eligible and log_e >= comp.log_threshold
    if eligible:
        st["peak"] = max(st["peak"], log_e)
    if log_d is not None and eligible and not math.isnan(log_d):  # +inf crosses
        st["peak_d"] = log_d if st["peak_d"] is None else max(st["peak_d"], log_d)
        crossed = crossed or log_d >= comp.detector_log_threshold(rule.horizon)
    if crossed and st["crossed"] is None:
        st["crossed"] = index


@functools.lru_cache(maxsize=256)
def _spread_but_farthest(period_counts: tuple[tuple[int, int], ...]) -> tuple[float, int] | None:
    """(inflation, periods holding events of the rarer kind) of a baseline's periods without
    the one farthest from their pooled rate (the largest Pearson term); None when the rest
    hold fewer than two events of the rarer kind or measure nothing
    (`BaselineData.burst_spread`). Cached: every level of a ladder asks it."""
    counts = np.array([(b, n) for b, n in period_counts if n > 0], dtype=np.float64)
    if len(counts) < 3:
        return None
    bad, totals = counts[:, 0], counts[:, 1]
    rate = bad.sum() / totals.sum()
    rest = np.delete(counts, int(np.argmax((bad - totals * rate) ** 2 / totals)), axis=0)
    bad, totals = rest[:, 0], rest[:, 1]
    rarer = bad if bad.sum() <= totals.sum() - bad.sum() else totals - bad
    rho = stats.intra_period_correlation(bad, totals)
    if rarer.sum() < 2 or rho is None:
        return None
    inflation = max(1.0, 1.0 + (float(totals.sum()) / len(totals) - 1.0) * rho)
    return inflation, int(np.count_nonzero(rarer))


def _dispersion_limit(base: BaselineData, alpha: float) -> float:
    """The baseline's burstiness (rho) at the upper limit its own count limits take
    (`BaselineData.inflation_at`, Student-corrected for its few periods), for what an
    absolute bound's look can detect: read as known, a baseline that happened to look
    calm made the figure too small (`errors max 0.02` at 100 req/s over 30 rounds caught
    74% at its figure, `bench/detectable_figures.py`). 0 when it measured none."""
    size = (base.total or 0.0) / base.periods
    if base.dispersion <= 0.0 or size <= 1.0:
        return base.dispersion
    return min((base.inflation_at(alpha) - 1.0) / (size - 1.0), 1.0)


NOTHING = (
    "no regression of any size four times in five (too little data by then: a large one may"
    " still be caught at times)"
)
"""A figure is the change caught four times in five (`LOOK_POWER`); against a one-run
baseline (10 samples) none is, but the look at the window's end still fails a x5-x10
latency regression in 10-40% of windows: "no regression of any size" alone read as never."""
BY_PERIOD_RANKS = ", by its rounds' ranks among the baseline's periods"
"""A relative latency bound's figure when its period-rank test is the easiest: the one test
that can fail in a window of two or three rounds (`_detectable_latency_periods`)."""
UNBOUNDED = (
    "no regression of any size (the baseline's rate is too uncertain: too few errors in too"
    " few periods)"
)
UNRANKED = (
    "no regression of any size (the baseline's rate is too uncertain for a two-sample test,"
    " and rounds at this traffic cannot rank above every one of its periods)"
)
"""A relative error bound whose only test is its rounds' ranks among the baseline's periods
(`SequentialRule._lone_period_ranks`) at a traffic where they cannot win: rounds smaller
than the smallest period, or a period that failed every request."""

_DETECTABLE: dict[tuple[Any, ...], Detectable | None] = {}
"""`SequentialRule.detectable` across rules built alike (`_inputs`) and samples per round:
each search costs most of a round's judging, and a judge built again from the same rule
and baseline (a restart, a replica taking a window over, a verdict worded again) asks the
same question. A pure function's answers: the same with or without it, bit for bit."""
_DETECTABLE_SIZE = 1024
_MISSING = object()


class _Ladder(NamedTuple):
    """A ladder's columns (`Component.ladder`) as arrays."""

    levels: FloatArray
    cutoff_list: list[float]
    bases: FloatArray
    ones: FloatArray


@dataclass(frozen=True, slots=True)
class Detectable:
    """A rule's minimum detectable effect by the window's end."""

    bound: Bound
    value: float
    """The metric's value it can detect (a rate, a latency in seconds, a share)."""
    effect: float
    """Relative to the baseline (0.38 = +38%), or the rate ratio - 1 without one."""
    text: str


def _smallest(
    p_value: Callable[[float], float],
    level: float,
    lo: float,
    hi: float,
    *,
    grow: bool = False,
    steps: int = 30,
) -> float:
    """The smallest x in (lo, hi] with p_value(x) <= level, p_value falling in x (bisection;
    `grow`: hi is doubled from 2 x lo up to it first); infinite when hi is not enough.
    30 `steps` are 1e-9 of the range; 10 are 1e-3 of it (for a p_value that costs more).
    A NaN p-value is not reached: never a change the test is said to see."""
    if grow:
        top, hi = hi, 2.0 * lo
        while not p_value(hi) <= level:
            hi *= 2.0
            if hi > top:
                return math.inf
    elif not p_value(hi) <= level:
        return math.inf
    for _ in range(steps):  # far finer than the two digits it is said in
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if not p_value(mid) <= level else (lo, mid)
    return hi


def _smallest_within(p_value: Callable[[float], float], level: float, within: float) -> float:
    """`_smallest` over the scales (1, `within`] (grown up to 1,000 when unbounded), to a
    thousandth of the bracket: for a p_value that costs a conformal exceedance test's path
    (`SequentialRule._exceedance_rounds`) per call."""
    if math.isfinite(within):
        return _smallest(p_value, level, 1.0, within, steps=10)
    return _smallest(p_value, level, 1.0, 1e3, grow=True, steps=10)


def _smallest_share(short: Callable[[float], float], least: float) -> float:
    """The smallest share in (`least`, 1] at which `short` (falling in it) is 0 or less,
    to a 4,096th of the bracket the doubling from `least` finds (a 1.2% rate to about
    3e-6); infinite when even every sample past it is not enough."""
    hi = min(2.0 * least, 1.0)
    while not short(hi) <= 0.0:
        if hi >= 1.0:
            return math.inf
        hi = min(2.0 * hi, 1.0)
    return _smallest(short, 0.0, least, hi, steps=12)


def _moments_alike(
    lambdas: FloatArray, n: int, shares: FloatArray, level: float
) -> tuple[FloatArray, FloatArray]:
    """`stats.round_log_factor_moments` for rounds that share one share (a count test
    against a fixed level), kept by its inputs: every search at a traffic that rounds to the
    same samples a round, in this window or another with a rule alike, tries the same
    shares. Kept as the column every round repeats, only when each does, and given back
    repeated: the very arrays worked out the first time. Rounds whose shares differ are
    worked out as they are (the key names one share for all)."""
    if not bool(np.all(shares == shares[0])):
        return stats.round_log_factor_moments(lambdas, n, shares, level)
    key = (n, level, lambdas.tobytes(), shares.size, float(shares[0]))
    kept = _ALIKE.get(key)
    if kept is not None:
        return np.repeat(kept[0], shares.size, axis=1), np.repeat(kept[1], shares.size, axis=1)
    mean, var = stats.round_log_factor_moments(lambdas, n, shares, level)
    if bool(np.all(mean == mean[:, :1])) and bool(np.all(var == var[:, :1])):
        if len(_ALIKE) >= _ALIKE_SIZE:  # traffic that varies: keep the memo small
            _ALIKE.clear()
        _ALIKE[key] = (mean[:, :1].copy(), var[:, :1].copy())
    return mean, var


_ALIKE: dict[tuple[Any, ...], tuple[FloatArray, FloatArray]] = {}
"""`_moments_alike`'s answers (two columns of a dozen floats each)."""
_ALIKE_SIZE = 4096


def _dilution(samples: float, base: int) -> float:
    """How much of a conformal test's excess its placements keep, on average over a window
    of `samples` against a baseline of `base`: the t-th sample's excess is the baseline's
    share of its reference, base / (base + t), whose mean over the window is log(1 + j) / j,
    j = samples / base (`agent.analysis.conformal`)."""
    if base <= 0 or samples <= 0:
        return 1.0
    joined = samples / base
    return math.log1p(joined) / joined


def _round_shares(per_round: float, rounds: int, base: int) -> FloatArray:
    """Each round's mean baseline share of its samples' conformal reference, base / (base
    + t) over the round's t (`agent.analysis.conformal`); all 1 without a baseline (a test
    against a fixed level)."""
    if base <= 0:
        return np.ones(rounds)
    start = base + per_round * np.arange(rounds)
    shares: FloatArray = base / per_round * np.log1p(per_round / start)
    return shares


@functools.lru_cache(maxsize=256)
def _round_groups(rounds: int) -> np.ndarray:
    """Edges of the window's rounds in at most 32 groups, growing geometrically: what a
    round sees changes fastest in the first rounds (a conformal reference's baseline share).
    Kept by `rounds` (read-only): every `detectable` search of a window asks for them."""
    edges = np.unique(np.round(np.geomspace(1, rounds + 1, 33)).astype(int)) - 1
    edges.flags.writeable = False
    return edges


@functools.lru_cache(maxsize=256)
def _reference_sizes(total: float) -> FloatArray:
    """The deploy samples a conformal reference holds at which `_exceedance_rounds` reads
    its path, 0 to `total` (read-only, kept: each scale tried reads the same)."""
    t = np.unique(np.concatenate([[0.0], np.geomspace(1.0, max(total, 1.0), 96)]))
    t.flags.writeable = False
    return t


def _group_means(values: FloatArray, edges: np.ndarray) -> FloatArray:
    """Each group's mean of per-round values (`_round_groups`' edges)."""
    out: FloatArray = np.add.reduceat(values, edges[:-1]) / np.diff(edges)
    return out


def _trend_inflation(round_means: FloatArray, variance: float, per_round: float) -> float:
    """What a trend in the rounds' expected means (a conformal reference's falling baseline
    share, `_round_shares`) adds to the variance inflation the look measures across the
    window's rounds (`stats.inflation_of_sums`): it reads their spread as burstiness. One
    sample's null `variance`; nothing for a flat trend or a single round."""
    if round_means.size < 2 or per_round <= 0 or variance <= 0:
        return 0.0
    return float(np.var(round_means, ddof=1) * per_round / variance)


def _baseline_noise(variance: float, samples: float, base: int) -> float:
    """The variance a deploy's conformal statistic (its placements or its samples past the
    quantile, summed over a window of `samples`) draws from its baseline of `base` samples
    when the deploy differs from it: the baseline's sampling error (one sample's `variance`
    / base: its empirical distribution, or its quantile's share) moves the placement of
    every sample it is a part of the reference of alike, by its share base / (base + t) of
    it; summed, base x log(1 + samples / base). None under the null: there the placements
    are uniform whatever the baseline drew (`agent.analysis.conformal`), but what a rule
    can detect is the power under the change, where they are not."""
    if base <= 0 or samples <= 0:
        return 0.0
    return variance / base * (base * math.log1p(samples / base)) ** 2


def _pass_end(test: PassTest, mean: float, variance: float, t: float, t_opt: float) -> float:
    """A pass test's confidence-sequence end after `t` rounds of `mean` and `variance`."""
    radius = stats.cs_radius(t, variance, test.alpha, t_opt)
    return mean + radius if test.upper else mean - radius


def _reach_end(
    test: PassTest,
    mean: float,
    variance: float,
    per_round: float,
    design: float,
    weight: Callable[[int], float],
    t: int,
    t_opt: float,
) -> float:
    """`SequentialRule.pass_reach`'s end after `t` rounds of `mean`: a share's or rate's by
    its binomial sequence on the rounds' expected counts (`_count_ends`, divided by
    `design`, as a window's own, its weight on no event that of a window of `t` rounds),
    a bare value's by its normal mixture (`variance`)."""
    if test.statistic == "value":
        return _pass_end(test, mean, variance, t, t_opt)
    lower, upper = _count_ends(
        test, mean * per_round * t, per_round * t, design, weight(t), one=True
    )
    return upper if test.upper else lower


def _count_ends(
    test: PassTest,
    bad: float,
    total: float,
    design: float,
    weight: float = 0.0,
    *,
    one: bool = False,
) -> tuple[float, float]:
    """A share's or rate's confidence-sequence ends on its window's counts (`bad` of
    `total`) divided by the design effect (`stats.binomial_cs_end`, at the test's level),
    the end the test reads with `weight` on no event (`stats.no_event_weight`), the other
    on the uniform mixture. `one`: only the end the test reads (the other is 0 or 1)."""
    design = max(design, 1.0)
    bad, total = bad / design, total / design
    upper = (
        stats.binomial_cs_end(
            bad, total, test.alpha, upper=True, none_weight=weight if test.upper else 0.0
        )
        if test.upper or not one
        else 1.0
    )
    lower = (
        0.0
        if test.upper and one
        else stats.binomial_cs_end(
            bad, total, test.alpha, upper=False, none_weight=0.0 if test.upper else weight
        )
    )
    return lower, upper


def _shows(test: PassTest, end: float) -> bool:
    """Whether a confidence sequence's end lies on the good side of the test's limit."""
    return end <= test.limit if test.upper else end >= test.limit


@dataclass(frozen=True, slots=True)
class PassReach:
    """Where a bound's evidence would stand at the window's end on a release just like its
    baseline, or the best one over an outage's (`SequentialRule.pass_reach`)."""

    test: PassTest
    mean: float
    """The round statistic on the baseline (a rate, a share past the cutoff); over an
    outage's, the best a release can show (0 for a `max`, 1 for a `min`)."""
    reached: float | None
    """The confidence sequence's end after the window's rounds (None: one round, too few
    for a sequence)."""
    rounds_needed: int | None
    """Rounds a window would need to show the bound holds by its end (None: never, the
    baseline is past it)."""


@dataclass(frozen=True, slots=True)
class Reached:
    """Where a bound's evidence stands: the confidence sequence's end against the limit."""

    test: PassTest
    value: float | None
    """The upper (or lower) end of the confidence sequence; None before two rounds."""
    holds: bool


def _count_ladder(
    share: float, limit: Callable[[float], float]
) -> list[tuple[float, float, float]]:
    """`SequentialRule._ladder` for the two-sample count test, over `COUNT_LADDER`'s levels
    and weights (the same construction and proof: `SequentialRule._two_sample`)."""
    tail = share * COUNT_TAIL_SHARE
    kept = [(b, w) for b, w in COUNT_LADDER if b > tail]
    first, rest = kept[0][1], sum(w for _, w in kept[1:])
    weights = [first] + [w * (1.0 - first) / rest for _, w in kept[1:]]
    betas = [b for b, _ in kept]
    log_e = np.log(np.cumsum([w / b for w, b in zip(weights, betas, strict=True)]))
    limits = [limit(b) for b in [*betas[1:], tail]]
    return [(v, 0.0, float(log_e[k])) for k, v in enumerate(limits)]


def _bare_floor(metric: str, rate: float, bound: float, up: bool) -> float:
    """A relative bound on a bare baseline figure (no counts) taken at face value: where
    it works out to 0 (an increase on a figure of 0), the threshold policy's, max(baseline x
    (1 + delta), baseline + floor) (`change_floor`), so a zero baseline does not leave the
    test a level of 0 (it had none: nothing failed it, where threshold and fixed did)."""
    if up and bound <= 0.0:
        return max(bound, rate + change_floor(metric))
    return bound


def _from_json(log_values: list[float | str | None]) -> list[float]:
    """A stored e-detector as floats: None is log 0, "inf" and "nan" themselves
    (`_to_json`)."""
    return [-math.inf if v is None else float(v) for v in log_values]


def _sr_step(stored: list[float | str | None], log_f: list[float]) -> list[float]:
    """`stats.sr_update(_from_json(stored), log_f)` in one pass, the same operations (each
    test's e-detector, every round)."""
    exp, log1p, out = math.exp, math.log1p, []
    for v, f in zip(stored, log_f, strict=True):
        m = -math.inf if v is None else float(v)
        out.append(float(f) + (m + log1p(exp(-m)) if m > 0 else log1p(exp(m))))
    return out


def _to_json(log_values: list[float]) -> list[float | str | None]:
    """An e-detector as strict JSON, which holds no infinity or NaN: log 0 as None (as
    states have always stored it), +inf and NaN as "inf" and "nan", so each reads back as
    itself (both were None, read back as log 0: a +inf detector restarted from 0)."""
    return [
        v if math.isfinite(v) else None if v == -math.inf else "nan" if v != v else "inf"
        for v in log_values
    ]


def _fold_pass(st: dict[str, Any], x: float, size: float) -> None:
    """One round into a pass test's state: the round statistic's running moments
    (`_welford`) and its events, x of `size` (the binomial sequence's counts, `_count_ends`;
    a state from before them counts its rounds so far at their mean)."""
    st["bad"] = _events(st) + x * size
    _welford(st, x, size)


def _events(st: dict[str, Any]) -> float:
    """A pass test's events so far: `bad`, or for a state stored before it was kept, its
    rounds so far at their mean."""
    return float(st.get("bad", st["mean"] * st["size"]))


def _welford(st: dict[str, Any], x: float, size: float) -> None:
    st["t"] += 1
    delta = x - st["mean"]
    st["mean"] += delta / st["t"]
    st["m2"] += delta * (x - st["mean"])
    st["size"] += size


def _finite(values: tuple[float, ...]) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    return array[np.isfinite(array)]


def _period_of(sizes: tuple[int, ...], n: int) -> npt.NDArray[np.intp]:
    """Each of `n` pooled values' period, from the periods' sizes in order; empty unless
    there are two periods or more and their sizes account for every value."""
    if len(sizes) < 2 or any(s < 0 for s in sizes) or sum(sizes) != n:
        return _NO_PERIODS
    return np.repeat(np.arange(len(sizes), dtype=np.intp), sizes)


def _has_counts(obs: Observation) -> bool:
    return obs.count is not None and obs.total is not None and obs.total > 0


def _is_share(rule: Rule) -> bool:
    """A bare value in [0, 1] (a rate), for which a `min` bound has a bounded bad side."""
    return rule.metric.endswith("_rate")

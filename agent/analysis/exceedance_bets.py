"""The exceedance test's tilted bets on a round's count of samples past the baseline's quantile:
evidence that grows with the round's size under the dependence within a round that the
baseline's periods show, each round's gain capped so that rare heavy rounds the periods
missed cannot fail a good release alone.

Pure: no I/O, no clock. `agent.analysis.sequential` calls `exceedance_correlation` once per
window and `log_factors` once per round; nothing here keeps state between rounds.

Why. The exceedance test's linear bets 1 + lambda (y - 1) (y: the round's samples past the
quantile over those its level allows) are e-values whatever the dependence within a round,
so they are capped (lambda <= `stats.MAX_BET`) and a round of a tail regression (latency x3
for one request in ten: y about 1.66) gains at most log(1 + 0.98 x 0.66), 0.5 nats, however
many samples it holds: at the daemon's 30 s rounds about fifteen rounds to fail. A round's
count C of n samples past the quantile is a count against a known level p (the quantile's):
under the null, at its edge, each conformal indicator (its share of theta past the quantile,
in [0, 1]) has mean p (`agent.analysis.conformal`), so for independent samples exp(theta C -
n log(1 - p + p e^theta)) is an e-value (convexity: e^(theta x) <= 1 - x + x e^theta on [0,
1]), the binomial likelihood ratio against p1 = p r for theta = logit(p1) - logit(p). Samples
of one round move together (a slow host, a cold cache): the baseline's periods (background
runs, provider buckets) show how much, as they do for the rank test's placements
(`agent.analysis.rank_bets`): rho, the correlation of the indicators within a period, at its
Student's t upper limit (`stats.inflation_limit`; its level charged to the test's share,
`agent.analysis.sequential.CORRELATION_SHARE`), gives the design effect D = 1 + (n - 1)
rho, and the count is read as D times a binomial of n / D trials (quasi-binomial, McCullagh &
Nelder ch. 9): log factor (theta C - n log(1 - p + p e^theta)) / D. At D = n (rho 1, or
nothing measured) it is one bet on the round's share, an e-value for any dependence; at D = 1
the exact binomial one.

Rare heavy rounds. A round slowed a lot (most of its samples past the quantile), a few in a
hundred, is the case no design effect covers: 60 periods often show none (0.97^60, 16% of
baselines at 3 in 100), and then the measured rho is near 0 and one such round of the release
would be a fortune of evidence. So each tilted bet gains at most `TILTED_ROUND_CAP` nats a
round (min(f, G) has mean at most f's: still an e-value where the model holds): failing on
them takes several rounds past the quantile, as a regression gives every round and a rare
heavy round does not. The linear bets keep their part of the mixture (`TILTED_WEIGHT`).
Episodes that span rounds correlate the rounds themselves, which no bet here is valid
under: every bet of the test, linear ones included, gains at most
`rank_bets.episode_cap` a round (`agent.analysis.sequential` applies it).

Measured (`tests/analysis/test_exceedance_dependence.py` and the same simulation at other
sizes; a `latency_p95` bound of +10%, 60 baseline periods, 30 rounds; linear bets alone ->
these -> uncapped): one request in ten x3 at 300 samples a round, alpha 0.005, fails at a
median round 15 -> 7 -> 2.5. At the bound, alpha 0.1 (the test's share 0.05), false fails:
rounds slowed whole (log-sd 0.3) 3 -> 2 -> 7 of 150 at 100 a round, 9 -> 9 -> 14 of 200 at
300; three rounds in a hundred x3 5 -> 2 -> 23 of 150 at 100, 8 -> 5 -> 20 of 200 at 300;
one in a hundred x5 11 -> 4 -> 32 of 200 at 300. The decision benchmark at its defaults (30
s rounds, 20 windows a regression cell): `latency_tail_x3` in a median 420 -> 210 s at 10
req/s and 450 -> 150 s at 100 (the Kayenta-style peer's 300 s), 510 -> 615 s at 1 req/s
(found in 55% -> 50%: there a round holds 30 samples, and the linear bets have half the
weight); no false rollback in any A/A-like cell.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from agent.analysis import stats
from agent.analysis.stats import FloatArray

TILTED_RATIOS: FloatArray = np.array([1.25, 1.5, 2.0, 3.0, 5.0])
"""The tilted bets' alternatives, p1 = p x r (the likelihood ratio against each): a tail
regression past the quantile by 25% to five times. They sit between the aimed bets and the
count bets (`register`): the e-detector mixes a kind's last `stats.DETECTOR_BETS`, which stay
the largest count bets, so a regression that starts mid-window is found as before (with
them last, latency x2 from round 300 of 10 samples a round took 27 rounds where 8 from the
deploy: `tests/analysis/test_onset.py`)."""
TILTED_RATIO_WEIGHTS: FloatArray = np.array([0.2, 0.3, 0.2, 0.15, 0.15])
"""Their prior weights among themselves."""
TILTED_WEIGHT = 0.5
"""The tilted bets' part of the exceedance test's mixture from the deploy (the linear bets,
aimed and count, keep the rest): they hold only as far as the periods measured the rounds'
dependence and each gains at most `TILTED_ROUND_CAP` a round, so the linear bets still
answer for what they cannot."""
TILTED_ROUND_CAP = 1.5
"""The most nats a tilted bet gains in one round. A regression past the quantile every round
reaches the test's bar (about 8 nats with the mixture's weights) in six rounds; a good
release whose rare heavy rounds the baseline did not show needs six of them in one window."""


def exceedance_correlation(
    sorted_values: FloatArray,
    period_of: npt.NDArray[np.intp],
    level: float,
    alpha: float,
    *,
    below: bool = False,
) -> float | None:
    """Upper limit (level `alpha`) of rho, the correlation within one of the baseline's
    periods of its samples being past the baseline's quantile (its top `level` share by
    placement, its bottom one when `below`); None when the periods measure nothing (fewer
    than two, one sample each).

    Period p's count c_p of n_p has variance n_p p q (1 + (n_p - 1) rho): the moment estimate
    (`stats.intra_period_correlation`) as a design effect at the mean period size, widened
    for the few periods it comes from (`stats.inflation_limit`: with fewer than two samples
    past it, every period one unit, rho 1), read back as rho."""
    shape = stats.period_shape(period_of, sorted_values.size)
    if shape is None:
        return None
    sizes, periods, mean_size = shape
    placed = stats.placements(sorted_values, sorted_values)
    past = placed < level if below else placed > 1.0 - level
    counts = np.bincount(period_of[past], minlength=sizes.size)
    rho = stats.intra_period_correlation(counts, sizes) or 0.0
    measured = stats.design_effect(mean_size, rho)
    events = float(min(np.count_nonzero(past), period_of.size - np.count_nonzero(past)))
    return stats.correlation_limit(measured, periods, events, mean_size, alpha)


def log_factors(y: float, n: float, level: float, rho: float | None) -> list[float]:
    """One round's log factors of the tilted bets: y the round's samples past the quantile
    over n level (those its level allows), n its samples, rho the measured correlation (None:
    nothing measured, D = n). Each bet's quasi-binomial likelihood ratio against p r
    (`TILTED_RATIOS`), capped at `TILTED_ROUND_CAP`."""
    if n <= 0.0:
        return [0.0] * TILTED_RATIOS.size
    design = n if rho is None else stats.design_effect(n, rho)
    p = level
    count = min(max(y, 0.0) * n * p, n)
    out = []
    for r in TILTED_RATIOS.tolist():
        p1 = min(p * r, 0.5 * (1.0 + p))
        theta = math.log(p1 / p) - math.log1p(-p1) + math.log1p(-p)
        # n log(1 - p + p e^theta) = n log((1 - p) / (1 - p1)) at this theta
        log_f = (theta * count + n * (math.log1p(-p1) - math.log1p(-p))) / design
        out.append(min(log_f, TILTED_ROUND_CAP))
    return out


def register(kind: str, aimed: FloatArray, count: FloatArray, linear_weights: FloatArray) -> None:
    """The exceedance test's bets as one kind (`stats.register_bets`): its linear ones (the
    `aimed` multiples, then the `count` bets, `linear_weights` among them) at 1 -
    `TILTED_WEIGHT` of the mass, the tilted ones between the two (`log_factors` returns
    them so placed: `linear_log_weights` reads the linear ones back)."""
    share = np.asarray(linear_weights, dtype=np.float64) / np.sum(linear_weights)
    tilted = TILTED_WEIGHT * TILTED_RATIO_WEIGHTS / np.sum(TILTED_RATIO_WEIGHTS)
    linear = (1.0 - TILTED_WEIGHT) * share
    stats.register_bets(
        kind,
        np.concatenate([aimed, TILTED_RATIOS, count]),
        np.concatenate([linear[: aimed.size], tilted, linear[aimed.size :]]),
    )


def linear_log_weights(kind: str, aimed: int) -> FloatArray:
    """The log prior weights of a kind's linear bets in the mixture (`register`'s order: its
    `aimed` first bets, then past the tilted ones)."""
    weights = stats.BET_LOG_WEIGHTS[kind]
    tilted = slice(aimed, aimed + TILTED_RATIOS.size)
    out: FloatArray = np.delete(weights, np.arange(weights.size)[tilted])
    return out

"""A relative count bound's rounds ranked among its baseline's periods: a test with no model
of how errors burst, that finds a large regression in two rounds.

Pure: no I/O, no clock, no global random state. Why: every count bet of the two-sample test
(`agent.analysis.sequential`) is linear in the round's count, since that is what holds
whatever the dependence between a round's requests, so a round adds log(1 + 0.98 (Y - 1))
nats at most (Y = bad / allowed): errors x5 at 10 req/s took five or six 30 s rounds. A bet
tilted by the burstiness measured across the baseline's periods found it in one or two, and
was invalid when errors burst for whole rounds with a heavy tail (60 periods measured rho
0.02-0.03 against a true 0.2). Without a model one round can only say "more extreme than
all N periods": this test bets on that, validly, in the way of Vovk's conformal test
martingales (Vovk, "Testing randomness online", Statistical Science 2021; Vovk, Gammerman &
Shafer, "Algorithmic learning in a random world", 2005, ch. 8).

Scores. Each point (a baseline period, a round) is scored by its bad events among `size`
of its requests drawn without replacement (`size`: the smallest period's requests), a
round's each kept with probability 1 / (1 + delta), delta the rule's tolerance. The draw to
a common size makes points of different sizes comparable without a model: given a point's
rate P, if its requests are exchangeable among themselves, `size` of them hold
Binomial(size, P) bad events whatever the point's own size, so periods and rounds of any
sizes share one distribution of scores when their rates do (a score that reads the rate,
bad / n, would make the smaller points the more extreme). The thinning puts a deploy at
exactly the bound (+delta, the `boundary` family: every round's rate (1 + delta) times a
baseline period's) onto the baseline's distribution: binomial thinning of Binomial(n, (1 +
delta) P) is Binomial(n, P). A round with fewer than `size` requests is not scored (no bet,
not kept).

Ranks. Round t's smoothed conformal p-value among the N periods and the t rounds scored so
far (itself included), p_t = (#{scores > s_t} + theta_t #{scores = s_t}) / (N + t), theta_t
uniform: the many ties of a few errors a period cost nothing. Under the null, the periods'
and the rounds' (thinned) scores are exchangeable, so p_1, p_2, ... are independent and
uniform (Vovk et al. 2005, ch. 8), and a product of bets with mean 1 under the uniform is a
test martingale. A deploy better than the bound (a lower rate) only lowers the rounds'
scores, which raises their p-values; the bets are non-increasing in p.

Bets. A regression large enough to matter puts every round above every period: round t
then ranks within the top t of N + t, so the bet "p_t <= t / (N + t)", factor (N + t) / t,
gains C(N + T, T) over T rounds, the most any bet can gain from ranks (the deploy's rounds
among themselves are in random order): 61 x 31 = 1,891 over two rounds at N = 60. Mixed
(`STRATEGIES`) with the same bet at a stake of 0.9 (a round below one period costs a tenth,
not all) and with "p_t <= 2t / (N + t)" (one period above is allowed). Each strategy is a
product of its own factors; the test's e-value is their mixture by `WEIGHTS`
(`agent.analysis.stats.log_mix`, registered as "period_ranks").

E-detector. The test from the deploy is a test martingale from the deploy only: a
regression that starts at round k is ranked after k - 1 rounds that bet and lost (a
round below one period costs 0.99 or 0.9 of the wealth). So a martingale is also started at
every round, the same bets counted from its own start ("round t ranks within the top
t - k + 1", c = g (t - k + 1) / (N + t)), on the same p-values: valid as they are, since
each martingale bets only from its start, and the good rounds before an onset are in the
reference set, exchangeable with the periods under the null. Three rounds after 10 good
ones above all 60 periods gain C(73, 3) = 62,196. The e-detector is their sum
(`agent.analysis.stats.sr_window`, `DETECTOR_ROUNDS` of them kept), mixed by
`DETECTOR_WEIGHTS`, held to rounds / its level as the Shiryaev-Roberts statistic is.

Randomness. The draws (subsampling, thinning, theta) come from generators seeded by a hash
of the baseline's counts, the point's index and its own counts: a verdict is a function of
its inputs (a restart, a replica, a worded verdict replay it exactly), and no data can
correlate with the hash. What the test assumes: the baseline's periods and the deploy's
rounds are exchangeable at the null's edge (each request of a point exchangeable with the
point's others, the points' rates drawn alike). A deploy that keeps the mean rate but makes
its errors burstier than the baseline's may fail it; a check's rounds that pool several
checks' probes (the daemon's background runs are one check's each) are less dispersed than
the periods, which errs the safe way.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES: tuple[tuple[float, float], ...] = ((1.0, 0.99), (1.0, 0.9), (2.0, 0.99))
"""(g, stake) of each bet: factor 1 - stake + stake 1{p <= c} / c, c = g t / (N + t); a stake
below 1 keeps the wealth finite (a JSON number) when a round misses."""
WEIGHTS: tuple[float, ...] = (0.6, 0.25, 0.15)
"""The strategies' prior weights: most on the bet that gains the most in two rounds."""
DETECTOR_WEIGHTS: tuple[float, ...] = (0.75, 0.2, 0.05)
"""The e-detector's prior weights on the same strategies (any fixed mixture of test
martingales is one). Its martingales must catch an onset in three rounds, where the
g = 2 bet, which halves every factor, gains an eighth of the top-rank bet's (7,556 against
60,399 in three rounds after 10 good ones among 60 periods): at `WEIGHTS` the mixture was
48,813, short of the decision benchmark's 30 / (0.2 a) = 50,554 (a = 0.00297, the
two-sample e-process's level from the deploy), so errors x5 from minute 5 took four 30 s
rounds (a median of 120 s at 10 and 100 req/s); here it is 54,829, and 131 and 195 of
200 windows are caught in three (out of sample; 41 and 60 before)."""

MIN_PERIODS = 10
"""Fewer periods rank nothing worth a share of the budget (a top rank among 9 is worth 10)."""
ROUNDS_TO_CATCH = 2
"""The test is worth its share of the budget only if rounds above every period reach its
threshold in this many rounds (`catches_in`): it exists to catch a large regression in two
rounds, which the two-sample test does in five or six; with fewer periods (at most C(N + 2,
2) in two rounds) or a smaller level it would only take from the two-sample test. The
daemon's default (a 1 h lookback of 30 s background runs: 120 periods) reaches 4,300 in two
rounds, past 1,770 (this test's level when each of four rules has 0.0025); the decision
benchmark's 60 periods reach 1,112, past its 886."""

MOST_ROUNDS = 1000
"""`rounds_to_catch` looks no further (a window of 1,000 rounds is 8 hours at 30 s)."""

DETECTOR_ROUNDS = 8
"""Each of the e-detector's martingales (one started at every scored round) bets for this
many rounds and is then dropped (`stats.sr_window`): it bets that its rounds rank within
the top `age` of the N + t points (c = g age / (N + t), the bet of the test from the deploy
counted from its own start), so its factors depend on its age and each needs its own
wealth. A regression these bets catch is above every period and every earlier round, and
is caught within three or four rounds (errors x5 at 10 req/s, 60 periods, from minute 5);
the two-sample test's e-detector keeps the slow ones. Dropping a martingale (its wealth
to 0) keeps it a nonnegative supermartingale, so the detector's bound holds."""

Seen = list[list[int]]
"""The rounds' scores so far, as the state keeps them: [sorted scores, their counts]; as
many numbers as distinct scores, never more with more rounds."""


def seeded_generator(*parts: object) -> np.random.Generator:
    """A generator seeded by a hash of `parts`: the ranks tests' draws are a function of
    their inputs (the judge is pure), shared by the count and latency period ranks."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "little")))


@dataclass(frozen=True, slots=True)
class PeriodRanks:
    """The baseline's periods as scores, and how a round is scored and ranked among them."""

    periods: tuple[int, ...]
    """The periods' scores, sorted."""
    size: int
    """Requests each point's score is drawn from (the smallest period's)."""
    keep: float
    """A round's bad event is kept with this chance: 1 / (1 + delta)."""
    salt: str
    """A digest of the baseline's counts: the window's draws depend on it."""

    @classmethod
    def of(cls, period_counts: Sequence[tuple[int, int]], delta: float) -> PeriodRanks | None:
        """The test for a baseline's (bad, requests) periods and the rule's tolerance; None
        with fewer than `MIN_PERIODS` periods with requests."""
        usable = [(int(b), int(n)) for b, n in period_counts if n > 0 and 0 <= b <= n]
        if len(usable) < MIN_PERIODS or delta < 0:
            return None
        size = min(n for _, n in usable)
        salt = hashlib.blake2b(repr(usable).encode(), digest_size=8).hexdigest()
        scores = [
            int(seeded_generator(salt, "period", i, b, n).hypergeometric(b, n - b, size))
            if n > size
            else b
            for i, (b, n) in enumerate(usable)
        ]
        return cls(tuple(sorted(scores)), size, 1.0 / (1.0 + delta), salt)

    def catches_in(self, rounds: int, log_threshold: float) -> bool:
        """Whether `rounds` rounds above every period reach `log_threshold` (the first
        strategy: each gains 1 - stake + stake (N + t) / t)."""
        g, stake = STRATEGIES[0]
        n = len(self.periods)
        gained = sum(
            math.log(1.0 - stake + stake * (n + t) / (g * t)) for t in range(1, rounds + 1)
        )
        return math.log(WEIGHTS[0]) + gained >= log_threshold

    def rounds_to_catch(self, log_threshold: float) -> int:
        """The fewest rounds above every period that reach `log_threshold` (`catches_in`);
        a large number when none do within `MOST_ROUNDS`."""
        return next(
            (t for t in range(1, MOST_ROUNDS + 1) if self.catches_in(t, log_threshold)),
            MOST_ROUNDS + 1,
        )

    def score(self, index: int, bad: int, total: int) -> int | None:
        """Round `index`'s score: its bad events among `size` of its requests, each kept
        with chance `keep`; None with fewer requests than `size`."""
        if total < self.size or total <= 0:
            return None
        bad = min(max(bad, 0), total)
        rng = seeded_generator(self.salt, "round", index, bad, total)
        drawn = int(rng.hypergeometric(bad, total - bad, self.size)) if total > self.size else bad
        return int(rng.binomial(drawn, self.keep)) if drawn else 0

    def p_value(self, score: int, seen: Seen, index: int) -> float:
        """The round's smoothed conformal p-value among the periods, the rounds `seen`
        before it and itself."""
        above = len(self.periods) - bisect.bisect_right(self.periods, score)
        ties = (
            1 + bisect.bisect_right(self.periods, score) - bisect.bisect_left(self.periods, score)
        )
        rounds = 1
        for s, c in zip(seen[0], seen[1], strict=True):
            rounds += c
            if s > score:
                above += c
            elif s == score:
                ties += c
        theta = float(seeded_generator(self.salt, "theta", index, score).random())
        return (above + theta * ties) / (len(self.periods) + rounds)

    def log_factors(self, p: float, rounds: int, betting: int | None = None) -> list[float]:
        """Each strategy's log factor for a p-value of the `rounds`-th scored round, for a
        martingale that bets for the `betting`-th round (default: every round so far, the
        one started at the deploy): c = g betting / (N + rounds)."""
        n, top = len(self.periods), rounds if betting is None else betting
        out = []
        for g, stake in STRATEGIES:
            c = g * top / (n + rounds)
            if c >= 1.0:
                out.append(0.0)
                continue
            factor = 1.0 - stake + (stake / c if p <= c else 0.0)
            out.append(math.log(factor) if factor > 0.0 else -math.inf)
        return out

    def detector_log_factors(self, p: float, rounds: int) -> list[list[float]]:
        """Each strategy's log factors for the martingales of the e-detector
        (`DETECTOR_ROUNDS`), by how many rounds each has bet, this one included (1: the one
        started at this round): a strategies x ages list, as `stats.sr_window` folds it."""
        ages = range(1, min(DETECTOR_ROUNDS, rounds) + 1)
        by_age = [self.log_factors(p, rounds, a) for a in ages]
        return [list(row) for row in zip(*by_age, strict=True)]


def add_seen(seen: Seen, score: int) -> None:
    """Keep a round's score in `seen` (in place)."""
    scores, counts = seen
    k = bisect.bisect_left(scores, score)
    if k < len(scores) and scores[k] == score:
        counts[k] += 1
    else:
        scores.insert(k, score)
        counts.insert(k, 1)


def seen_rounds(seen: Seen) -> int:
    return sum(seen[1])

"""Wrong passes when errors burst for whole rounds: the pass side's baseline limit.

A relative bound `error_rate max_increase 10%` passes on evidence only when the window's
rate sits below the baseline rate's lower confidence limit +10%. Errors drawn once per 30 s
round (Beta, mean 1%, intra-round correlation rho, as `bench/round_bursts.py`), a baseline
of 60 such periods pooled by `merge`, a deploy just past the bound (+10% x `--over`) for 30
rounds, judged by the default policy (confidence 0.99, pass_on evidence) with this rule
alone: every pass is a wrong one. Also printed: how often the lower limit the pass side
reads sat above the true baseline rate (its level: the rule's share x BASELINE_SHARE).

    python bench/pass_limit_bursts.py               # 300 windows a cell
    python bench/pass_limit_bursts.py --windows 100

Measured (session 48): wrong passes 0 of 300 in every cell, at +12.2% (`--over 1.02`) and
at exactly +10% (`--over 1.0`), also with RATE at 5% (0 of 100 a cell at 100-1000
req/s, rho 0.001-0.05). The lower limit (`BaselineData.rate_limit`, level 0.2%) sat above
the true rate in 0-0.065% of 20,000 baselines a cell (rates 0.03-1%, 10-1000 req/s, rho
0.01-0.2), 0.09% of 30,000 at 100 req/s rho 0.01: valid, unlike the upper limit the failing
side read before `burst_limit` (4.2% at 0.025%). A baseline that over-drew its bursts
measures a larger inflation with its larger count, so the lower limit widens with it; the
under-drawn case shrinks only the upper one. Read through `burst_limit` instead it would
miss 0-0.02% and cut A/A passes of this bound at a 5% rate (1000 req/s, rho 0.001) from 4
of 100 to 1, at no gain in validity: left as it is.

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import BASELINE_SHARE, BaselineData
from agent.analysis.types import Rule
from bench.round_bursts import PERIODS, POLICY, RATE, ROUNDS, SEED, rounds

RULE = Rule("relative", "checks", "error_rate", max_increase=0.1)


def window(rng: np.random.Generator, rps: float, rho: float, over: float) -> tuple[bool, bool]:
    """(whether the window passed, whether the pass side's baseline limit missed)."""
    baseline = merge(rounds(rng, rps, RATE, rho, PERIODS))
    base = BaselineData.from_observation(baseline)
    alpha = (1.0 - POLICY.confidence) * BASELINE_SHARE
    missed = base is not None and base.has_counts and pass_limit(base, alpha) > RATE
    judge = Judge((RULE,), {RULE.name: baseline}, POLICY, horizon=ROUNDS)
    state = judge.start()
    deploy = rounds(rng, rps, RATE * 1.1 * over, rho, ROUNDS)
    for k, obs in enumerate(deploy):
        state = judge.advance(state, {RULE.name: obs}, final=k == ROUNDS - 1)
        if judge.failed_round(state) is not None:
            return False, missed
    return judge.glance(state, final=True).decision == "pass", missed


def pass_limit(base: BaselineData, alpha: float) -> float:
    """The lower limit of the baseline rate the pass side reads (`SequentialRule._pass_test`)."""
    return base.rate_limit(alpha, upper=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--rates", default="10,100,1000", help="requests a second")
    parser.add_argument("--rhos", default="0.01,0.05,0.2", help="intra-round correlations")
    parser.add_argument("--over", type=float, default=1.02, help="the deploy past the bound")
    args = parser.parse_args()
    started = time.perf_counter()
    grid = itertools.product(
        [float(r) for r in args.rates.split(",")], [float(r) for r in args.rhos.split(",")]
    )
    for rps, rho in grid:
        rng = np.random.default_rng([SEED, int(rps), int(rho * 1e4)])
        results = [window(rng, rps, rho, args.over) for _ in range(args.windows)]
        passed = sum(p for p, _ in results)
        missed = sum(m for _, m in results)
        print(
            f"{rps:>5g} req/s  rho {rho:<5g} wrong passes {passed}/{args.windows}"
            f"  lower limit above the true rate {missed}/{args.windows}",
            flush=True,
        )
    print(f"{time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""False rollbacks when errors burst for whole rounds: a harsher check of the count tests'
validity than the decision benchmark's bursts (each second its own rate), for any bet that
models a round's dependence from the baseline's (a linear bet needs no model).

Each 30 s round (the daemon's default `interval`) draws its error rate once, P ~ Beta with
mean p and intra-round correlation rho, and its requests fail independently given P; the
baseline is 60 background periods of 30 s with the same bursts, pooled by `merge` (which
measures rho across them). A/A windows (the deploy's mean rate the baseline's) and
`boundary` ones (exactly +10%, a good deploy by the rule's definition) are judged by the
default policy on `error_rate max_increase 10%` beside `error_rate max` at the deploy's
own mean rate (a one-sample count test at its null's edge): every rollback is a false one,
and the share must stay at most 1 - confidence (0.01).

    python bench/round_bursts.py                 # the grid below, 300 windows a cell
    python bench/round_bursts.py --windows 100   # quicker

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.types import Observation, Policy, Rule

ROUND_S = 30.0
ROUNDS = 30
PERIODS = 60
RATE = 0.01
SEED = 20261205
POLICY = Policy("sequential", confidence=0.99)


def rounds(rng: np.random.Generator, rps: float, p: float, rho: float, k: int) -> list[Observation]:
    """`k` rounds of `rps` requests a second whose error rate is drawn once a round."""
    n = rng.poisson(rps * ROUND_S, size=k)
    kappa = 1.0 / rho - 1.0
    rate = rng.beta(p * kappa, (1.0 - p) * kappa, size=k)
    bad = rng.binomial(n, rate)
    return [
        Observation(value=c / t if t else None, count=int(c), total=int(t), seconds=ROUND_S)
        for c, t in zip(bad, n, strict=True)
    ]


def crossed(state: dict[str, Any]) -> list[str]:
    """Which tests crossed, as `rule/bound:test`, from a judge's state."""
    out = []
    for rule, st in state["rules"].items():
        tests = next(iter(_tests(st)), {})
        out += [f"{rule}/{key}" for key, t in tests.items() if t.get("crossed") is not None]
    return out


def _tests(st: Any) -> list[dict[str, Any]]:
    if isinstance(st, dict):
        if "tests" in st and isinstance(st["tests"], dict):
            return [st["tests"]]
        return [t for v in st.values() for t in _tests(v)]
    return []


def window(rng: np.random.Generator, rps: float, rho: float, factor: float) -> list[str]:
    """The tests that rolled the window back (none: it passed or was inconclusive)."""
    baseline = merge(rounds(rng, rps, RATE, rho, PERIODS))
    rules = (
        Rule("relative", "checks", "error_rate", max_increase=0.1),
        Rule("absolute", "checks", "error_rate", max=RATE * factor),
    )
    judge = Judge(rules, {r.name: baseline for r in rules}, POLICY, horizon=ROUNDS)
    state = judge.start()
    deploy = rounds(rng, rps, RATE * factor, rho, ROUNDS)
    for k, obs in enumerate(deploy):
        state = judge.advance(state, {r.name: obs for r in rules}, final=k == ROUNDS - 1)
        if judge.failed_round(state) is not None:
            return crossed(state)
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--rates", default="1,10,100", help="requests a second, comma-separated")
    parser.add_argument("--rhos", default="0.001,0.01,0.05,0.2", help="intra-round correlations")
    parser.add_argument(
        "--factors", default="1.0,1.1", help="the deploy's rate over the baseline's"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    worst = 0.0
    grid = itertools.product(
        [float(r) for r in args.rates.split(",")],
        [float(r) for r in args.rhos.split(",")],
        [float(f) for f in args.factors.split(",")],
    )
    for rps, rho, factor in grid:
        rng = np.random.default_rng([SEED, int(rps), int(rho * 1e4), int(factor * 10)])
        by: Counter[str] = Counter()
        failed = 0
        for _ in range(args.windows):
            tests = window(rng, rps, rho, factor)
            failed += bool(tests)
            by.update(tests)
        worst = max(worst, failed / args.windows)
        print(
            f"{rps:>4g} req/s  rho {rho:<6g} {'boundary' if factor > 1 else 'A/A':<9}"
            f"false rollbacks {failed}/{args.windows} ({100 * failed / args.windows:.1f}%)"
            + (f"  by {dict(sorted(by.items()))}" if by else ""),
            flush=True,
        )
    print(f"worst cell {100 * worst:.1f}% (at most 1%); {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a schedule of several fixed-horizon looks would catch, and when, against the looks
the judge takes (a relative count bound's at its window's midpoint and end, a rank or
exceedance test's at its end): a group-sequential design's looks and levels, chosen by
measurement.

The decision benchmark's windows (`bench/decisions.py`: same seeds, same judge, the rules
`--rules` names), each stepped to its end. Per round: whether an e-process or e-detector
has crossed (its peak past its threshold: the judge's own fold, whatever its looks do),
and each look-able test's p-value over the rounds so far (`SequentialRule._final_p`, the
judge's look) at the level a schedule gives a look there. A schedule splits a test's look
budget (a count bound's midpoint and end levels together, a rank or exceedance test's end
level) over looks at fractions of the window's rounds by a spending function: the
increments of Lan-DeMets' O'Brien-Fleming-like or Pocock-like alpha(t), each the level
of its own look (Bonferroni: they add up to the budget, so the union bound is the judge's
own, never an approximation of the looks' correlation). A window fails at the first round
an e-process crossed or a look's p-value was within its level; `judge` is the judge's own
looks, whose times match the benchmark's (`tests/analysis/test_look_schedules_bench.py`).

Measured (session 51, 200 windows a cell on seeds the benchmark does not use, offset 1000;
detected share and median time to detect, and on the windows Kayenta-style also detected,
our median against its), looks of the count test at 1/3, 1/2, 2/3 and the end, of the
exceedance test at 1/2, 2/3, 5/6 and the end:

    cell                 judge               OBF-like            Pocock-like
    errors x1.5 @100     100%, 450 vs 300 s  100%, 600 vs 300 s  99%, 450 vs 300 s
    errors x2 @10        97%, 510 s          98%, 540 s          94.5%, 510 s
    rare errors x5 @10   93%, 450 s          93.5%, 480 s        85.5%, 450 s
    latency tail x3 @1   37.5%, 600 vs 600   34.5%, 600 vs 600   31%, 570 vs 600 s

(the tail's looks leave the error cells as they are, the counts' the latency cells; errors
x5 and latency x2 at 10 req/s, 60 s, and latency x1.2 at 1 req/s, 46.5%, under all). No
schedule finds regressions sooner without finding fewer: O'Brien-Fleming-like spending
leaves the early looks too little, Pocock-like the end too little; on the default run's
windows the tail's windows Flagger-style also finds are our e-processes' (480 s against
its 480 s, under every schedule). So the judge keeps its one look at the midpoint.

    python bench/look_schedules.py --family errors_x1.5 --rps 100 --rules errors \\
        --windows 200 --seed-offset 1000
    python bench/look_schedules.py --family latency_tail_x3 --rps 1 --rules latency

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from scipy import stats as sc_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.analysis.policies.sequential import SequentialPolicy
from agent.analysis.sequential import Component, SequentialRule
from bench.decisions import (
    FAMILIES,
    PEER_DEFAULT,
    RULES,
    TRAFFIC,
    flagger_time,
    interval_ratios,
    kayenta_scores,
    kayenta_time,
    observed,
    window_judge,
    window_seeds,
    window_traffic,
)
from bench.error_tests import cell_of

ROUND_S = 30
"""The daemon's `interval`: the benchmark's rounds."""


def obrien_fleming(t: float, alpha: float) -> float:
    """Lan-DeMets' O'Brien-Fleming-like spending: alpha(t) = 2 - 2 Phi(z_{alpha/2} / sqrt t)
    (one-sided form), little spent early."""
    return float(2.0 * sc_stats.norm.sf(sc_stats.norm.isf(alpha / 2.0) / np.sqrt(t)))


def pocock(t: float, alpha: float) -> float:
    """Lan-DeMets' Pocock-like spending: alpha(t) = alpha ln(1 + (e - 1) t), near even."""
    return alpha * float(np.log1p((np.e - 1.0) * t))


Spending = Callable[[float, float], float]


class Schedule(NamedTuple):
    """Looks at these fractions of the window's rounds (the last 1: the end), each at the
    increment of `spending` there; None: the judge's own looks."""

    at: tuple[float, ...]
    spending: Spending | None


COUNT_LOOKS = (1 / 3, 1 / 2, 2 / 3, 1.0)
TAIL_LOOKS = (1 / 2, 2 / 3, 5 / 6, 1.0)
SCHEDULES: dict[str, dict[str, Schedule]] = {
    "judge": {},
    "counts thirds OBF": {"proportion": Schedule(COUNT_LOOKS, obrien_fleming)},
    "counts thirds Pocock": {"proportion": Schedule(COUNT_LOOKS, pocock)},
    "exceedance OBF": {"exceedance": Schedule(TAIL_LOOKS, obrien_fleming)},
    "exceedance Pocock": {"exceedance": Schedule(TAIL_LOOKS, pocock)},
}
"""Per schedule, per test (`Component.test`) the looks replacing the judge's; a test not
named keeps the judge's."""


def looks(comp: Component, horizon: int, schedule: Schedule | None) -> list[tuple[int, float]]:
    """(round index, level) of `comp`'s looks: the judge's own, or `schedule`'s over the
    same budget (the increments of its spending function, which add up to it)."""
    budget = comp.alpha_midway + comp.alpha_final
    if schedule is None or schedule.spending is None:
        own = [(horizon - 1, comp.alpha_final)]
        return [(horizon // 2 - 1, comp.alpha_midway), *own] if comp.alpha_midway else own
    spent = [schedule.spending(t, budget) for t in schedule.at]
    spent[-1] = budget  # every spending function spends it all at the end
    levels = np.diff([0.0, *spent])
    return [
        (max(round(t * horizon), 1) - 1, float(level))
        for t, level in zip(schedule.at, levels, strict=True)
    ]


def window(args: tuple[str, int, np.random.SeedSequence, frozenset[str] | None]) -> dict[str, Any]:
    """One window's time to detect under each schedule (None: never), and the peers'."""
    family_key, rps, seed, rules = args
    family = next(f for f in FAMILIES if f.key == family_key)
    pre, deploy, control = window_traffic(np.random.default_rng(seed), rps, family)
    judge = window_judge(pre, ROUND_S, rules)
    policy = cast(SequentialPolicy, judge.rule_policy)
    state = judge.start()
    horizon = judge.horizon
    found: dict[str, int | None] = dict.fromkeys(SCHEDULES)
    for k in range(horizon):
        state = judge.advance(state, observed(deploy, k, ROUND_S, rules))
        for rule in RULES:
            st = state["rules"][rule.name]
            if st["seq"] is None or st["kind"] is None:
                continue
            tests = policy.tests(rule, st["kind"])
            for name, by_test in SCHEDULES.items():
                if found[name] is None and _fails(tests, st["seq"], k, by_test):
                    found[name] = k
    return {
        "ours": {n: None if k is None else (k + 1) * ROUND_S for n, k in found.items()},
        "kayenta": kayenta_time(kayenta_scores(deploy, control), PEER_DEFAULT["kayenta"]),
        "flagger": flagger_time(interval_ratios(pre, deploy), PEER_DEFAULT["flagger"]),
    }


def _fails(
    tests: SequentialRule, seq: dict[str, Any], k: int, by_test: dict[str, Schedule]
) -> bool:
    """Whether round `k` fails the rule under these looks: an e-process or e-detector has
    crossed, or a look at this round finds its p-value within its level."""
    if seq["samples"] < max(1, tests.rule.min_samples):
        return False
    for comp in tests.components:
        if tests.margin(seq, comp) >= 0.0:
            return True
        if not comp.alpha_final:
            continue
        for at, level in looks(comp, tests.horizon, by_test.get(comp.test)):
            st = seq["tests"][comp.key]
            if at == k and level > 0 and tests._final_p(comp, st, level) <= level:
                return True
    return False


def run(
    family: str, rps: int, windows: int, offset: int = 0, rules: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """The cell's first `windows` windows (of seed set `offset`)."""
    jobs = [(family, rps, s, rules) for s in window_seeds(cell_of(family, rps), windows, offset)]
    with ProcessPoolExecutor(2) as pool:
        return list(pool.map(window, jobs, chunksize=4))


def report(found: list[dict[str, Any]]) -> str:
    lines = []
    for name in SCHEDULES:
        times = [w["ours"][name] for w in found]
        hits = [t for t in times if t is not None]
        line = f"{name:22s} {len(hits) / len(times):6.1%}"
        line += f" median {statistics.median(hits) if hits else '-'}"
        for peer in ("kayenta", "flagger"):
            both = [(t, w[peer]) for t, w in zip(times, found, strict=True) if t and w[peer]]
            if both:
                ours, theirs = (statistics.median(x) for x in zip(*both, strict=True))
                line += f" | {peer} {len(both)}: {ours} vs {theirs} s"
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="errors_x1.5")
    parser.add_argument("--rps", type=int, default=100, choices=TRAFFIC)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument(
        "--rules",
        type=lambda v: frozenset(v.split(",")),
        default=None,
        help="judge only these of the rules (errors, latency), as bench/decisions.py's",
    )
    args = parser.parse_args()
    print(report(run(args.family, args.rps, args.windows, args.seed_offset, args.rules)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

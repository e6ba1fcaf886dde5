"""Which of the error rule's tests fails each window of a decision-benchmark cell first, and
how far each got in the windows none failed: whether a cell near its detection goal misses
for a share spread over tests that never fire at its rate, for a bet too timid, or for too
few data (a look's p-value far past its level).

The decision benchmark's windows (`bench/decisions.py`: same seeds, same judge, the error
rule alone, `--rules errors`), stepped to their first failure or their end. Per window the
tests that crossed at that round, by how: `proportion:deploy` / `periods:deploy` (an
e-process from the deploy at log(1 / alpha)), `...:detector` (an e-detector at log(horizon /
alpha_d)), `midway` or `final` (the two-sample test's looks at the window's midpoint and
end); per missed window each test's peak log e-value against its threshold and the looks'
p-values against their levels.

    python bench/error_tests.py --family errors_x2 --rps 10 --windows 200
    python bench/error_tests.py --family rare_errors_x5 --windows 200 --seed-offset 1000

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.analysis.policies.sequential import SequentialPolicy
from bench.decisions import (
    ERRORS,
    FAMILIES,
    ROUNDS,
    TRAFFIC,
    observed,
    window_judge,
    window_seeds,
    window_traffic,
)

RULES = frozenset({"errors"})


class Window(NamedTuple):
    failed_s: float | None
    """Seconds from the deploy to the round the rule failed at (None: never)."""
    by: tuple[str, ...]
    """The tests that crossed at that round, by how (`crossed_by`)."""
    reached: tuple[str, ...]
    """Each test's peaks against its thresholds and its looks' p-values against their
    levels, at the failure or the window's end."""


def cell_of(family: str, rps: int) -> int:
    """The cell's number in the benchmark's order, which its windows' seeds depend on."""
    cells = itertools.product(enumerate(FAMILIES), TRAFFIC)
    return next(c for c, ((_, f), r) in enumerate(cells) if f.key == family and r == rps)


def run(family: str, rps: int, windows: int, offset: int = 0, round_s: int = 30) -> list[Window]:
    """The cell's first `windows` windows (of seed set `offset`), each to its first failure."""
    fam = next(f for f in FAMILIES if f.key == family)
    out = []
    for seed in window_seeds(cell_of(family, rps), windows, offset):
        pre, deploy, _ = window_traffic(np.random.default_rng(seed), rps, fam)
        judge = window_judge(pre, round_s, RULES)
        state, rounds, at = judge.start(), ROUNDS // round_s, None
        for k in range(rounds):
            round_ = observed(deploy, k, round_s, RULES)
            state = judge.advance(state, round_, final=k == rounds - 1)
            if (at := judge.failed_round(state)) is not None:
                break
        st = state["rules"][ERRORS.name]
        tests = cast(SequentialPolicy, judge.rule_policy).tests(ERRORS, st["kind"])
        by, reached = [], []
        for comp in tests.components:
            t = st["seq"]["tests"][comp.key]
            how = crossed_by(comp, t, tests.horizon)
            if at is not None and t["crossed"] == at:
                by.append(how)
            reached.append(
                f"{comp.test} {t['peak']:.2f}/{comp.log_threshold:.2f}"
                f" det {t['peak_d'] or 0.0:.2f}/{comp.detector_log_threshold(tests.horizon):.2f}"
                + looks(comp, t)
            )
        failed_s = None if at is None else float((at + 1) * round_s)
        out.append(Window(failed_s, tuple(by), tuple(reached)))
    return out


def crossed_by(comp: Any, t: dict[str, Any], horizon: int) -> str:
    """How a test that crossed did: its e-process, its e-detector, or one of its looks."""
    if t["peak"] >= comp.log_threshold:
        return f"{comp.test}:deploy"
    if t["peak_d"] is not None and t["peak_d"] >= comp.detector_log_threshold(horizon):
        return f"{comp.test}:detector"
    if t.get("midway_p") is not None and t["midway_p"] <= comp.alpha_midway:
        return "midway"
    return "final"


def looks(comp: Any, t: dict[str, Any]) -> str:
    parts = [
        f" {name} p {t[key]:.2g}/{level:.2g}"
        for name, key, level in (
            ("midway", "midway_p", comp.alpha_midway),
            ("final", "final_p", comp.alpha_final),
        )
        if t.get(key) is not None
    ]
    return "".join(parts)


def report(family: str, rps: int, found: list[Window]) -> str:
    hits = [w.failed_s for w in found if w.failed_s is not None]
    median = statistics.median(hits) if hits else None
    lines = [
        f"{family}@{rps}rps: {len(hits)} of {len(found)} windows failed, median {median} s",
        f"  first failed by: {dict(Counter('+'.join(w.by) for w in found if w.by))}",
    ]
    lines += [f"  missed: {' | '.join(w.reached)}" for w in found if w.failed_s is None]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="errors_x2")
    parser.add_argument("--rps", type=int, default=10, choices=TRAFFIC)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--round-s", type=int, default=30)
    args = parser.parse_args()
    found = run(args.family, args.rps, args.windows, args.seed_offset, args.round_s)
    print(report(args.family, args.rps, found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

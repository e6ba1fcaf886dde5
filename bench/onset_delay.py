"""Why a latency x2 that starts mid-window is found later than one present from the deploy.

The decision benchmark's `onset_latency_x2` and `latency_x2` windows at 10 req/s
(`bench/decisions.py`: same seeds, same judge, same daemon path), read run by run. A doubled
latency is caught by the latency rule's exceedance test (samples past the baseline's p95
+10%, placed conformally); it has two runs with their own share of the rule's alpha:

- the e-process started at the deploy: fails at log(1 / alpha), but mixes all its bets, and
  the large ones that a doubled latency rewards hold only a small part of its prior weight;
- the e-detector (Shiryaev-Roberts, a run from every round): fails at log(horizon /
  alpha_d), log(900) nats more for not knowing when, but mixes its large bets alone.

A regression present from the deploy is caught by the e-process; one from minute 5 only by
the e-detector: after 300 good rounds the e-process has sunk far below 1. Per window this
prints the round (from the regression's first, 1-based as `time_to_detect_s` counts) at
which each run crosses: from the deploy, the e-process and, on the same draws, the detector;
from the onset, the detector, and a judge started afresh at the onset on the same draws (an
oracle that knows when: what the pre-onset history costs or gives). Rounds are the
daemon's default `interval` (30 s) unless `--round-s` (1: the simulator's seconds, the
README's figures); the onset falls on a round's boundary either way: no round is diluted.

    python bench/onset_delay.py                         # the benchmark's 20 windows a cell
    python bench/onset_delay.py --round-s 1 --windows 400 --seed-offset 1000
        # the README's figures: 1 s rounds, out of sample

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis import stats
from agent.analysis.judge import Judge
from agent.analysis.policies.sequential import SequentialPolicy
from agent.analysis.sequential import Component
from bench import decisions
from bench.decisions import LATENCY, ROUNDS, Family, window_seeds, window_streams

RATE = 10
KEYS = ("latency_x2", "onset_latency_x2")
RESAMPLES = 20000
GOAL = 1.5


def cell_of(key: str) -> tuple[int, Family]:
    """The benchmark's cell number (its seeds) and family of `key` at `RATE`."""
    cells = ((f, rps) for f in decisions.FAMILIES for rps in decisions.TRAFFIC)
    return next((i, f) for i, (f, rps) in enumerate(cells) if f.key == key and rps == RATE)


def exceedance_test(judge: Judge) -> Component:
    """The latency rule's exceedance test as the judge compiled it for the window."""
    policy = cast(SequentialPolicy, judge.rule_policy)
    tests = policy.tests(LATENCY, "distribution")
    return next(c for c in tests.components if c.test == "exceedance")


def crossings(
    pre: decisions.Stream, deploy: decisions.Stream, onset: int, first: int, round_s: int = 1
) -> dict[str, int]:
    """Rounds of `round_s` seconds from round `onset` (1-based) at which the exceedance
    test's e-process ("e") and e-detector ("d") first reach their bars, folding the deploy's
    rounds from round `first`."""
    judge = decisions.window_judge(pre, round_s)
    comp = exceedance_test(judge)
    state = judge.start()
    out: dict[str, int] = {}
    rounds = ROUNDS // round_s
    for k in range(first, min(rounds, onset + 120)):
        state = judge.advance(state, decisions.observed(deploy, k, round_s), in_place=True)
        st = state["rules"][LATENCY.name]["seq"]["tests"][comp.key]
        if k < onset:
            continue
        if st["peak"] >= comp.log_threshold:
            out.setdefault("e", k + 1 - onset)
        if st["peak_d"] is not None and st["peak_d"] >= comp.detector_log_threshold(rounds):
            out.setdefault("d", k + 1 - onset)
        if len(out) == 2:
            break
    return out


def bars(pre: decisions.Stream, round_s: int = 1) -> list[str]:
    """The two runs' levels and bars, and what the e-process's prior puts on the bets the
    detector mixes."""
    comp = exceedance_test(decisions.window_judge(pre, round_s))
    weights = np.exp(stats.BET_LOG_WEIGHTS[comp.bets])
    large = float(weights[-stats.DETECTOR_BETS :].sum())
    expected = RATE * round_s * comp.level
    rounds = ROUNDS // round_s
    stakes = [
        round(min(float(b) * expected, stats.MAX_BET), 3)
        for b in stats.BETS[comp.bets][-stats.DETECTOR_BETS :]
    ]
    start = comp.log_threshold + math.log(1.0 / large)
    detector = comp.detector_log_threshold(rounds)
    return [
        f"exceedance test at {RATE} req/s: e-process alpha {comp.alpha:.5f},"
        f" bar {comp.log_threshold:.2f} nats; e-detector alpha {comp.alpha_detector:.5f},"
        f" bar log({rounds}/alpha_d) = {detector:.2f} ({round_s} s rounds)",
        f"the detector's bets (the {stats.DETECTOR_BETS} largest) stake {stakes} per round"
        f" ({expected:g} expected past the cutoff), the same bets the e-process holds at"
        f" {large:.4f} of its weight: +{math.log(1.0 / large):.2f} nats, so in those bets'"
        f" wealth the e-process needs {start:.2f}, the detector {detector:.2f}"
        f" ({detector / start:.2f}x)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=decisions.REGRESSION_WINDOWS)
    parser.add_argument("--seed-offset", type=int, default=0)
    # the onset must fall on a round's boundary, and so must the window's end
    decisions.add_round_s(parser, "1 for the README's figures", math.gcd(decisions.ONSET_S, ROUNDS))
    args = parser.parse_args()
    round_s = args.round_s
    runs: dict[str, list[dict[str, int]]] = {}
    fresh: list[dict[str, int]] = []
    pre0 = None
    for key in KEYS:
        cell, family = cell_of(key)
        for seed in window_seeds(cell, args.windows, args.seed_offset):
            pre, deploy = window_streams(np.random.default_rng(seed), RATE, family)
            pre0 = pre0 or pre
            onset = family.onset_s // round_s
            runs.setdefault(key, []).append(crossings(pre, deploy, onset, 0, round_s))
            if onset:
                fresh.append(crossings(pre, deploy, onset, onset, round_s))
    assert pre0 is not None
    print("\n".join(bars(pre0, round_s)))
    never = ROUNDS // round_s

    def median(rows: list[dict[str, int]], run: str) -> float:
        return float(np.median([r.get(run, never) for r in rows]))

    from_start, onset_rows = runs["latency_x2"], runs["onset_latency_x2"]
    print(
        f"\nmedian rounds ({round_s} s) to cross, {args.windows} windows a cell, seed offset"
        f" {args.seed_offset}:"
    )
    for label, rows in (
        ("from the deploy", from_start),
        ("from minute 5", onset_rows),
        ("a judge started at the onset (same draws)", fresh),
    ):
        print(f"  {label}: e-process {median(rows, 'e'):g}, e-detector {median(rows, 'd'):g}")
    history = np.array(
        [r.get("d", never) - f.get("d", never) for r, f in zip(onset_rows, fresh, strict=True)]
    )
    print(
        f"  the pre-onset history moves the detector by {history.mean():+.2f} rounds on average"
        f" (earlier in {np.mean(history < 0):.0%} of windows, later in {np.mean(history > 0):.0%})"
    )
    first = np.array([min(r.get("e", never), r.get("d", never)) for r in from_start])
    later = np.array([min(r.get("e", never), r.get("d", never)) for r in onset_rows])
    ratio = float(np.median(later) / np.median(first))
    rng = np.random.default_rng(decisions.SEED)
    draws = np.median(rng.choice(later, (RESAMPLES, 20)), axis=1) / np.median(
        rng.choice(first, (RESAMPLES, 20)), axis=1
    )
    print(
        f"  ratio of medians (the benchmark's key) {ratio:.3f}; samples of"
        f" {decisions.REGRESSION_WINDOWS} windows a cell drawn from these above {GOAL}:"
        f" {np.mean(draws > GOAL):.1%}"
    )
    print("\nwindow: from the deploy e d | from minute 5 d | started at the onset e d")
    for i, (a, b, c) in enumerate(zip(from_start, onset_rows, fresh, strict=True)):
        cells = [a.get("e"), a.get("d"), b.get("d"), c.get("e"), c.get("d")]
        print(f"  {i:3d}: " + " ".join(f"{'-' if v is None else v:>3}" for v in cells))


if __name__ == "__main__":
    main()

"""How often the sequential policy's `rule breached` warning (contract §4) pages on-call for a
deploy that is fine: the decision benchmark's own A/A-like windows (`aa` at 1% and 0.1%
errors, `boundary` at exactly +10%, `bursty_aa`; 1, 10 and 100 requests/s; 100 windows a
cell, its seeds), each round (the daemon's default `interval`, 30 s, unless `--round-s`)
folded by `Judge.advance` and read by `Judge.glance` as the daemon reads it, a rule
`breached` as `agent.windows.lifecycle` decides it. A window is warned when any round
before its end (or its rollback, which pages anyway) has a rule breached. Prints the share
warned per family and traffic level, and over all of them: at `--round-s 1`, 10 of 1,200
(0.8%), all at `boundary`, measured with the same read-out folded without `glance`
(`SequentialRule.breaching`'s evidence over `WARN_SHARE` of each test's bar); this script's
first 5 windows a cell (`--fraction 0.05`, 222 s on a loaded machine) warned the same one
window of 60.

    python bench/breach_warnings.py   # every A/A-like window, at the daemon's 30 s rounds
    python bench/breach_warnings.py --round-s 1   # 1 s rounds, the README's figures (an hour
                                                  # on 2 busy cores)
    python bench/breach_warnings.py --fraction 0.2

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.windows.lifecycle import _state_of
from bench import decisions as bench  # the decision benchmark's simulator and seeds

Job = tuple[int, int, Any, int]
"""(family index, requests/s, the window's seed, our judge's round in seconds)."""


def window(job: Job) -> dict[str, Any]:
    """One A/A-like window as `decisions.run_window` builds it: the round of its first
    warning and of its rollback (None: none)."""
    family_index, rps, seed, round_s = job
    family = bench.FAMILIES[family_index]
    pre, deploy = bench.window_streams(np.random.default_rng(seed), rps, family)
    judge = bench.window_judge(pre, round_s)
    state = judge.start()
    warned: int | None = None
    rounds = bench.ROUNDS // round_s
    for k in range(rounds):
        final = k == rounds - 1
        state = judge.advance(state, bench.observed(deploy, k, round_s), in_place=True, final=final)
        glance = judge.glance(state, final=final)
        if glance.decision == "fail":
            return {
                "family": family.key,
                "base": family.error_base,
                "rps": rps,
                "warned": warned,
                "failed": k,
            }
        if warned is None and any(
            _state_of(g.outcome, g.evidence) == "breached" for g in glance.rules
        ):
            warned = k
    return {
        "family": family.key,
        "base": family.error_base,
        "rps": rps,
        "warned": warned,
        "failed": None,
    }


def jobs(fraction: float, round_s: int = bench.DAEMON_ROUND_S) -> list[Job]:
    """Every A/A-like cell's windows on the decision benchmark's own seeds (a fraction: its
    first windows)."""
    out: list[Job] = []
    cells = itertools.product(enumerate(bench.FAMILIES), bench.TRAFFIC)
    for cell, ((index, family), rps) in enumerate(cells):
        if not family.aa_like:
            continue
        n = max(1, round(bench.AA_WINDOWS * fraction))
        seeds = bench.window_seeds(cell, bench.AA_WINDOWS)[:n]
        out += [(index, rps, seed, round_s) for seed in seeds]
    return sorted(out, key=lambda j: -j[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="this share of the windows")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    bench.add_round_s(parser, "1 for the README's figures")
    args = parser.parse_args()
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(window, jobs(args.fraction, args.round_s), chunksize=4))
    cells: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for r in results:
        cells.setdefault((r["family"], r["base"], r["rps"]), []).append(r)
    print(
        f"{'family':<10} {'errors':>6} {'req/s':>5} {'windows':>7} {'warned':>7}"
        f" {'rolled back':>11}"
    )
    for (family, base, rps), rows in sorted(cells.items()):
        warned = sum(r["warned"] is not None for r in rows)
        failed = sum(r["failed"] is not None for r in rows)
        print(f"{family:<10} {base:>6.3g} {rps:>5} {len(rows):>7} {warned:>7} {failed:>11}")
    warned = sum(r["warned"] is not None for r in results)
    failed = sum(r["failed"] is not None for r in results)
    print(
        f"A/A-like windows warned: {warned} of {len(results)} ({warned / len(results):.1%});"
        f" rolled back: {failed} ({failed / len(results):.1%}); {args.round_s} s rounds;"
        f" {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How often the sequential policy's `rule breached` warning (contract §4) pages on-call for
a deploy that is fine: the decision benchmark's own A/A-like windows (`aa` at 1% and 0.1%
errors, `boundary` at exactly +10%, `bursty_aa`; 1, 10 and 100 requests/s; 100 windows a
cell, its seeds), each round folded by `Judge.advance` and read by `Judge.glance` as the
daemon reads it, a rule `breached` as `agent.windows.lifecycle` decides it. A window is
warned when any round before its end (or its rollback, which pages anyway) has a rule
breached. Prints the share warned per family and traffic level, and over all of them:
10 of 1,200 (0.8%), all at `boundary`, measured with the same read-out folded without
`glance` (`SequentialRule.breaching`'s evidence over `WARN_SHARE` of each test's bar); this
script's first 5 windows a cell (`--fraction 0.05`, 222 s on a loaded machine) warned the same
one window of 60.

    python bench/breach_warnings.py   # every A/A-like window (an hour on 2 busy cores)
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import decisions as bench  # the decision benchmark's simulator and seeds

from agent.analysis.judge import Judge
from agent.analysis.observe import observe
from agent.windows.foresight import background_baseline
from agent.windows.lifecycle import _state_of

Job = tuple[int, int, Any]
"""(family index, requests/s, the window's seed)."""


def window(job: Job) -> dict[str, Any]:
    """One A/A-like window as `decisions.run_window` builds it: the round of its first
    warning and of its rollback (None: none)."""
    family_index, rps, seed = job
    family = bench.FAMILIES[family_index]
    rng = np.random.default_rng(seed)
    both = bench.simulate(
        rng, rps, family, bench.BASELINE_S + bench.ROUNDS, bench.BASELINE_S + family.onset_s
    )
    cut = bench.BASELINE_S
    pre = bench.Stream(
        both.total[:cut], both.count[:cut], both.latency[: both.edges[cut]], both.edges[: cut + 1]
    )
    split = int(both.edges[cut])
    deploy = bench.Stream(
        both.total[cut:], both.count[cut:], both.latency[split:], both.edges[cut:] - split
    )
    periods = [bench.samples(pre, s, s + bench.PERIOD_S) for s in range(0, cut, bench.PERIOD_S)]
    baselines = {r.name: background_baseline(r, periods, bench.ENVIRONMENT) for r in bench.RULES}
    judge = Judge(bench.RULES, baselines, bench.POLICY, horizon=bench.ROUNDS)
    state = judge.start()
    warned: int | None = None
    for k in range(bench.ROUNDS):
        final = k == bench.ROUNDS - 1
        round_samples = bench.samples(deploy, k, k + 1)
        state = judge.advance(
            state,
            {r.name: observe(r, round_samples, bench.ROUND_S) for r in bench.RULES},
            in_place=True,
            final=final,
        )
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


def jobs(fraction: float) -> list[Job]:
    """Every A/A-like cell's windows on the decision benchmark's own seeds (a fraction: its
    first windows)."""
    out: list[Job] = []
    cells = itertools.product(enumerate(bench.FAMILIES), bench.TRAFFIC)
    for cell, ((index, family), rps) in enumerate(cells):
        if not family.aa_like:
            continue
        n = max(1, round(bench.AA_WINDOWS * fraction))
        out += [(index, rps, seed) for seed in bench.window_seeds(cell, bench.AA_WINDOWS)[:n]]
    return sorted(out, key=lambda j: -j[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="this share of the windows")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(window, jobs(args.fraction), chunksize=4))
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
        f" rolled back: {failed} ({failed / len(results):.1%});"
        f" {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The judge's CPU cost per window-round in the default configuration (issue 9's budget).

What the daemon does each round for one window with the rules `bench/footprint.py` writes
(`error_rate max 0.05`, `latency_p95 max_increase 20%`), `probes_per_round` 10 (the
footprint's `--probes`, what issue 9's budget was set at; the configuration's default is 40), the
`sequential` policy and its defaults: `observe()` each rule from the round's samples, then
`Judge.step` (the fold and the verdict's wording). The baseline is built as the watcher
builds it: one background run of 10 probes per `background_interval` (30 s) over the
`lookback` (1 h), each observed and pooled by `merge()`. The window is 1 h at 1 s rounds
(the footprint benchmark's). Prints microseconds per window-round, split by stage.

Beside the judge's own stages (`total`: observe, advance, verdict), what the daemon spends
per round around them: `glance` (the decision and the figures a stored round keeps),
`snapshot` (those figures as the round's JSON) and `wording` (the worded verdict as the
API's JSON, serialised for the store). `daemon_every_round` words the verdict every round
(as the daemon did); `daemon` words it once per `VERDICT_REFRESH_S` or
`VERDICT_REFRESH_ROUNDS` rounds of 1 s, whichever comes first (as it does now, when no rule
changes its state).

    python bench/judge_cost.py [--rounds 600] [--fresh] [--count] [--json]
    python bench/judge_cost.py --against /path/to/older/checkout [--turns 3] [--fresh] [--count]

`--fresh`: the case `bench/footprint.py` measures, an agent just started: no background
runs yet, so no baselines (the latency rule's relative bound has nothing to test against;
the error rule's `max` is tested alone).

scipy.special's import (once per process, at the first window's first round) is timed
apart, before the rounds: inside them it was most of `advance`'s average over 600 rounds.

`--count`: a third rule, `bench/decisions.py`'s relative error bound (`error_rate
max_increase 10%`): with a baseline, the two-sample count test and its baseline ladder (37
rows of bets a round), which the two default rules do not run.

`--against` runs this script on another checkout's judge (an older one) and on this one in
turns, each in a fresh process, and prints both (the median per stage over the turns), so
that a busy machine weighs on both alike; the measuring code is this script on both.

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# the checkout whose judge is measured: `--against` sets it for the other one (`CODE`)
sys.path.insert(0, os.environ.get("JUDGE_COST_CODE") or str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Policy, Rule
from agent.windows.evidence import rule_snapshot, verdict_to_dict
from agent.windows.lifecycle import VERDICT_REFRESH_ROUNDS, VERDICT_REFRESH_S
from checks.base import Sample

CODE = "JUDGE_COST_CODE"
"""Environment variable: the checkout whose judge is measured (default: this one)."""
PROBES = 10
WORDED_EVERY = min(VERDICT_REFRESH_S, VERDICT_REFRESH_ROUNDS)
"""Rounds of 1 s between two wordings of the verdict (the daemon's bounds)."""
LOOKBACK_S = 3600
BACKGROUND_S = 30
HORIZON = 3600
RULES = (
    Rule("errors", "checks", "error_rate", max=0.05),
    Rule("latency", "checks", "latency_p95", max_increase=0.2),
)
COUNT_RULE = Rule("errors-relative", "checks", "error_rate", max_increase=0.1)


def probes(rng: np.random.Generator, n: int) -> list[Sample]:
    """`n` probes of a healthy target: ~1% errors, lognormal latency around 5 ms."""
    lat = 0.005 * np.exp(0.4 * rng.standard_normal(n))
    ok = rng.uniform(size=n) > 0.01
    return [Sample("health", bool(o), float(v)) for o, v in zip(ok, lat, strict=True)]


def special_import() -> None:
    """scipy.special, which the judge imports at its first use (a relative bound's tests,
    built at the window's first round with data): the process's, not the window's."""
    from scipy import special  # noqa: F401


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", type=Path, help="another checkout to run in turns")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--fresh", action="store_true", help="no baselines yet (footprint's)")
    parser.add_argument("--count", action="store_true", help="and a relative error rule")
    args = parser.parse_args()
    if args.against is not None:
        extra = [flag for flag in ("--fresh", "--count") if getattr(args, flag[2:])]
        return in_turns(args.against, args.rounds, args.turns, as_json=args.json, extra=extra)
    rules = (*RULES, COUNT_RULE) if args.count else RULES
    rng = np.random.default_rng(9)
    runs = [probes(rng, PROBES) for _ in range(LOOKBACK_S // BACKGROUND_S)]
    baselines = (
        {}
        if args.fresh
        else {r.name: merge([observe(r, run, BACKGROUND_S) for run in runs]) for r in rules}
    )
    rounds = [probes(rng, PROBES) for _ in range(args.rounds)]
    # once per process, at its first window's first round (`stats._special`): not a cost of
    # the rounds, and at 600 of them most of what `advance` averaged (220 ms of ~400 us/round)
    started = time.process_time()
    special_import()
    import_s = time.process_time() - started
    started = time.process_time()
    judge = Judge(rules, baselines, Policy("sequential"), horizon=HORIZON)
    state = judge.start()
    compile_s = time.process_time() - started
    stages = ("observe", "advance", "verdict", "glance", "snapshot", "wording")
    spent = dict.fromkeys(stages, 0.0)
    decisions: dict[str, int] = {}
    for k, round_ in enumerate(rounds):
        final = k == len(rounds) - 1
        t0 = time.process_time()
        observations = {r.name: observe(r, round_, 1.0) for r in rules}
        t1 = time.process_time()
        state = judge.advance(state, observations)
        t2 = time.process_time()
        verdict = judge.verdict(state, final=final)
        t3 = time.process_time()
        glance = judge.glance(state, final=final)
        t4 = time.process_time()
        json.dumps({r.name: rule_snapshot(r) for r in glance.rules})
        t5 = time.process_time()
        json.dumps(verdict_to_dict(verdict, decided_at=None))
        t6 = time.process_time()
        for stage, took in zip(
            stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True
        ):
            spent[stage] += took
        decisions[verdict.decision] = decisions.get(verdict.decision, 0) + 1
    per_round = {k: round(v / len(rounds) * 1e6, 1) for k, v in spent.items()}
    total = round(per_round["observe"] + per_round["advance"] + per_round["verdict"], 1)
    words = per_round["verdict"] + per_round["wording"]
    fold = per_round["observe"] + per_round["advance"] + per_round["snapshot"]
    report = {
        "us_per_window_round": per_round
        | {
            "total": total,
            "daemon_every_round": round(fold + words, 1),
            "daemon": round(fold + per_round["glance"] + words / WORDED_EVERY, 1),
        },
        "baselines": not args.fresh,
        "count_rule": args.count,
        "compile_ms": round(compile_s * 1e3, 2),
        "scipy_import_ms": round(import_s * 1e3, 1),
        "rounds": len(rounds),
        "decisions": decisions,
        "share_of_a_core_at_200_windows_1s": round(total * 200 / 1e6, 3),
        "load_average": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"judge per window-round: {total} us (observe {per_round['observe']}, advance "
            f"{per_round['advance']}, verdict {per_round['verdict']}); the daemon's judging "
            f"{report['us_per_window_round']['daemon']} us (glance {per_round['glance']}, "
            f"snapshot {per_round['snapshot']}, wording {per_round['wording']} once per "
            f"{WORDED_EVERY:g} rounds of 1 s), "
            f"{report['us_per_window_round']['daemon_every_round']} us wording every round; "
            f"compile "
            f"{report['compile_ms']} ms (scipy.special's import, once per process, apart: "
            f"{report['scipy_import_ms']} ms); 200 windows at 1 s: "
            f"{report['share_of_a_core_at_200_windows_1s'] * 100:.1f}% of a core; "
            f"decisions {decisions}; load {report['load_average']:.2f}"
        )
    return 0


def in_turns(
    other: Path, rounds: int, turns: int, *, as_json: bool, extra: list[str] | None = None
) -> int:
    """This checkout's judge and `other`'s, `turns` times each, alternating (`extra`: flags
    to both)."""
    code = {"this": Path(__file__).resolve().parent.parent, "against": other.resolve()}
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in code}
    for _ in range(turns):
        for name, root in code.items():
            out = subprocess.run(
                [sys.executable, __file__, "--rounds", str(rounds), "--json", *(extra or [])],
                capture_output=True,
                text=True,
                check=True,
                env=os.environ | {CODE: str(root)},
            )
            seen[name].append(json.loads(out.stdout)["us_per_window_round"])
    report: dict[str, Any] = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in seen.items()
    }
    report |= {"turns": turns, "load_average": os.getloadavg()[0]}
    if as_json:
        print(json.dumps(report))
    else:
        for name in code:
            print(f"{name:8s} us per window-round (median of {turns}): {report[name]}")
        print(f"load {report['load_average']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Are registration's "can detect" figures honest at the daemon's 30 s rounds?

A figure (`SequentialRule.detectable`, README "What a rule can see") is the effect a rule
catches four times in five by the window's end (`FOUR_IN_FIVE`). Per cell (a rule, a
traffic, a window's rounds) and window: the decision benchmark's simulator draws 30 min of
pre-deploy traffic (60 periods of 30 s, pooled by `background_baseline` as the watcher
pools background runs; errors bursting per second, concentration `decisions.KAPPA`; no
drift, which the figure cannot know of), the judge (`Judge`, the rule alone at confidence
0.99) says what the rule can detect at the baseline's traffic, as registration asks it
(`detectable` after no round); then a deploy exactly at that figure (the error rate it
names; latencies x (1 + effect)) runs through `observe()` and `Judge.advance()` round by
round, the last with `final`. The share of windows that fail the rule is the figure's
catch rate: 80% promised. `--half`: also at half the effect (rarely caught).

    python bench/detectable_figures.py                 # every cell, 200 windows each
    python bench/detectable_figures.py --windows 50 --rules errors-max --rates 10

Measured (session 48, 200 windows a cell; caught at the figure, 10 rounds / 30 rounds):

    rule                 req/s   before          after
    errors max_incr 50%      1   53.5% / 80.5%   84.5% / 80.0%
                            10   48.5% / 81.5%   85.0% / 82.0%
                           100   32.0% / 64.5%   85.0% / 84.0%
    errors max 0.02          1   89.5% / 81.0%   (unchanged)
                            10   84.0% / 80.5%
                           100   85.5% / 74.0%   ... / 80.0% (burstiness at its limit)
    latency_p95 +10%         1   52.0% / 76.0%   85.5% / 91.0%
                            10   63.5% / 72.0%   89.0% / 89.0%
                           100   69.0% / 85.5%   92.0% / 93.5%

Before: the two-sample count test's figure was one uncapped Poisson count over the
window (at 100 req/s every bet is capped a round), the rank test's its expected evidence
alone; after, both round by round with `LOOK_POWER`'s shortfall. The figure's search costs
2-8 ms of CPU a rule (the `cpu` column). `errors max` at 100 req/s over 30 rounds (74%):
the look's figure took the baseline's measured burstiness as known; taken at the upper
limit its own count limits take (Student-corrected for its 60 periods), the figure's
median is 0.02282 and caught 80.0% (these seeds; alone, `--rules errors-max
--rates 100 --rounds 30`, 81.0% -> 85.0%), its search's cost unchanged (1.1 ms).

Short windows (session 51, `--rounds 2,3,4`, 100 windows a cell; figure and caught,
before -> after the exceedance test's figure counted its bets capped at
`rank_bets.episode_cap` a round, as the judge bets them): at 1 req/s, 3 rounds +218%
caught 27% -> +869% caught 100%; 4 rounds +134% -> +172%, 100% either way; at 10 req/s
over 3 and 4 rounds +117% and +41% either way (the look's), all caught; at 100 req/s over 3
rounds +34%, all caught. Over 2 rounds it said it could detect nothing, and why (its tests
from the deploy need 4 rounds). Once the figure counted the latency period-rank test (two
rounds above every period; 50 windows a cell, figure median and caught): 2 rounds at 1, 10
and 100 req/s +190% (91.7%, of the 12 windows whose periods all hold 20 latencies), +49%
(78%), +20% (80%); 3 rounds +874% (100%; most windows' smallest period below 20), +48%
(92%, from the look's +117%), +21% (92%, from +34%); 4 rounds +171%, +41%, +19%, all caught.

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent.analysis.judge import Judge
from agent.analysis.observe import observe
from agent.analysis.sequential import FOUR_IN_FIVE
from agent.analysis.types import Observation, Rule
from agent.windows.foresight import background_baseline
from bench import decisions as bench  # the decision benchmark's simulator

SEED = 20261205
ROUND_S = bench.DAEMON_ROUND_S
BASE_ERRORS = 0.01
RULES = {
    "errors+50%": Rule("errors", "checks", "error_rate", max_increase=0.5),
    "errors-max": Rule("errors", "checks", "error_rate", max=0.02),
    "p95+10%": Rule("latency", "checks", "latency_p95", max_increase=0.1),
}
RATES = (1, 10, 100)
ROUNDS = (10, 30)


@dataclass(frozen=True, slots=True)
class Job:
    rule: str
    rps: int
    rounds: int
    seed: np.random.SeedSequence
    half: bool


def _stream(rng: np.random.Generator, rps: float, family: bench.Family, seconds: int) -> Any:
    return bench.simulate(rng, rps, family, seconds, 0)


def window(job: Job) -> dict[str, Any]:
    """One window: the figure registration gives, and whether a deploy at it failed."""
    rule = RULES[job.rule]
    rng = np.random.default_rng(job.seed)
    calm = bench.Family("calm", BASE_ERRORS, drift=0.0)
    pre = bench.simulate(rng, job.rps, calm, bench.BASELINE_S, None)
    periods = [
        bench.samples(pre, s, s + bench.PERIOD_S)
        for s in range(0, bench.BASELINE_S, bench.PERIOD_S)
    ]
    base = background_baseline(rule, periods, bench.ENVIRONMENT)
    judge = Judge([rule], {rule.name: base}, bench.POLICY, horizon=job.rounds)
    kind = "proportion" if rule.metric.endswith("_rate") else "distribution"
    tests = judge.rule_policy.tests(rule, kind)  # type: ignore[attr-defined]
    state = tests.start()
    state["samples"] = sum(len(p) for p in periods) / len(periods)
    t0 = time.process_time()
    can = tests.detectable(state, 1)
    cost = time.process_time() - t0
    if can is None or not np.isfinite(can.effect):
        return {"effect": None, "text": can.text if can else None, "caught": None, "cost": cost}
    effect = can.effect / 2 if job.half else can.effect
    if kind == "proportion":
        rate = can.value if not job.half else BASE_ERRORS + (can.value - BASE_ERRORS) / 2
        family = bench.Family("at", min(rate, 0.5), drift=0.0)
    else:
        family = bench.Family("at", BASE_ERRORS, latency_factor=1.0 + effect, drift=0.0)
    deploy = _stream(rng, job.rps, family, job.rounds * ROUND_S)
    st = judge.start()
    caught = False
    for k in range(job.rounds):
        got = bench.samples(deploy, k * ROUND_S, (k + 1) * ROUND_S)
        obs: dict[str, Observation] = {rule.name: observe(rule, got, float(ROUND_S))}
        st = judge.advance(st, obs, in_place=True, final=k == job.rounds - 1)
        if judge.failed_round(st) is not None:
            caught = True
            break
    return {
        "effect": can.effect,
        "value": can.value,
        "text": can.text,
        "caught": caught,
        "cost": cost,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--rounds", default=",".join(map(str, ROUNDS)))
    parser.add_argument("--half", action="store_true", help="also at half the effect")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"rounds of {ROUND_S} s, baseline {bench.BASELINE_S // 60} min of {bench.PERIOD_S} s"
        f" periods at {BASE_ERRORS:.0%} errors, confidence {bench.CONFIDENCE}, the rule alone;"
        f" promised: {FOUR_IN_FIVE:.0%} caught at the figure"
    )
    print(
        f"{'rule':<11} {'req/s':>5} {'rounds':>6}  {'figure (median, range)':<34}"
        " caught  cpu (median)"
    )
    cells = [
        (r, int(rps), int(n))
        for r in args.rules.split(",")
        for rps in args.rates.split(",")
        for n in args.rounds.split(",")
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        for cell, (r, rps, n) in enumerate(cells):
            seeds = np.random.SeedSequence([SEED, cell]).spawn(args.windows)
            for half in (False, True) if args.half else (False,):
                jobs = [Job(r, rps, n, s, half) for s in seeds]
                out = list(pool.map(window, jobs, chunksize=4))
                judged = [o for o in out if o["caught"] is not None]
                costs = np.array([o["cost"] for o in out]) * 1000
                if not judged:
                    print(f"{r:<11} {rps:>5} {n:>6}  {out[0]['text']}")
                    continue
                effects = np.array([o["effect"] for o in judged])
                values = np.array([o["value"] for o in judged])
                share = np.mean([o["caught"] for o in judged])
                if r.startswith("errors"):
                    fig = f"rate {np.median(values):.4g} ({values.min():.3g}-{values.max():.3g})"
                else:
                    fig = f"{np.median(effects):+.1%} ({effects.min():+.0%}-{effects.max():+.0%})"
                tag = " half" if half else ""
                print(
                    f"{r:<11} {rps:>5} {n:>6}  {fig:<34} {share:5.1%}{tag}"
                    f" (of {len(judged)})  {np.median(costs):.1f} ms",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

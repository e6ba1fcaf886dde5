"""The pass side with few probes: how many probes with no failure a rate's `max` needs to
pass on evidence, and how often a release at or just past the bound passes (a missed
regression), through the judge as the daemon runs it (`Judge.advance`, `Judge.glance`).

* `least`: for `max` 5%, 2% and 1% on `error_rate` (and `latency_p95 max 500ms`, whose
  pass side counts the samples past 500 ms against 5%), the fewest rounds of `--probes`
  with no failure (none slower) after which a window of that many rounds ends `pass`,
  and the probes that is.
* `wrong passes`: windows of `--rounds` rounds of `--probes` whose every probe fails at the
  bound's rate (or 1.2 times it), at confidence 0.99 and 0.95: the share of them that
  end `pass` (read at their end: the judge keeps the tightest end a bound reached, so an
  end-of-window pass is every pass the window ever showed), against the level
  `1 - confidence` the README promises (each bound's sequence takes the whole budget).

    python bench/pass_no_event.py                       # 20 rounds of 5 (a 10 s window at 500 ms)
    python bench/pass_no_event.py --rounds 30 --probes 40 --windows 4000

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.analysis.judge import Judge
from agent.analysis.types import Observation, Policy, Rule
from bench.decisions import clopper_pearson

LIMITS = (0.05, 0.02, 0.01)
CUTOFF_S = 0.5
"""`latency_p95 max 500ms`: a probe past it is the pass side's event."""


def _rule(metric: str, limit: float) -> Rule:
    return Rule("r", "checks", metric, max=CUTOFF_S if metric == "latency_p95" else limit)


def _observation(metric: str, bad: int, probes: int) -> Observation:
    """A round of `probes`, `bad` of them failed (or past the cutoff)."""
    if metric == "error_rate":
        return Observation(bad / probes, count=bad, total=probes)
    values = (CUTOFF_S * 2,) * bad + (CUTOFF_S / 10,) * (probes - bad)
    return Observation(float(np.quantile(values, 0.95)), values=values, quantile=0.95)


def _window(metric: str, limit: float, counts: np.ndarray, probes: int, confidence: float) -> str:
    """The decision of a window of `len(counts)` rounds with these bad probes a round."""
    judge = Judge([_rule(metric, limit)], {}, Policy(confidence=confidence), horizon=len(counts))
    state = judge.start()
    rounds = len(counts)
    for k, bad in enumerate(counts):
        obs = {"r": _observation(metric, int(bad), probes)}
        state = judge.advance(state, obs, in_place=True, final=k == rounds - 1)
        if judge.failed_round(state) is not None:
            return "fail"
    return str(judge.glance(state, final=True).decision)


def least(metric: str, limit: float, probes: int) -> int | None:
    """The fewest rounds of `probes` with no event whose window (that long) passes."""
    for rounds in range(2, 2000):
        if _window(metric, limit, np.zeros(rounds, dtype=int), probes, 0.99) == "pass":
            return rounds
    return None


def wrong_passes(
    metric: str, rate: float, limit: float, rounds: int, probes: int, confidence: float,
    windows: int, seed: int,
) -> tuple[int, int]:  # fmt: skip
    """(windows that passed, windows) at a true rate `rate` against `max limit`."""
    rng = np.random.default_rng(seed)
    counts = rng.binomial(probes, rate, size=(windows, rounds))
    return sum(_window(metric, limit, c, probes, confidence) == "pass" for c in counts), windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds a window (default 20)")
    parser.add_argument("--probes", type=int, default=5, help="probes a round (default 5)")
    parser.add_argument("--windows", type=int, default=4000, help="windows a cell (default 4000)")
    parser.add_argument("--seed", type=int, default=52)
    parser.add_argument("--metrics", default="error_rate,latency_p95")
    args = parser.parse_args()
    metrics = args.metrics.split(",")
    print(f"least rounds of {args.probes} probes with none failed whose window passes:")
    for metric in metrics:
        for limit in LIMITS if metric == "error_rate" else (0.05,):
            n = least(metric, limit, args.probes)
            said = "never" if n is None else f"{n} rounds, {n * args.probes} probes"
            bound = f"max {limit:g}" if metric == "error_rate" else f"max {CUTOFF_S * 1000:g}ms"
            print(f"  {metric} {bound}: {said}", flush=True)
    print(f"wrong passes, windows of {args.rounds} rounds of {args.probes} probes:")
    for metric in metrics:
        limit = 0.05
        for confidence in (0.99, 0.95):
            for times in (1.0, 1.2):
                passed, n = wrong_passes(
                    metric, limit * times, limit, args.rounds, args.probes, confidence,
                    args.windows, args.seed,
                )  # fmt: skip
                share, top = passed / n, clopper_pearson(passed, n)[1]
                print(
                    f"  {metric} at {times:g} x max {limit:g}, confidence {confidence:g}: "
                    f"{passed} of {n} passed ({share:.2%}, 95% upper {top:.2%}; level "
                    f"{1 - confidence:.0%})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The judge alone on the new user's trial (bench/live_judge.py `trial`) at 10, 20 and 40
probes a round: how often errors x5 and latency x2 fail the window, and how often an A/A
one passes on evidence.

Not a test; it prints one line per background size. Each window: `--runs` background runs
of N probes (50 ms lognormal spread 0.3, 2% errors), merged as the daemon merges them (their
errors' burstiness measured), as the baseline, then 30 rounds (the
default 15-minute window of 30 s rounds) of N probes through `Judge` at the default
policy, rules `error_rate max 0.05` and `latency_p95 max_increase 50%`.

    python bench/judge_probes.py [--runs 6] [--windows 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.observe import merge

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
P95 = Rule("health-p95", "checks", "latency_p95", max_increase=0.5, check="api-health")
ROUNDS = 30
KINDS = {"errors_x5": (1.0, 0.1), "latency_x2": (2.0, 0.02), "aa": (1.0, 0.02)}
"""What the deploy does: latency scale and error rate (the service: 50 ms, 2%)."""


def probes(n: int, rng: np.random.Generator, scale: float, err: float) -> tuple[Observation, int]:
    """A round's (or a background run's) latencies and its failed probes."""
    values = tuple(float(x) for x in rng.lognormal(np.log(0.05 * scale), 0.3, n))
    latency = Observation(float(np.percentile(values, 95)), values=values, quantile=0.95)
    return latency, int(rng.binomial(n, err))


def window(kind: str, n: int, runs: int, rng: np.random.Generator) -> str:
    """The window's decision: fail (rolled back), pass or inconclusive."""
    background = [probes(n, rng, 1.0, 0.02) for _ in range(runs)]
    # each run an observation, merged as the daemon merges them (`background_baseline`):
    # its errors' burstiness across the runs measured, which the pass side's floor takes
    baselines = {
        "health-p95": merge([b[0] for b in background]),
        "probe-errors": merge([Observation(b[1] / n, count=b[1], total=n) for b in background]),
    }
    judge = Judge([ERRORS, P95], baselines, Policy(), horizon=ROUNDS)
    state = judge.start()
    scale, err = KINDS[kind]
    for i in range(ROUNDS):
        latency, bad = probes(n, rng, scale, err)
        round_ = {"health-p95": latency, "probe-errors": Observation(bad / n, count=bad, total=n)}
        state, verdict = judge.step(state, round_, final=i == ROUNDS - 1)
        if verdict.decision == "fail":
            return "fail"
    return str(verdict.decision)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="background runs in the baseline")
    parser.add_argument("--windows", type=int, default=100, help="windows of each kind")
    args = parser.parse_args()
    for n in (10, 20, 40):
        cells = []
        for kind in KINDS:
            rng = np.random.default_rng(n * 100 + args.runs)
            said = [window(kind, n, args.runs, rng) for _ in range(args.windows)]
            cells.append(
                f"{kind}: fail {said.count('fail')} pass {said.count('pass')}"
                f" inconclusive {said.count('inconclusive')}"
            )
        print(f"runs {args.runs}, {n} probes, {args.windows} windows each | " + " | ".join(cells))


if __name__ == "__main__":
    main()

"""Which burstiness (rho) an absolute rate bound's pass side should read when its baseline
was probed during an outage (at least `describe.OUTAGE_SHARE` errors, `describe.outage_share`:
registration warns "probed while the service was down?").

Not a test: the pure judge (`Judge.advance`, the last round final, read with
`Judge.glance(final=True)`), its pass side's rho swapped per variant by replacing
`SequentialRule._bursty` for rate tests of absolute bounds only:

- `judge`: the module's own, unpatched (`own` since it landed);
- `baseline`: the baseline's dispersion, always (the judge before);
- `own`: 0 over an outage baseline: the floor binomial at the bound, the window's own
         spread across its rounds read as always (`max(variance, floor)`);
- `cap`: the baseline's, at most `CAP`.

The failing side never reads it (`tests/analysis/test_outage_baseline.py`): its fails are
printed to show them identical. 30 rounds of 12 probes (the README walk-through's),
`error_rate max 0.05`, confidence 0.99. `end`: the median upper end of the pass side's
sequence at the window's end.

Printed (300 windows a case, pass of 300, baseline | own | cap; fails identical in every
variant and case): a healthy release (0.5% errors) after an outage of half the lookback,
6 or 120 runs: 0 | 267 | 0 and 0 | 266 | 0 (after a calm baseline: 266), its upper end
0.146 | 0.047 | 0.065; at 2% errors 0 | 23 | 0; after every run failed whole (rho
0: no spread across the runs) 253 in each. Past the bound, whole rounds failing 6% of the time
after that outage: 0 | 46 | 0 (6 runs), 0 | 41 | 0 (120), as after a calm background (49:
the bursts a baseline missed, README), and 0 in each after a background that shows them;
Beta rounds at 6% (kappa 1): 0 | 9 | 0 (calm background: 7). A cap of 0.1 still keeps the
healthy release from passing (its end 0.065 against 0.05): only rho near 0 lets it pass.
The judge landed `own` (`SequentialRule._bursty`).

`--provider` (a Sentry `error_rate` baseline: 60 one-minute buckets of 200 spans, rounds
of 200 events; 150 windows a case, pass of 150, baseline | own | cap): healthy 0.5% after
half the buckets failed whole 0 | 150 | 12 (after calm buckets: 150), its upper end 0.147
| 0.015 | 0.051; 2% errors 0 | 150 | 0; past the bound, whole rounds failing 6%: 0 | 25 |
25 (calm buckets: 35), Beta 6% k1 0 | 6 | 0 (calm 5); fails identical in every variant.
The same argument holds, so the judge reads a provider's as a checks rule's.

    python bench/outage_baseline_rho.py [--windows 300] [--provider]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.analysis import Observation, Policy, Rule
from agent.analysis.describe import outage_share
from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import PassTest, SequentialRule

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
ROUNDS, PROBES, RUN_PROBES = 30, 12, 10
PROVIDER = Rule("errors", "sentry", "error_rate", max=0.05)
"""`--provider`: a Sentry `error_rate` rule, its baseline the previous release's lookback in
`BUCKETS` one-minute buckets of `SPANS` spans (`sentry.bucketed_baseline` pools them with
`merge`), the window's rounds `SPANS` events each (a 30 s round of a service at 400 spans
a minute); an outage is buckets failed whole."""
BUCKETS, SPANS = 60, 200
CAP = 0.1
VARIANTS = ("judge", "baseline", "own", "cap")
MODE = ["judge"]
RULE = [ERRORS]
_JUDGE_BURSTY = SequentialRule._bursty

Draw = Callable[[np.random.Generator, int], Observation]


def _bursty(self: SequentialRule, test: PassTest) -> PassTest:
    mode, base = MODE[0], self.baseline
    if mode == "judge" or base is None or test.statistic != "rate" or test.bound == "max_increase":
        return _JUDGE_BURSTY(self, test)
    rho = base.dispersion
    outage = outage_share(self.rule, base.count, base.total) is not None  # the judge's own
    if mode == "own" and outage:
        rho = 0.0
    elif mode == "cap" and outage:
        rho = min(rho, CAP)
    return replace(test, dispersion=rho)


SequentialRule._bursty = _bursty  # type: ignore[method-assign]


def errors(bad: int, n: int) -> Observation:
    return Observation(bad / n, count=bad, total=n)


def independent(rate: float) -> Draw:
    return lambda rng, n: errors(int(rng.binomial(n, rate)), n)


def whole_rounds(share: float) -> Draw:
    return lambda rng, n: errors(n if rng.random() < share else 0, n)


def beta(mean: float, kappa: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> Observation:
        p = rng.beta(kappa * mean, kappa * (1 - mean))
        return errors(int(rng.binomial(n, p)), n)

    return draw


def outage_runs(down: float, runs: int) -> Callable[[np.random.Generator], list[Observation]]:
    """`runs` background runs, the first `down` share of them all failed (the service down,
    then up at 0.5% errors): `merge` measures rho near 1."""

    def draw(rng: np.random.Generator) -> list[Observation]:
        failed = round(down * runs)
        return [
            errors(RUN_PROBES, RUN_PROBES)
            if k < failed
            else errors(int(rng.binomial(RUN_PROBES, 0.005)), RUN_PROBES)
            for k in range(runs)
        ]

    return draw


def calm_runs(draw: Draw, runs: int) -> Callable[[np.random.Generator], list[Observation]]:
    return lambda rng: [draw(rng, RUN_PROBES) for _ in range(runs)]


def decide(baseline: Observation, rounds: list[Observation]) -> tuple[str, float | None]:
    rule = RULE[0]
    judge = Judge([rule], {rule.name: baseline}, Policy(), horizon=ROUNDS)
    state = judge.start()
    for i, obs in enumerate(rounds):
        state = judge.advance(state, {rule.name: obs}, in_place=True, final=i == ROUNDS - 1)
    glance = judge.glance(state, final=True)
    verdict = judge.verdict(state, final=True)
    bound = next((b for b in verdict.rules[0].evidence.get("evidence", [])), None)
    return str(glance.decision), None if bound is None else bound.get("reached")


def run(
    label: str,
    before: Callable[[np.random.Generator], list[Observation]],
    during: Draw,
    windows: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    said: dict[str, list[str]] = {v: [] for v in VARIANTS}
    reached: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rhos = []
    for _ in range(windows):
        baseline = merge(before(rng))
        rhos.append(baseline.dispersion or 0.0)
        rounds = [during(rng, PROBES) for _ in range(ROUNDS)]
        for v in VARIANTS:
            MODE[0] = v
            decision, end = decide(baseline, rounds)
            said[v].append(decision)
            if end is not None:
                reached[v].append(end)
    cells = [
        f"{v} pass {said[v].count('pass')} fail {said[v].count('fail')}"
        + (f" end {np.median(reached[v]):.3f}" if reached[v] else "")
        for v in VARIANTS
    ]
    print(f"{label:<40} rho {np.median(rhos):.2f} | " + " | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--provider", action="store_true", help="buckets of spans, not runs")
    args = parser.parse_args()
    w = args.windows
    global PROBES, RUN_PROBES
    if args.provider:
        RULE[0], PROBES, RUN_PROBES = PROVIDER, SPANS, SPANS
    few, many = (BUCKETS, 120) if args.provider else (6, 120)
    cases = [
        (
            f"healthy 0.5% after calm 0.5% ({few} runs)",
            calm_runs(independent(0.005), few),
            independent(0.005),
        ),
        (f"healthy 0.5% after outage 50% ({few} runs)", outage_runs(0.5, few), independent(0.005)),
        (
            f"healthy 0.5% after outage 50% ({many} runs)",
            outage_runs(0.5, many),
            independent(0.005),
        ),
        (
            f"healthy 0.5% after outage, every run ({few})",
            outage_runs(0.96, few),
            independent(0.005),
        ),
        (f"healthy 2% after outage 50% ({few} runs)", outage_runs(0.5, few), independent(0.02)),
        (
            f"whole rounds 6% after calm ({few} runs)",
            calm_runs(independent(0.005), few),
            whole_rounds(0.06),
        ),
        (
            f"whole rounds 6% after outage 50% ({few} runs)",
            outage_runs(0.5, few),
            whole_rounds(0.06),
        ),
        (f"whole rounds 6% after outage 50% ({many})", outage_runs(0.5, many), whole_rounds(0.06)),
        (
            f"whole rounds 6% after bursty 6% ({many})",
            calm_runs(whole_rounds(0.06), many),
            whole_rounds(0.06),
        ),
        (f"Beta 6% k1 after outage 50% ({few} runs)", outage_runs(0.5, few), beta(0.06, 1)),
        (f"Beta 6% k1 after calm ({few} runs)", calm_runs(independent(0.005), few), beta(0.06, 1)),
        (f"10% errors after outage 50% ({few} runs)", outage_runs(0.5, few), independent(0.10)),
        (f"still down 50% rounds after outage ({few})", outage_runs(0.5, few), whole_rounds(0.5)),
    ]
    for k, (label, before, during) in enumerate(cases):
        run(label, before, during, w, 4400 + k)


if __name__ == "__main__":
    main()

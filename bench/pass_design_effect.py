"""Prototype: the pass side's confidence sequence widened by the burstiness (design effect)
the daemon can measure, against whole-round failures that pass a deploy past its bound.

Not a test, and not the judge: it wraps the judge's own `SequentialRule._ends` (its
binomial sequence on the window's counts divided by a design effect deff = 1 + (n - 1) rho,
Kish), handing it the test with the rho of each variant (`PassTest.dispersion`), rho the
within-round correlation measured by `stats.intra_period_correlation`:

- `binomial`: deff 1, the floor before any design effect;
- `judge`:  the judge as it is, unpatched (`SequentialRule._ends` of the module): rho
            across the background runs, for a rate from their counts (`merge`'s
            `Observation.dispersion`) and for a share past a latency cutoff from each run's
            count past it (`Observation.period_sizes`); the variants below measure the same
            rho from the runs' own draws and change it as they say;
- `student`: as `judge`, Student-corrected for how few runs (`stats.inflation_limit`: each
            run one unit when it shows fewer than two events), the fail side's convention;
- `silent_all`: as `judge`, but each run one unit (rho 1) when the runs show fewer than two
            of the test's events (errors, samples past the cutoff: nothing measured of how
            they cluster, the fail side's convention without Student's widening) and their
            silence does not rule out whole runs failing at the test's limit L:
            (1 - L)^runs > the test's alpha (at least log(alpha) / log(1 - L) silent runs,
            90 at L = 5% and alpha = 1%, would have shown them);
- `silent`: as `silent_all`, for a rate only (a latency's share keeps the judge's rho);
- `window_all`: as `silent_all`, the window's rounds so far counted with the runs: rho 1
            only when the window too shows fewer than two events and (1 - L)^(runs +
            rounds) > alpha (a window that shows its events is judged on its own spread);
- `window`: as `window_all`, for a rate only. Its A/A cost is not in the A/A cases here
            (2% errors: a window shows them): a service with no errors at all, a short
            background and a 30-round window is silent throughout, so `max 0.05` could
            never pass on evidence (tried in the judge: registration then warned
            `probe-errors` cannot pass on the example's young baseline,
            tests/test_foresight.py), the same silence as whole rounds failing 6%.
- `shrink`: rho shrunk toward 1 by one pseudo-run of whole clustering, (k rho + 1) / (k + 1)
            over k runs: a short background's silence weighs little, an hour's a lot.

Every window runs through `Judge.advance` with the last round final, as the daemon feeds
it, and is read with `Judge.glance(final=True)`. Cases:

- whole-round errors 6% (past `max 0.05`), Beta rounds at 5% (kappa 1 and 2: at the bound),
  slow whole rounds 6% (latency_p95 `max 300ms`): 30 rounds of 40 probes, the background
  runs drawn from the same bursty service (120 runs: the default hour at 30 s; 6 runs);
- slow whole rounds past a relative bound: a 50 ms service whose whole rounds are 10x
  slower 3% of the time before the deploy and 7% after (`latency_p95 max_increase 50%`:
  the release's p95 lands among the slow rounds, past the bound; its share past the
  baseline's p95 + 50% is about 7%, past the 5% a p95 allows);
- A/A at the defaults (bench/judge_probes.py: 6 runs, 10/20/40 probes, 2% errors,
  `error_rate max 0.05` + `latency_p95 max_increase 50%`) and a bursty A/A (2% errors in
  Beta rounds, kappa 2), and its errors x5 and latency x2 (the failing side).

    python bench/pass_design_effect.py [--windows 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agent.analysis import Observation, Policy, Rule, stats
from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.sequential import PassTest, SequentialRule

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
SLOW = Rule("health-latency", "checks", "latency_p95", max=0.3, check="health")
P95 = Rule("health-p95", "checks", "latency_p95", max_increase=0.5, check="api-health")
ROUNDS = 30
SILENT = ("silent_all", "silent", "window_all", "window")
VARIANTS = ("binomial", "judge", *SILENT, "shrink")
"""Printed by default; `student` when named (`--variants`)."""

RUNS: dict[str, list[Observation]] = {}
"""The window's background runs by rule name, one observation a run (set per window)."""
MODE = ["judge"]
_BASE: dict[tuple[str, str, float], tuple[float | None, int, float, float]] = {}


def _past(test: PassTest, obs: Observation) -> tuple[int, int]:
    """(events, size) of one run for `test`: failed probes, or samples past the cutoff."""
    if test.statistic == "rate":
        return int(obs.count or 0), int(obs.total or 0)
    x = np.asarray(obs.values, dtype=np.float64)
    past = x < test.cutoff if test.below else x > test.cutoff
    return int(np.count_nonzero(past)), int(x.size)


def _base_rho(rule: str, test: PassTest) -> tuple[float | None, int, float, float]:
    """(rho, runs, events, mean run size) across the background runs for `test`."""
    key = (rule, test.key, test.cutoff)
    if key not in _BASE:
        pairs = [_past(test, o) for o in RUNS.get(rule, [])]
        counts = [c for c, _ in pairs]
        totals = [t for _, t in pairs]
        rho = stats.intra_period_correlation(counts, totals) if pairs else None
        size = sum(totals) / len(totals) if totals else 0.0
        events = float(min(sum(counts), sum(totals) - sum(counts)))
        _BASE[key] = (rho, len(pairs), events, size)
    return _BASE[key]


def burstiness(rule: str, test: PassTest, st: dict[str, Any]) -> float:
    """The within-round correlation (rho) the current `MODE` reads for `test`, where the
    judge reads `PassTest.dispersion`."""
    mode = MODE[0]
    if mode == "binomial":
        return 0.0
    rho, runs, events, size = _base_rho(rule, test)
    if mode == "student":
        if runs < 1 or size <= 1:
            return 0.0
        phi = 1.0 + (size - 1.0) * (rho or 0.0)
        phi = stats.inflation_limit(phi, runs, events, size, test.alpha)
        rho = (phi - 1.0) / (size - 1.0)
    elif mode in SILENT and events < 2 and (mode.endswith("all") or test.statistic == "rate"):
        periods = runs
        if mode.startswith("window"):  # the window's rounds so far join the runs
            mean = float(st["mean"])
            if min(mean, 1.0 - mean) * st["size"] >= 2:
                periods = 0  # the window shows its events: its own variance speaks
            else:
                periods += st["t"]
        if periods and (1.0 - test.limit) ** periods > test.alpha:
            rho = 1.0
    elif mode == "shrink":
        rho = (runs * (rho or 0.0) + 1.0) / (runs + 1.0)
    return max(rho or 0.0, 0.0)


_JUDGE_ENDS = SequentialRule._ends


def _ends(
    self: SequentialRule, test: PassTest, st: dict[str, Any], *, one: bool = False
) -> tuple[float, float] | None:
    """The judge's own `SequentialRule._ends`, its test's burstiness
    (`PassTest.dispersion`, the design effect's rho) that of `MODE` (the judge's own under
    `judge`, and for a bare value, which has none)."""
    if MODE[0] != "judge" and test.statistic != "value":
        test = dataclasses.replace(test, dispersion=burstiness(self.rule.name, test, st))
    return _JUDGE_ENDS(self, test, st, one=one)


def latencies(values: np.ndarray) -> Observation:
    vals = tuple(float(v) for v in values)
    return Observation(float(np.percentile(vals, 95)), values=vals, quantile=0.95)


def errors(bad: int, n: int) -> Observation:
    return Observation(bad / n, count=bad, total=n)


Draw = Callable[[np.random.Generator, int], dict[str, Observation]]


def whole_errors(share: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> dict[str, Observation]:
        return {ERRORS.name: errors(n if rng.random() < share else 0, n)}

    return draw


def beta_errors(mean: float, kappa: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> dict[str, Observation]:
        p = rng.beta(kappa * mean, kappa * (1 - mean))
        return {ERRORS.name: errors(int(rng.binomial(n, p)), n)}

    return draw


def slow_rounds(share: float) -> Draw:
    """Health latencies ~100 ms (none past 300 ms), whole rounds 10x slower `share` of
    the time."""

    def draw(rng: np.random.Generator, n: int) -> dict[str, Observation]:
        scale = 1.0 if rng.random() < share else 0.1
        return {SLOW.name: latencies(rng.lognormal(np.log(scale), 0.3, n))}

    return draw


def slow_relative(share: float) -> Draw:
    """A 50 ms service (lognormal 0.3), whole rounds 10x slower `share` of the time."""

    def draw(rng: np.random.Generator, n: int) -> dict[str, Observation]:
        scale = 10.0 if rng.random() < share else 1.0
        return {P95.name: latencies(rng.lognormal(np.log(0.05 * scale), 0.3, n))}

    return draw


def trial(scale: float, err: float, kappa: float | None) -> Draw:
    """bench/judge_probes.py's service (50 ms lognormal 0.3, `err` errors), its errors in
    Beta rounds of concentration `kappa` when given."""

    def draw(rng: np.random.Generator, n: int) -> dict[str, Observation]:
        values = rng.lognormal(np.log(0.05 * scale), 0.3, n)
        p = err if kappa is None else rng.beta(kappa * err, kappa * (1 - err))
        return {
            P95.name: latencies(values),
            ERRORS.name: errors(int(rng.binomial(n, p)), n),
        }

    return draw


def window(
    rules: Sequence[Rule], before: Draw, during: Draw, n: int, runs: int, rng: np.random.Generator
) -> tuple[dict[str, list[Observation]], list[dict[str, Observation]]]:
    """One window's draws: its background runs by rule, and its rounds."""
    background = [before(rng, n) for _ in range(runs)]
    per_rule = {r.name: [b[r.name] for b in background] for r in rules}
    return per_rule, [during(rng, n) for _ in range(ROUNDS)]


def judge(
    rules: Sequence[Rule],
    per_rule: dict[str, list[Observation]],
    rounds: list[dict[str, Observation]],
) -> str:
    """The window's decision under the current `MODE`, folded as the daemon folds it."""
    RUNS.clear()
    RUNS.update(per_rule)
    _BASE.clear()
    baselines = {name: merge(obs) for name, obs in per_rule.items()}
    j = Judge(list(rules), baselines, Policy(), horizon=ROUNDS)
    SequentialRule._ends = _ends  # type: ignore[method-assign]
    try:  # the judge's own afterwards (a test imports this module beside the judge's tests)
        state = j.start()
        for i, round_ in enumerate(rounds):
            state = j.advance(state, round_, in_place=True, final=i == ROUNDS - 1)
        return str(j.glance(state, final=True).decision)
    finally:
        SequentialRule._ends = _JUDGE_ENDS  # type: ignore[method-assign]


def run(
    label: str,
    rules: Sequence[Rule],
    before: Draw,
    during: Draw,
    n: int,
    runs: int,
    windows: int,
    seed: int,
    variants: Sequence[str] = VARIANTS,
) -> None:
    rng = np.random.default_rng(seed)
    said: dict[str, list[str]] = {v: [] for v in variants}
    for _ in range(windows):
        per_rule, rounds = window(rules, before, during, n, runs, rng)
        for v in variants:
            MODE[0] = v
            said[v].append(judge(rules, per_rule, rounds))
    cells = [f"{v} pass {said[v].count('pass')} fail {said[v].count('fail')}" for v in variants]
    print(f"{label:<34} n={n:<3} runs={runs:<4} | " + " | ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--only", default="", help="run only cases whose label has this")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    args = parser.parse_args()
    w = args.windows
    cases: list[tuple[str, list[Rule], Draw, Draw, int, int]] = []
    for runs in (120, 6):
        cases += [
            (
                "burst: whole-round errors 6%",
                [ERRORS],
                whole_errors(0.06),
                whole_errors(0.06),
                40,
                runs,
            ),
            (
                "burst: Beta errors 5% kappa 1",
                [ERRORS],
                beta_errors(0.05, 1),
                beta_errors(0.05, 1),
                40,
                runs,
            ),
            (
                "burst: Beta errors 5% kappa 2",
                [ERRORS],
                beta_errors(0.05, 2),
                beta_errors(0.05, 2),
                40,
                runs,
            ),
            ("burst: slow whole rounds 6%", [SLOW], slow_rounds(0.06), slow_rounds(0.06), 40, runs),
        ]
    for n in (10, 20, 40):
        calm = trial(1.0, 0.02, None)
        cases += [
            ("aa (judge_probes)", [ERRORS, P95], calm, calm, n, 6),
            ("aa, an hour of background", [ERRORS, P95], calm, calm, n, 120),
            ("errors_x5 (judge_probes)", [ERRORS, P95], calm, trial(1.0, 0.1, None), n, 6),
            ("latency_x2 (judge_probes)", [ERRORS, P95], calm, trial(2.0, 0.02, None), n, 6),
        ]
    for n in (20, 40):
        bursty = trial(1.0, 0.02, 2.0)
        cases += [
            ("bursty aa (2% Beta kappa 2)", [ERRORS, P95], bursty, bursty, n, 6),
            ("bursty aa (2% Beta kappa 2)", [ERRORS, P95], bursty, bursty, n, 120),
        ]
    for runs in (120, 6):  # last, so that the cases above keep their seeds
        cases.append(
            (
                "burst: slow rounds 3% -> 7%, +50%",
                [P95],
                slow_relative(0.03),
                slow_relative(0.07),
                40,
                runs,
            )
        )
    for seed, (label, rules, before, during, n, runs) in enumerate(cases):
        if args.only in label:
            run(label, rules, before, during, n, runs, w, seed, args.variants.split(","))


if __name__ == "__main__":
    main()

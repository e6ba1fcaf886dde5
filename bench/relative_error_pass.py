"""How often a good release passes a relative error bound on evidence, at the example
configuration's defaults, and whether registration foresaw it.

`error_rate max_increase` passes only when the window's upper confidence end sits within
the bound over the baseline rate's *lower* limit: an uncertain baseline leaves little room.
The example's `sentry-errors` (`max_increase: 100%`, a provider rule): a 1 h lookback in 60
one-minute buckets pooled by `merge` (as `agent.providers.sentry` fetches it), a 15-minute
window of 30 s rounds, confidence 0.99 shared by the example's six rules. A/A: the window's
requests fail at the baseline's rate, independently (`--kappa 0`) or in bursts (Beta per
period, concentration `kappa`, rho = 1 / (kappa + 1)). Beside the share that passed: the
share of windows whose registration (`Judge.blind_spots` at the baseline's traffic, as
`agent.windows.foresight` sizes a provider rule) said `cannot pass on evidence`. The checks
rows: a `source: checks` rule over 40 probes a round and 120 background runs of 40.

    python bench/relative_error_pass.py               # 100 windows a cell
    python bench/relative_error_pass.py --windows 40

Measured (session 49, 100 windows a cell; passed / warned at registration):

    sentry-errors  1 req/s      1% and 0.1%, rho 0 or 0.001      0 / 100 each
                   10 req/s     1%: rho 0  100 / 0, rho 0.001  81 / 0
                                0.1%: rho 0  2 / 100, rho 0.001  0 / 100
                   100 req/s    1%: 100 / 0 both; 0.1%: rho 0  92 / 0, rho 0.001  5 / 100
                   1000 req/s   1%: 100 / 0 both; 0.1%: rho 0 100 / 0, rho 0.001  6 / 100
    checks, 40 probes a round   +100% over 5%: 69 / 4; over 1%: 0 / 100
                                +50% over 5%: 9 / 100; over 1%: 0 / 100

Registration's `cannot pass on evidence` (`SequentialRule.pass_reach`) already says so of
every cell where A/A windows rarely pass, and of none where they mostly do: nothing added.

Never run as a test; prints figures only.
"""

from __future__ import annotations

import argparse
import zlib

import numpy as np

from agent.analysis.judge import Judge
from agent.analysis.observe import merge
from agent.analysis.types import Observation, Policy, Rule

OTHER_RULES = [Rule(f"other-{i}", "checks", "error_rate", max=0.05) for i in range(5)]
"""The example's five other rules: the window's alpha is shared by six (never fed here)."""


def _periods(
    rng: np.random.Generator, count: int, size: float, rate: float, kappa: float
) -> list[Observation]:
    out = []
    for _ in range(count):
        n = int(rng.poisson(size))
        p = rng.beta(rate * kappa, (1 - rate) * kappa) if kappa else rate
        c = int(rng.binomial(n, p))
        if n:
            out.append(Observation(value=c / n, count=c, total=n))
    return out


def window(
    rng: np.random.Generator,
    rule: Rule,
    *,
    per_round: float,
    base_periods: int,
    per_period: float,
    rate: float,
    kappa: float,
    rounds: int = 30,
) -> tuple[str, bool]:
    """One A/A window's outcome for `rule`, and whether registration said it cannot pass."""
    base = merge(_periods(rng, base_periods, per_period, rate, kappa))
    judge = Judge([rule, *OTHER_RULES], {rule.name: base}, Policy(confidence=0.99), horizon=rounds)
    warned = any(
        s.startswith(f"rule {rule.name}:") and "cannot pass on evidence" in s
        for s in judge.blind_spots({rule.name: per_round})
    )
    state = judge.start()
    for i, seen in enumerate(_periods(rng, rounds, per_round, rate, kappa)):
        state = judge.advance(state, {rule.name: seen}, in_place=True, final=i == rounds - 1)
    (verdict,) = [r for r in judge.verdict(state, final=True).rules if r.name == rule.name]
    return verdict.outcome, warned


SENTRY = Rule("sentry-errors", "sentry", "error_rate", max_increase=1.0)
"""The example's `sentry-errors`."""


def sentry_cell(
    rng: np.random.Generator, rps: float, rate: float, kappa: float, windows: int
) -> list[tuple[str, bool]]:
    """`windows` A/A windows of `SENTRY` at `rps` requests a second: a baseline of 60
    one-minute buckets, rounds of 30 s."""
    return [
        window(
            rng,
            SENTRY,
            per_round=rps * 30,
            base_periods=60,
            per_period=rps * 60,
            rate=rate,
            kappa=kappa,
        )
        for _ in range(windows)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=100)
    args = parser.parse_args()
    print("rule            traffic      rate   rho    passed  warned at registration")
    for rps in (1, 10, 100, 1000):
        for rate in (0.01, 0.001):
            for kappa in (0.0, 1000.0):
                cell = (rps, rate, kappa)
                rng = np.random.default_rng(zlib.crc32(repr(cell).encode()))
                runs = sentry_cell(rng, rps, rate, kappa, args.windows)
                _row(SENTRY.name, f"{rps} req/s", rate, kappa, runs)
    for increase in (1.0, 0.5):
        checks = Rule("probe-errors", "checks", "error_rate", max_increase=increase)
        for rate in (0.05, 0.01):
            rng = np.random.default_rng(zlib.crc32(repr((increase, rate)).encode()))
            runs = [
                window(
                    rng,
                    checks,
                    per_round=40,
                    base_periods=120,
                    per_period=40,
                    rate=rate,
                    kappa=0.0,
                )
                for _ in range(args.windows)
            ]
            _row(f"checks +{increase:.0%}", "40 probes", rate, 0.0, runs)


def _row(name: str, traffic: str, rate: float, kappa: float, runs: list[tuple[str, bool]]) -> None:
    n = len(runs)
    passed = sum(o == "pass" for o, _ in runs)
    warned = sum(w for _, w in runs)
    rho = 0.0 if not kappa else 1.0 / (kappa + 1.0)
    print(
        f"{name:15} {traffic:12} {rate:<6g} {rho:<6.2g} {passed:>3}/{n:<4} {warned:>3}/{n}",
        flush=True,
    )


if __name__ == "__main__":
    main()

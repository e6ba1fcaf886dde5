"""An absolute `max` on a proportion (error_rate max 0.05) and on a distribution (latency_p95
max 2s), 300 samples in 30 rounds of 10, with and without the look at the window's end
(`FINAL_SHARE`): detection at 2% and 10% (bursty: each round's rate Beta-distributed,
concentration 20) and A/A false failures at exactly the bound ("before" gives the
e-processes back the look's share, as the judge had it); at detection, the rounds to detect
of the windows both judges catch before the end (the e-processes' lost fifth).

Usage: python bench/absolute_look.py ALPHA detect|aa WINDOWS"""

import dataclasses
import sys
from typing import Literal

import numpy as np

from agent.analysis.sequential import FINAL_SHARE, SequentialRule
from agent.analysis.types import Observation, Rule

ALPHA = float(sys.argv[1]) if len(sys.argv) > 1 else 0.005
ROUNDS, PER = 30, 10
Kind = Literal["proportion", "distribution"]


def before(rule: SequentialRule) -> SequentialRule:
    k = 1.0 - FINAL_SHARE
    rule.components = tuple(
        dataclasses.replace(
            c, alpha=c.alpha / k, alpha_detector=c.alpha_detector / k, alpha_final=0.0
        )
        if c.alpha_final
        else c
        for c in rule.components
    )
    return rule


def make(kind: Kind, old: bool) -> SequentialRule:
    if kind == "proportion":
        r = SequentialRule(
            Rule("e", "checks", "error_rate", max=0.05), None, "proportion", ALPHA, horizon=ROUNDS
        )
    else:
        r = SequentialRule(
            Rule("l", "checks", "latency_p95", max=2.0), None, "distribution", ALPHA, horizon=ROUNDS
        )
    return before(r) if old else r


def window(
    rng: np.random.Generator, kind: Kind, rate: float, kappa: float, rule: SequentialRule
) -> tuple[int | None, bool]:
    st = rule.start()
    for k in range(ROUNDS):
        p = rng.beta(rate * kappa, (1 - rate) * kappa) if kappa else rate
        if kind == "proportion":
            c = int(rng.binomial(PER, p))
            obs = Observation(value=c / PER, count=c, total=PER)
        else:
            # a share p of samples past 2 s this round
            past = rng.random(PER) < p
            vals = np.where(past, rng.uniform(2.01, 5.0, PER), rng.uniform(0.1, 1.99, PER))
            obs = Observation(value=float(np.quantile(vals, 0.95)), values=tuple(vals.tolist()))
        rule.step(st, obs, k)
    rule.finish(st, ROUNDS - 1)
    at, comp = rule.failed_at(st)
    return at, (at is not None and comp is not None and rule.failed_at_end(st, comp))


def run(
    kind: Kind, rate: float, kappa: float, n: int, old: bool, seed: int
) -> tuple[float, float, list[int | None]]:
    """Share failed, share failed by the end look, and each window's round of an e-process's
    catch (-1: caught at the end look, None: not caught). The same seed gives both judges the same
    windows, so the rounds pair up window by window."""
    rng = np.random.default_rng(seed)
    rule = make(kind, old)
    fails = looks = 0
    early: list[int | None] = []
    for _ in range(n):
        at, looked = window(rng, kind, rate, kappa, rule)
        fails += at is not None
        looks += looked
        early.append(None if at is None else -1 if looked else at)
    return fails / n, looks / n, early


def delay(b: list[int | None], a: list[int | None]) -> str:
    """Rounds to detect (1-based) on the windows both judges catch before the end: median
    and p90 before -> after; of those the old judge caught early, how many the new one
    catches only at its end look or misses."""
    pairs = [(x, y) for x, y in zip(b, a, strict=True) if x is not None and x >= 0]
    both = [(x + 1, y + 1) for x, y in pairs if y is not None and y >= 0]
    late = sum(y == -1 for _, y in pairs)
    lost = sum(y is None for _, y in pairs)
    moved = f"early before, now at the end look {late}, missed {lost}"
    if not both:
        return f"ttd: no window caught early by both; {moved}"
    x, y = np.array(both).T
    return (
        f"ttd on {len(both)} caught early by both: median {np.median(x):.1f} -> {np.median(y):.1f}"
        f" rounds, p90 {np.percentile(x, 90):.1f} -> {np.percentile(y, 90):.1f}, mean lag"
        f" {np.mean(y - x):.2f} rounds (max {np.max(y - x)}); {moved}"
    )


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "detect"
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    kinds: tuple[Kind, ...] = ("proportion", "distribution")
    for kind in kinds:
        if mode == "detect":
            for rate in (0.02, 0.10):
                for kappa in (0, 20):
                    b = run(kind, rate, kappa, n, True, 1)
                    a = run(kind, rate, kappa, n, False, 1)
                    print(
                        f"{kind} rate {rate} kappa {kappa}: before fail {b[0]:.3f};"
                        f" after fail {a[0]:.3f} (look {a[1]:.3f}); {delay(b[2], a[2])}"
                    )
        else:
            for kappa in (0, 20, 5):
                b = run(kind, 0.05, kappa, n, True, 2)
                a = run(kind, 0.05, kappa, n, False, 2)
                print(
                    f"A/A {kind} rate 0.05 kappa {kappa}: before {b[0]:.4f};"
                    f" after {a[0]:.4f} (look {a[1]:.4f}) alpha {ALPHA}"
                )

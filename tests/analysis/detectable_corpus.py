"""Rules of every kind (latency against raw samples or a bare percentile, error and success
rates against counts or a bare rate, bare provider values; both directions, every bound)
and what `SequentialRule` says they can see at several traffics: the minimum detectable
effect (`_easiest`) and each bound's reach (`pass_reach`), every float as its exact hex.

The stored figures (`FIGURES`) were made by the judge before its searches were made cheaper
(session 33; written again in session 40, when absolute bounds got the look at the
window's end): work on their cost must give them back to the last bit; a deliberate change
to the statistics writes them again (`python -m tests.analysis.detectable_corpus --write`)
and says so."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Rule
from tests.analysis.golden_gzip import write_json_gz

FIGURES = Path(__file__).with_name("detectable_figures.json.gz")
RULES = 150
PER_ROUND = (0.5, 1.0, 2.0, 3.0, 9.5, 10.0, 47.0, 100.0, 1000.0)


def _pick(rng: np.random.Generator, options: list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def rules(seed: int = 2, count: int = RULES) -> list[SequentialRule]:
    """`count` rules, a sixth of each kind, with random bounds, baselines and windows."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kind = i % 6
        horizon = _pick(rng, [0, 1, 2, 30, 120, 900, 3600])
        alpha = _pick(rng, [0.005, 0.01, 0.05])
        up = kind == 0 or rng.uniform() < 0.7
        if kind in (0, 1):  # latency against the baseline's raw samples
            q = _pick(rng, [50, 95, 99])
            sv = rng.lognormal(-3, rng.uniform(0.2, 1.0), _pick(rng, [5, 40, 300, 1500, 6000]))
            if rng.uniform() < 0.2:
                sv = np.round(sv, 3)  # ties
            rule = Rule(
                f"latency{i}",
                "checks",
                f"latency_p{q}",
                max_increase=_pick(rng, [0.05, 0.1, 0.2, 0.5, 1.0, 1.5] if up else [0.1, 0.5]),
                max=_pick(rng, [None, 0.05, 0.2, 1.0]),
                direction="increase" if up else "decrease",
            )
            base = BaselineData(float(np.quantile(sv, q / 100)), sorted_values=np.sort(sv))
            out.append(SequentialRule(rule, base, "distribution", alpha, horizon=horizon))
        elif kind == 2:  # latency against a provider's bare percentile, or no baseline
            rule = Rule(
                f"bare{i}",
                "checks",
                "latency_p95",
                max_increase=_pick(rng, [0.1, 0.5]),
                max=0.3,
                min=_pick(rng, [None, 0.001]),
            )
            bare = BaselineData(rng.uniform(0.01, 0.5)) if rng.uniform() < 0.7 else None
            out.append(SequentialRule(rule, bare, "distribution", alpha, horizon=horizon))
        elif kind in (3, 4):  # rates against counts (two-sample), a bare rate, or bounds
            rate = _pick(rng, [0.0005, 0.003, 0.01, 0.05, 0.3])
            periods = _pick(rng, [1, 5, 120, 1800])
            total = float(periods * _pick(rng, [1, 10, 100]))
            errors = float(rng.binomial(int(total), rate))
            rule = Rule(
                f"rate{i}",
                "checks",
                "error_rate" if kind == 3 else "success_rate",
                max_increase=_pick(rng, [None, 0.1, 0.5, 1.0, 2.0] if up else [None, 0.1, 0.5]),
                max=_pick(rng, [None, 0.02, 0.1, 0.5]),
                min=_pick(rng, [None, None, 0.5]),
                direction="increase" if up else "decrease",
            )
            if rule.max_increase is None and rule.max is None and rule.min is None:
                rule = Rule(rule.name, "checks", rule.metric, max=0.05)
            dispersion = _pick(rng, [0.0, 0.01, 0.2])
            counted = BaselineData(
                errors / total, count=errors, total=total, periods=periods, dispersion=dispersion
            )
            base = BaselineData(rate) if rng.uniform() < 0.1 else counted
            out.append(SequentialRule(rule, base, "proportion", alpha, horizon=horizon))
        else:  # bare values (provider counts, scores)
            metric = _pick(rng, ["count", "apdex", "crash_free_rate", "throughput"])
            value = rng.uniform(0.0, 500.0)
            rule = Rule(
                f"value{i}",
                "sentry",
                metric,
                max_increase=_pick(rng, [0.1, 0.5]),
                max=_pick(rng, [None, 0.9, 1000.0]),
                min=_pick(rng, [None, 0.1]),
                direction="increase" if up else "decrease",
            )
            scaled = value / 500.0 if metric in ("apdex", "crash_free_rate") else value
            out.append(SequentialRule(rule, BaselineData(scaled), "value", alpha, horizon=horizon))
    return out


def _exact(value: Any) -> Any:
    return value.hex() if isinstance(value, float) else value


def figures(seed: int = 2, count: int = RULES) -> list[Any]:
    """Each rule at three of `PER_ROUND`'s traffics: (rule, traffic, its detectable effect's
    bound, value and effect, each bound's reach). Not the words: they are the evidence's."""
    out: list[Any] = []
    for k, tests in enumerate(rules(seed, count)):
        for per_round in PER_ROUND[k % 3 :: 3]:
            found = tests._easiest(per_round)
            reach = tests.pass_reach(per_round, max(tests.horizon, 1))
            out.append(
                [
                    k,
                    per_round,
                    None
                    if found is None
                    else [found.bound, _exact(found.value), _exact(found.effect)],
                    [
                        [r.test.key, _exact(r.mean), _exact(r.reached), r.rounds_needed]
                        for r in reach
                    ],
                ]
            )
    plain: list[Any] = json.loads(json.dumps(out))
    return plain


def load() -> list[Any]:
    with gzip.open(FIGURES, "rt") as f:
        stored: list[Any] = json.load(f)
    return stored


def main() -> int:
    if sys.argv[1:] != ["--write"]:
        print("usage: python -m tests.analysis.detectable_corpus --write", file=sys.stderr)
        return 2
    write_json_gz(FIGURES, figures())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

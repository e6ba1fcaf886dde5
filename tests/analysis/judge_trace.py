"""The judge's decisions round by round over simulated windows: a golden trace that work on
the judge's speed must reproduce exactly (`test_judge_trace.py`).

Not a test by itself: it builds windows (samples -> `observe()` -> `Judge.step`, baselines
pooled by `merge()`, as the daemon does), records what the judge said after every round
(decision, failed round, each rule's outcome, p-value, likelihood ratio and evidence
bounds) and, at a few rounds, the whole verdict and state. Families, traffic levels, rule
sets, policies and horizons vary so that every test of the sequential policy runs (count,
rank and exceedance ladders, bare values, the threshold streak, the e-detector).

Regenerate the stored trace only when the statistics change on purpose (and say so in the
commit):

    python -m tests.analysis.judge_trace --write
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule
from common.samples import Sample
from tests.analysis.golden_gzip import write_json_gz

GOLDEN = Path(__file__).with_name("judge_trace.json.gz")
ROUNDS = 60
FULL_AT = (19, ROUNDS - 1)
"""Rounds (0-based) after which the whole verdict and state are recorded."""
BASELINE_PERIODS = 20
PERIOD_S = 10
TRAFFIC = (1, 10, 100)
REL_TOL = 1e-10
ABS_TOL = 1e-12

RULE_SETS: dict[str, tuple[Rule, ...]] = {
    # bench/decisions.py's: two-sample count ladder, rank and exceedance ladders
    "relative": (
        Rule("errors", "checks", "error_rate", max_increase=0.1),
        Rule("latency", "checks", "latency_p95", max_increase=0.1),
    ),
    # bench/footprint.py's and bench/judge_cost.py's
    "footprint": (
        Rule("errors", "checks", "error_rate", max=0.05),
        Rule("latency", "checks", "latency_p95", max_increase=0.2),
    ),
    # absolute bounds, both bounds on one rule, a decrease, provider figures, a streak
    "mixed": (
        Rule("errors", "checks", "error_rate", max_increase=0.5, max=0.1),
        Rule("p99", "checks", "latency_p99", max=0.3, min=0.01),
        Rule("p50", "checks", "latency_p50", max_increase=0.3, direction="decrease"),
        Rule("crash-free", "sentry", "crash_free_rate", max_increase=0.01, direction="decrease"),
        Rule("5xx", "prometheus", "error_rate", max=0.05, max_increase=0.5),
        Rule("rps", "prometheus", "throughput", min=5.0),
    ),
}
POLICIES = {
    "sequential": Policy("sequential"),
    "no_failure": Policy("sequential", confidence=0.95, pass_on="no_failure"),
    "threshold": Policy("threshold", failure_limit=2),
    "fixed": Policy("fixed", confidence=0.98),
}


@dataclass(frozen=True, slots=True)
class Family:
    key: str
    errors: float = 1.0
    latency: float = 1.0
    onset: int = 0


FAMILIES = (
    Family("aa"),
    Family("errors_x2", errors=2.0),
    Family("errors_x5", errors=5.0),
    Family("latency_x1.5", latency=1.5),
    Family("latency_x0.6", latency=0.6),
    Family("onset_latency_x2", latency=2.0, onset=25),
)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    family: Family
    rps: int
    rules: str
    policy: str
    horizon: int
    seed: int


def windows() -> list[WindowSpec]:
    """Every family at every traffic level, under three combinations of rules and policy."""
    out = []
    combos = (
        ("relative", "sequential", 900),
        ("footprint", "sequential", 0),
        ("mixed", "sequential", 120),
        ("mixed", "no_failure", 0),
        ("mixed", "threshold", 0),
        ("relative", "fixed", 0),
    )
    seed = 0
    for family in FAMILIES:
        for rps in TRAFFIC:
            for rules, policy, horizon in combos:
                seed += 1
                if policy in ("threshold", "fixed") and rps != 10:
                    continue  # cheap policies: one traffic level is enough
                out.append(WindowSpec(family, rps, rules, policy, horizon, seed))
    return out


def _second(rng: np.random.Generator, rps: int, errors: float, latency: float) -> list[Sample]:
    n = int(rng.poisson(rps))
    p = float(rng.beta(0.01 * errors * 100.0, (1.0 - 0.01 * errors) * 100.0))
    failed = rng.uniform(size=n) < p
    lat = 0.08 * latency * np.exp(0.6 * rng.standard_normal(n))
    pairs = zip(failed.tolist(), lat.tolist(), strict=True)
    return [Sample("svc", not f, float(v)) for f, v in pairs]


def _provider(rng: np.random.Generator, errors: float) -> dict[str, Observation]:
    """A provider's figures for a round: a bare error rate and throughput, counted crashes."""
    sessions = int(rng.integers(50, 500))
    crashes = int(rng.binomial(sessions, 0.005 * errors))
    return {
        "5xx": Observation(float(0.01 * errors * rng.uniform(0.5, 1.5))),
        "rps": Observation(float(rng.uniform(3.0, 20.0))),
        "crash-free": Observation(
            1.0 - crashes / sessions, count=sessions - crashes, total=sessions
        ),
    }


def _observe(rules: tuple[Rule, ...], found: list[Sample], seconds: float) -> dict[str, Any]:
    return {r.name: observe(r, found, seconds) for r in rules if r.source == "checks"}


def run(spec: WindowSpec) -> dict[str, Any]:
    """One window's trace: per round, what the judge said; at `FULL_AT`, everything."""
    rng = np.random.default_rng(spec.seed)
    rules = RULE_SETS[spec.rules]
    periods = [
        [s for _ in range(PERIOD_S) for s in _second(rng, spec.rps, 1.0, 1.0)]
        for _ in range(BASELINE_PERIODS)
    ]
    seen = [_observe(rules, p, PERIOD_S) | _provider(rng, 1.0) for p in periods]
    baselines = {
        r.name: merge([s[r.name] for s in seen if r.name in s]) for r in rules if r.name != "rps"
    }
    judge = Judge(rules, baselines, POLICIES[spec.policy], horizon=spec.horizon)
    state = judge.start()
    trace: list[Any] = []
    full: dict[str, Any] = {}
    for k in range(ROUNDS):
        bad = k >= spec.family.onset
        errors = spec.family.errors if bad else 1.0
        latency = spec.family.latency if bad else 1.0
        round_ = _observe(rules, _second(rng, spec.rps, errors, latency), 1.0)
        round_ |= _provider(rng, errors)
        if k % 17 == 5:  # a provider outage now and then
            round_["5xx"] = Observation(None, error="provider answered 500")
            del round_["rps"]
        # a pickle, not JSON: as strict (stricter: tuples, NaN) at a twentieth of the cost
        # (the JSON snapshots were a third of the trace's time)
        before, old = pickle.dumps(state), state
        state, verdict = judge.step(state, round_, final=k == ROUNDS - 1)
        assert pickle.dumps(old) == before, "the fold changed its caller's state"
        trace.append(
            [verdict.decision, judge.failed_round(state), [_rule(v) for v in verdict.rules]]
        )
        if k in FULL_AT:
            full[str(k)] = {
                "verdict": json.loads(json.dumps(dataclasses.asdict(verdict))),
                "state": json.loads(json.dumps(state)),
            }
    return {"spec": _spec_json(spec), "rounds": trace, "full": full}


def _rule(v: Any) -> list[Any]:
    ev = v.evidence
    reached = [e.get("reached") for e in ev.get("evidence", [])]
    return [v.outcome, ev.get("p_value"), ev.get("likelihood_ratio"), reached]


def _spec_json(spec: WindowSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec) | {"family": spec.family.key}


def record() -> list[dict[str, Any]]:
    return [run(spec) for spec in windows()]


def differences(old: Any, new: Any, path: str = "", *, out: list[str] | None = None) -> list[str]:
    """Where two traces differ beyond floating-point noise (strings, counts and decisions
    must be equal; floats within `REL_TOL` relative or `ABS_TOL` absolute)."""
    found = [] if out is None else out
    if len(found) >= 20:
        return found
    if isinstance(old, float) or isinstance(new, float):
        numbers = isinstance(old, int | float) and isinstance(new, int | float)
        if not numbers or not math.isclose(old, new, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            found.append(f"{path}: {old!r} != {new!r}")
    elif isinstance(old, dict) and isinstance(new, dict):
        if old.keys() != new.keys():
            found.append(f"{path}: keys {sorted(old)} != {sorted(new)}")
        else:
            for key in old:
                differences(old[key], new[key], f"{path}.{key}", out=found)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            found.append(f"{path}: length {len(old)} != {len(new)}")
        else:
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                differences(a, b, f"{path}[{i}]", out=found)
    elif old != new:
        found.append(f"{path}: {old!r} != {new!r}")
    return found


def largest_relative_difference(old: Any, new: Any) -> float:
    """The largest relative difference between two traces' floats (for the report)."""
    if isinstance(old, float) and isinstance(new, float):
        if old == new or not (math.isfinite(old) and math.isfinite(new)):
            return 0.0
        return abs(old - new) / max(abs(old), abs(new))
    if isinstance(old, dict) and isinstance(new, dict):
        pairs: Any = ((old[k], new.get(k)) for k in old)
    elif isinstance(old, list) and isinstance(new, list):
        pairs = zip(old, new, strict=False)
    else:
        return 0.0
    return max((largest_relative_difference(a, b) for a, b in pairs), default=0.0)


def load(path: Path = GOLDEN) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as f:
        loaded: list[dict[str, Any]] = json.load(f)
    return loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"store the trace in {GOLDEN}")
    parser.add_argument("--check", action="store_true", help="compare with the stored trace")
    args = parser.parse_args()
    traces = record()
    if args.write:
        write_json_gz(GOLDEN, traces, separators=(",", ":"))
        print(f"wrote {len(traces)} windows to {GOLDEN}")
    if args.check:
        old = load()
        diffs = differences(old, json.loads(json.dumps(traces)))
        print("\n".join(diffs) or "identical within tolerance")
        print(f"largest relative difference: {largest_relative_difference(old, traces):.3g}")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

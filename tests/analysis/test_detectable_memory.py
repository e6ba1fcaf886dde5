"""What a rule keeps of its can-detect searches: nothing, once each search is done.

The exceedance path (`SequentialRule._exceedance_rounds`: one float a round of the window,
28.8 KB at one hour of 1 s rounds) is shared within one search (its look and its e-process
bisect the same scales). Kept by traffic and scale, up to 1,024 paths a rule, they held 23
MB in 4 minutes of `bench/footprint.py` (200 one-hour windows at 1 s, a loaded machine);
kept for the latest search only, a rule against a small baseline (the one or few
background runs a fresh agent has) still held that search's 9 paths (259 KB) for the rest
of its window, 52 MB at 200 windows. No other search reads them: each answer is kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.analysis.judge import Judge
from agent.analysis.observe import merge, observe
from agent.analysis.sequential import SequentialRule
from agent.analysis.types import Policy, Rule
from checks.base import Sample
from tests.analysis.latency_rules import lognormal_rule

FOOTPRINT_RULES = (  # bench/footprint.py's environment
    Rule("errors", "checks", "error_rate", max=0.05),
    Rule("latency", "checks", "latency_p95", max_increase=0.2),
)


def kept_bytes(rule: SequentialRule) -> int:
    return sum(a.nbytes for a in rule._exceeding.values())


def probes(rng: np.random.Generator, n: int) -> list[Sample]:
    """`n` probes of a healthy target (`bench/judge_cost.py`'s)."""
    lat = 0.005 * np.exp(0.4 * rng.standard_normal(n))
    ok = rng.uniform(size=n) > 0.01
    return [Sample("health", bool(o), float(v)) for o, v in zip(ok, lat, strict=True)]


def test_a_rule_keeps_no_exceedance_path_once_a_search_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rule = lognormal_rule(np.random.default_rng(3), base_n=600, rounds=3600)
    worked_out = 0
    path = SequentialRule._exceedance_path

    def counted(self: SequentialRule, *args: Any) -> Any:
        nonlocal worked_out
        worked_out += 1
        return path(self, *args)

    monkeypatch.setattr(SequentialRule, "_exceedance_path", counted)
    first = rule._easiest(10.0)
    assert worked_out > 0  # its exceedance test's search read paths
    assert kept_bytes(rule) == 0
    for tenths in range(10, 100):  # 1.0 to 9.9 probes a round, as drops make it
        rule._easiest(tenths / 10)
        assert kept_bytes(rule) == 0
    assert rule._easiest(10.0) == first


def test_a_long_window_worded_as_the_daemon_does_keeps_no_exceedance_path() -> None:
    """`bench/footprint.py`'s rules against a fresh agent's baseline (one background run of
    10 probes), 1 to 10 probes a round (an agent behind drops some), the verdict worded
    every 5 rounds (`VERDICT_REFRESH_ROUNDS`): what each rule keeps after each wording."""
    rng = np.random.default_rng(9)
    run = probes(rng, 10)
    baselines = {r.name: merge([observe(r, run, 30.0)]) for r in FOOTPRINT_RULES}
    judge = Judge(FOOTPRINT_RULES, baselines, Policy("sequential"), horizon=3600)
    state = judge.start()
    searched = set()
    for k in range(300):
        round_ = probes(rng, int(rng.integers(1, 11)))
        observations = {r.name: observe(r, round_, 1.0) for r in FOOTPRINT_RULES}
        state = judge.advance(state, observations, in_place=True)
        if k % 5 == 0:
            judge.verdict(state, final=False)
            compiled = judge.rule_policy._compiled.values()  # type: ignore[attr-defined]
            for rule in compiled:
                searched |= set(rule._detectable)
                assert kept_bytes(rule) == 0, (k, rule.rule.name)
    assert len(searched) > 1  # traffic that varies: several searches

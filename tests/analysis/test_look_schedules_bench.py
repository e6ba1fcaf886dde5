"""bench/look_schedules.py replays decision-benchmark windows under other schedules of
fixed-horizon looks: its `judge` schedule must be the judge's own looks (the same times to
detect as the benchmark's), and every schedule must spend exactly a test's look budget
(the union bound the judge's shares count on)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Rule
from tests.bench_module import bench_module


@pytest.mark.timeout(120)
def test_the_judge_schedule_detects_when_the_benchmark_does() -> None:
    bench = bench_module("look_schedules")
    decisions = bench_module("decisions")
    rules = frozenset({"errors"})
    family = next(f for f in decisions.FAMILIES if f.key == "errors_x1.5")
    seeds = decisions.window_seeds(bench.cell_of("errors_x1.5", 100), 3)
    for seed in seeds:
        found = bench.window(("errors_x1.5", 100, seed, rules))
        pre, deploy, _ = decisions.window_traffic(np.random.default_rng(seed), 100, family)
        assert found["ours"]["judge"] == decisions.ours(pre, deploy, 30, rules)


def test_every_schedule_spends_the_look_budget_and_no_more() -> None:
    bench = bench_module("look_schedules")
    base = BaselineData(value=0.01, count=1800.0, total=180_000.0, periods=60)
    rule = Rule("errors", "checks", "error_rate", max_increase=0.1)
    (comp,) = SequentialRule(rule, base, "proportion", 0.005, horizon=30).components
    budget = comp.alpha_midway + comp.alpha_final
    assert bench.looks(comp, 30, None) == [(14, comp.alpha_midway), (29, comp.alpha_final)]
    for by_test in bench.SCHEDULES.values():
        for schedule in by_test.values():
            levels = bench.looks(comp, 30, schedule)
            assert [k for k, _ in levels] == sorted({k for k, _ in levels})
            assert all(level >= 0 for _, level in levels)
            assert sum(level for _, level in levels) == pytest.approx(budget, rel=1e-12)
            assert levels[-1][0] == 29  # the last look is the window's end

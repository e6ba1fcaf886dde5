"""The judge says what it said before, round by round: every simulated window of
`judge_trace` against the stored trace (decisions, failed rounds, outcomes exactly; p-values,
likelihood ratios, evidence bounds and the whole state within floating-point noise).

Work on the judge's speed must leave this green; a deliberate change to the statistics
regenerates the trace (`python -m tests.analysis.judge_trace --write`) and says so."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.analysis import judge_trace

SPECS = judge_trace.windows()


@pytest.fixture(scope="module")
def golden() -> list[dict[str, Any]]:
    return judge_trace.load()


def test_the_stored_trace_covers_the_windows_built_here(golden: list[dict[str, Any]]) -> None:
    assert [g["spec"] for g in golden] == [judge_trace._spec_json(s) for s in SPECS]


@pytest.mark.parametrize(
    "index", range(len(SPECS)), ids=[f"{s.family.key}-{s.rps}-{s.rules}-{s.policy}" for s in SPECS]
)
def test_the_judge_repeats_its_stored_trace(index: int, golden: list[dict[str, Any]]) -> None:
    new = json.loads(json.dumps(judge_trace.run(SPECS[index])))
    assert judge_trace.differences(golden[index], new) == []


def test_a_changed_figure_is_a_difference() -> None:
    """The comparison can fail: noise passes, a decision or a real change does not."""
    old = {"rounds": [["continue", None, [["pass", 0.5, 1.25, [0.01]]]]]}
    noise = {"rounds": [["continue", None, [["pass", 0.5 * (1 + 1e-13), 1.25, [0.01]]]]]}
    assert judge_trace.differences(old, noise) == []
    changed = {"rounds": [["continue", None, [["pass", 0.5001, 1.25, [0.01]]]]]}
    assert judge_trace.differences(old, changed) != []
    failed = {"rounds": [["fail", 0, [["fail", 0.5, 1.25, [0.01]]]]]}
    assert len(judge_trace.differences(old, failed)) == 3

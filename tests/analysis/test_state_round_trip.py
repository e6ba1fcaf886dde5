"""The judge's state is stored as JSON and a restarted agent (or another replica) resumes
a window from it, so every number in it must read back as itself. The e-detector is the
one field the judge encodes itself (strict JSON holds no infinity or NaN): log 0 was None,
and so were +inf and NaN, read back as log 0, so a +inf detector restarted from 0 (in the
unbroken fold too, which reads its own state). The other fields are plain floats that the
store keeps as they are (`agent.store.sql._dumps`)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.sequential import BaselineData, SequentialRule, _from_json, _to_json

POLICY = Policy("sequential", confidence=0.99)


def _same(a: list[float], b: list[float]) -> bool:
    return all((x != x and y != y) or x == y for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "values", [[math.inf, 1.5], [math.nan, 0.0], [-math.inf, -2.0], [math.inf, math.nan, -math.inf]]
)
def test_an_e_detector_reads_back_as_itself_from_strict_json(values: list[float]) -> None:
    """Before: +inf and NaN read back as -inf (log 0)."""
    text = json.dumps(_to_json(values), allow_nan=False)
    assert _same(_from_json(json.loads(text)), values)


def test_a_stored_state_of_before_reads_as_it_did() -> None:
    assert _from_json([None, 1.0, 0.0]) == [-math.inf, 1.0, 0.0]


def _detector(state: dict[str, Any]) -> list[float]:
    seq = state["rules"]["cpu"]["seq"]
    return _from_json(seq["tests"]["max:value"]["sr"])


def test_a_window_resumed_after_its_detector_overflowed_decides_as_the_unbroken_one() -> None:
    """A value against a tiny `max` makes a round's bets infinite, the e-detector +inf; the
    window is resumed from its stored state after each round in turn. Its decisions were the
    same before (the infinite wealth fails the window once `min_samples` are in), but the
    detector read back as log 0: after a quiet round it was that round's factor alone."""
    rule = Rule("cpu", "checks", "cpu", max=1e-300, min_samples=4)
    values = [0.0, 1e10, 0.0, 0.0, 0.0, 0.0]
    rounds = [{"cpu": Observation(v)} for v in values]

    def run(resume_after: int | None) -> tuple[list[tuple[str, int | None]], list[list[float]]]:
        judge = Judge([rule], {}, POLICY, horizon=len(rounds))
        state = judge.start()
        seen: list[tuple[str, int | None]] = []
        detectors: list[list[float]] = []
        for i, round_ in enumerate(rounds):
            final = i == len(rounds) - 1
            state = judge.advance(state, round_, final=final)
            if i == resume_after:  # stored as the store writes it, read by a new judge
                state = json.loads(json.dumps(state))
                judge = Judge([rule], {}, POLICY, horizon=len(rounds))
            seen.append((judge.glance(state, final=final).decision, judge.failed_round(state)))
            detectors.append(_detector(state))
        return seen, detectors

    unbroken, detectors = run(None)
    assert unbroken[-1] == ("fail", 3)
    for k in range(len(rounds)):
        assert run(k) == (unbroken, detectors), k
    # the Shiryaev-Roberts recursion log(f (M + 1)) stays +inf once it is
    assert all(d == math.inf for row in detectors[1:] for d in row), detectors


def test_a_ladder_reads_a_stored_infinite_detector_as_itself() -> None:
    """A two-sample count test's detector, one row per interval of the baseline: a row
    stored as +inf stays +inf, log 0 takes the round's factor (a NaN row, which only a bet
    that underflowed could make, is `agent.analysis.stats`' to avoid)."""

    def stored(rows: list[list[float]]) -> None:
        rows[0][-3:] = [math.inf] * 3  # the bets the detector mixes (`stats.DETECTOR_BETS`)
        rows[1] = [-math.inf] * len(rows[1])

    st, _ = _ladder_after_stored_rows(stored)
    after = [_from_json(r) for r in st["sr"]]
    assert after[0][-3:] == [math.inf] * 3, after[0]
    assert all(math.isfinite(v) for v in after[0][:-3]), after[0]
    assert all(math.isfinite(v) for v in after[1]), after[1]


def _ladder_after_stored_rows(
    edit: Callable[[list[list[float]]], None],
) -> tuple[dict[str, Any], Any]:
    """A two-sample count test whose stored e-detector rows `edit` changed after a round,
    read back from strict JSON by a new rule and stepped one round."""
    rule = Rule("errors", "checks", "error_rate", max_increase=0.5)
    base = BaselineData(value=0.01, count=100.0, total=10000.0, periods=10)
    seq = SequentialRule(rule, base, "proportion", 0.01, horizon=30)
    (comp,) = [c for c in seq.components if c.ladder]
    obs = Observation(0.01, count=10, total=1000)
    state = seq.start()
    seq.step(state, obs, 0)
    st = state["tests"][comp.key]
    rows = [list(r) for r in st["sr"]]
    edit(rows)
    st["sr"] = [_to_json(r) for r in rows]
    state = json.loads(json.dumps(state, allow_nan=False))
    SequentialRule(rule, base, "proportion", 0.01, horizon=30).step(state, obs, 1)
    return state["tests"][comp.key], comp


def _ladder_after_a_stored_detector(fill: list[float], at: slice) -> tuple[dict[str, Any], Any]:
    """`_ladder_after_stored_rows` with every row holding `fill` at bets `at`."""

    def filled(rows: list[list[float]]) -> None:
        for row in rows:
            row[at] = fill

    return _ladder_after_stored_rows(filled)


def test_a_ladder_detector_at_infinity_fails_the_rule() -> None:
    """Every row +inf: the e-detector's mixture was NaN (its unweighted small bets: -inf
    weight + inf wealth), so it was skipped and never crossed; now +inf, which crosses."""
    st, _ = _ladder_after_a_stored_detector([math.inf] * 10, slice(0, 10))
    assert st["crossed"] == 1 and st["peak_d"] == math.inf, st


def test_a_ladder_detector_infinite_where_it_weighs_nothing_reads_as_the_rest() -> None:
    """The detector mixes only its large bets (`stats.TWO_SAMPLE_DETECTOR_LEAST`): a +inf
    at a small one weighs nothing, as any other number there (it gave NaN)."""
    inf, _ = _ladder_after_a_stored_detector([math.inf] * 3, slice(0, 3))
    zero, _ = _ladder_after_a_stored_detector([0.0] * 3, slice(0, 3))
    assert inf["peak_d"] == zero["peak_d"] and math.isfinite(zero["peak_d"]), (inf, zero)
    assert inf["crossed"] is None

"""A bound's evidence is a confidence sequence: the chance that any of its ends lies on
the wrong side of the truth is at most alpha, so the tightest end so far (their running
intersection) is as valid as the last one. The reported end was the last one, which rises
with each error a round brings: an A/A window's `max 0.05` on its errors read 0.0487
(pass), then 0.0525 after a round with one error of 12 (inconclusive), then pass again
(session 49's read-through: pass -> inconclusive -> pass between rounds 16 and 18)."""

from __future__ import annotations

from itertools import pairwise

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import judge
from agent.analysis.observe import merge

RULE = Rule("errors", "checks", "error_rate", max=0.05)
BASE = {"errors": merge([Observation(1 / 120, count=1, total=120) for _ in range(20)])}


def _round(errors: int, requests: int = 12) -> dict[str, Observation]:
    return {"errors": Observation(errors / requests, count=errors, total=requests)}


def _reached(rounds: list[dict[str, Observation]]) -> tuple[str, float]:
    (verdict,) = judge([RULE], BASE, rounds, Policy(), final=False, horizon=0).rules
    (bound,) = verdict.evidence["evidence"]
    return verdict.outcome, bound["reached"]


def test_a_bound_shown_to_hold_stays_shown_when_a_later_round_brings_an_error() -> None:
    rounds = [_round(1 if k in (3, 9, 15) else 0) for k in range(30)]
    rounds[22] = _round(1)  # the round after the bound is first shown to hold
    seen = [_reached(rounds[:k]) for k in range(21, 30)]
    assert seen[0][0] == "inconclusive" and seen[1][0] == "pass", seen
    ends = [end for _, end in seen]
    assert all(later <= earlier for earlier, later in pairwise(ends)), ends
    assert [outcome for outcome, _ in seen[1:]] == ["pass"] * 8, seen


def test_a_bound_whose_rounds_spread_more_reads_its_end_anew() -> None:
    """The running intersection holds across ends of one sequence: when the window's own
    rounds spread more than the baseline's (`_window_design_effect` rises), earlier ends
    were worked out on too little spread and are dropped, so whole rounds of errors after
    clean ones still stop a pass (30 clean rounds, then 3 of 12 errors three times)."""
    rounds = [_round(0) for _ in range(30)] + [_round(3) for _ in range(3)]
    assert _reached(rounds[:30])[0] == "pass"
    outcome, end = _reached(rounds)
    assert outcome == "inconclusive" and end > 0.05, end

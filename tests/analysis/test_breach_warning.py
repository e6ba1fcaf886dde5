"""The sequential policy's `rule breached` read-out (contract §4; `SequentialRule.breaching`):
on the example configuration's production environment (six rules, confidence 0.99, 30
rounds, 320 samples a round for `probe-errors`: 40 health probes, the load check's 200
requests, the login scenario's 80 steps), a release failing every request is warned
before its window fails, and a spell of errors that ends clears the warning; glance (each
round) and verdict (the alert's words) read it alike."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from agent.analysis.judge import Judge
from agent.analysis.types import Observation
from agent.settings_file import load_settings
from agent.windows.foresight import policy_of
from alerting.templates import rule_line

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "postflight.example.yaml"
PER_ROUND = 320


@pytest.fixture
def example(example_env: dict[str, str]) -> Judge:
    env = load_settings(EXAMPLE).environments["production"]
    rules = [r.to_rule() for r in env.rules]
    # background probes at 0.5% errors: an hour of 30 s runs of api-health
    base = {"probe-errors": Observation(0.005, count=24, total=4800, periods=120)}
    return Judge(rules, base, policy_of(env), horizon=round(env.window / env.interval))


def errors(share: float) -> dict[str, Observation]:
    bad = round(share * PER_ROUND)
    return {"probe-errors": Observation(bad / PER_ROUND, count=bad, total=PER_ROUND)}


def fold(judge: Judge, shares: list[float]) -> list[tuple[str, dict[str, Any] | None]]:
    """Each round's decision and `probe-errors`' warning read-out (None: not breaching),
    asserting that the glance and the verdict say the same."""
    state = judge.start()
    out: list[tuple[str, dict[str, Any] | None]] = []
    for share in shares:
        state, verdict = judge.step(state, errors(share), final=False)
        glance = judge.glance(state, final=False)
        rule = next(r for r in verdict.rules if r.name == "probe-errors")
        glanced = next(r for r in glance.rules if r.name == "probe-errors")
        assert rule.evidence.get("breaching") == glanced.evidence.get("breaching")
        assert glance.decision == verdict.decision
        out.append((verdict.decision, rule.evidence.get("breaching")))
        if verdict.decision == "fail":
            break
    return out


def test_a_release_failing_every_request_is_warned_before_its_window_fails(
    example: Judge,
) -> None:
    rounds = fold(example, [1.0] * 10)
    # the README's figures: warned at round 2 (131 to 1 warns), failed at round 3 (1,500)
    assert [d for d, _ in rounds] == ["continue", "continue", "fail"], rounds
    assert [w is not None for _, w in rounds[:2]] == [False, True], rounds
    warning = rounds[1][1]
    assert warning is not None
    assert round(warning["likelihood_ratio_warned"]) == 131, warning
    assert round(warning["likelihood_ratio_needed"]) == 1500, warning
    assert 131 <= warning["likelihood_ratio"] < 1500, warning


def test_a_spell_of_errors_that_ends_clears_the_warning_without_a_failure(
    example: Judge,
) -> None:
    rounds = fold(example, [1.0, 1.0] + [0.0] * 28)
    assert all(d == "continue" for d, _ in rounds), rounds
    warned = [w is not None for _, w in rounds]
    assert warned[1], rounds  # breached after the second round all errors
    cleared = warned.index(False, 2)
    assert cleared <= 4 and not any(warned[cleared:]), warned  # and back within 3 rounds


def test_a_release_within_its_bound_is_never_warned(example: Judge) -> None:
    rounds = fold(example, [0.005] * 30)
    assert all(d == "continue" and w is None for d, w in rounds), rounds


def test_the_breach_alerts_words_say_the_evidence_against_both_bars(example: Judge) -> None:
    """The alert's "why" is the rule's detail: it says how far the evidence has come."""
    state = example.start()
    for _ in range(2):
        state, verdict = example.step(state, errors(1.0), final=False)
    detail = next(r for r in verdict.rules if r.name == "probe-errors").detail
    assert (
        "past its max bound on the evidence since the deploy as it stands: 379 to 1,"
        " at least 131 warns, 1,500 fails it" in detail
    ), detail


def test_a_warned_rules_words_say_what_breaches_once(example: Judge) -> None:
    """The live run's breach alert opened the rule's explanation with the pass side's
    `upper bound 0.18 vs max 0.05: not enough evidence`, tagged it `[inconclusive]`, then
    gave the warning's odds twice (`past its max bound …: 230 to 1, …; strongest evidence
    of a regression: 230 to 1, …`): it says what is breaching and why, once."""
    state = example.start()
    for _ in range(2):
        state, verdict = example.step(state, errors(1.0), final=False)
    rule = next(r for r in verdict.rules if r.name == "probe-errors")
    assert rule.evidence.get("breaching"), rule
    odds = f"{round(rule.evidence['breaching']['likelihood_ratio']):,} to 1"
    assert "not enough evidence" not in rule.detail, rule.detail
    assert rule.detail.count(odds) == 1, rule.detail
    assert "past its max bound on the evidence" in rule.detail, rule.detail
    line = rule_line(asdict(rule))  # as the breach alert lists it
    assert "[inconclusive]" not in line and "[breaching]" in line, line

"""`common.breaching` reads each policy's evidence alone: the threshold streak only on a
rule the threshold policy judged (`policy: threshold`), the sequential warning only on
one the sequential tests judged (its verdict's `policy: sequential`, its glance naming
no policy). The judge writes `streak` and `breaching` under one policy each, so neither
read was wrong on its output; they read any evidence alike, and now say which is theirs
(the evidence below mixes them, as the judge never does)."""

from __future__ import annotations

from typing import Any

from agent.windows.lifecycle import _state_of
from common.breaching import Breach, breaching, in_a_streak, passed_in_a_streak, warned

WARNING = {"likelihood_ratio": 40.0, "likelihood_ratio_needed": 1500.0}
STREAK = {"policy": "threshold", "streak": 2, "failure_limit": 3}


def test_a_threshold_streak_is_read_on_the_threshold_policys_evidence() -> None:
    assert in_a_streak(STREAK) and passed_in_a_streak("pass", STREAK)
    assert breaching("pass", STREAK) == Breach("2 of 3 rounds", 2, 3)
    assert _state_of("pass", STREAK) == "breached"
    assert _state_of("inconclusive", STREAK) == "breached"  # at the end, too few to fail


def test_a_streak_on_other_evidence_is_no_threshold_streak() -> None:
    for policy in ("sequential", "fixed", None):
        evidence: dict[str, Any] = {"streak": 2, "failure_limit": 3}
        if policy is not None:
            evidence["policy"] = policy
        assert not in_a_streak(evidence), policy
        assert not passed_in_a_streak("pass", evidence), policy
        assert breaching("pass", evidence) is None, policy
        assert _state_of("pass", evidence) == "pass", policy


def test_the_sequential_warning_is_read_on_its_verdict_and_its_glance() -> None:
    verdict = {"policy": "sequential", "breaching": WARNING}
    glance = {"p_value": 0.2, "breaching": WARNING}  # a glance's figures name no policy
    for evidence in (verdict, glance):
        assert warned(evidence)
        assert breaching("inconclusive", evidence) == Breach("40 to 1 of 1,500")
        assert _state_of("inconclusive", evidence) == "breached"


def test_a_warning_on_the_threshold_policys_evidence_is_no_sequential_warning() -> None:
    for policy in ("threshold", "fixed"):
        evidence = {"policy": policy, "streak": 0, "breaching": WARNING}
        assert not warned(evidence), policy
        assert breaching("pass", evidence) is None, policy
        assert _state_of("pass", evidence) == "pass", policy

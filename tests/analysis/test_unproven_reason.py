"""An inconclusive verdict whose rule ended past its bound says so first.

`bench/small_windows.py` (3 s windows of 1 s rounds, `probe-errors` at `max 0.05`): a
deploy failing 48% of its probes ended `inconclusive` with the reason "no rule failed over
3 rounds, but 1 of 1 lacked evidence of a pass: probe-errors: error_rate upper bound 75.1%
vs max 5%: not enough evidence", the pass side's bound, a quiet window's words. The reason
now leads with the rule past its bound and how far it got towards failing (the sequential
warning's evidence against its bar; the threshold streak against `failure_limit`), in the
words the `inconclusive` alert's title and headline use; a rule within its bound lacking
evidence of a pass reads as before.
"""

from __future__ import annotations

import dataclasses
import re

from agent.analysis.judge import judge
from agent.analysis.types import Observation, Policy, Rule
from alerting.events import Alert, unproven_regressions
from alerting.templates import body, title
from common.breaching import SHORT_OF_EVIDENCE
from tests.alerting.test_templates import window

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
QUIET = Rule("health-errors", "checks", "error_rate", max=0.05)
BASELINE = {"probe-errors": Observation(0.005, count=24, total=4800, periods=120)}


def counts(bad: int, total: int) -> Observation:
    return Observation(bad / total, count=bad, total=total)


def test_a_sequential_rule_warned_at_the_end_leads_the_reason() -> None:
    # 2 of 4 probes failed a round: warned, too few probes to fail in 3 rounds at
    # confidence 0.999 (at 0.99 a 3-round window's whole share fails it: SHORT_WINDOW_ROUNDS)
    rounds = [{ERRORS.name: counts(2, 4), QUIET.name: counts(0, 4)}] * 3
    strict = Policy(confidence=0.999)
    verdict = judge([QUIET, ERRORS], BASELINE, rounds, strict, final=True, horizon=3)
    assert verdict.decision == "inconclusive", verdict.reason
    past = re.escape(
        f"probe-errors: error_rate 50% past max 5% over 3 rounds, {SHORT_OF_EVIDENCE} ("
    )
    # the evidence against its bar, as `register --wait` and the page show its breach
    assert re.match(rf"{past}[\d.,]+ to 1 of [\d.,]+ needed\); and 1 of 2 lacked", verdict.reason)
    # the rule within its bound keeps its words
    within = "health-errors: error_rate upper bound [\\d.]+% vs max 5%: not enough evidence"
    assert re.search(rf"{within}$", verdict.reason), verdict.reason
    alone = judge([QUIET], {}, [{QUIET.name: counts(0, 4)}] * 3, Policy(), final=True)
    assert alone.reason.startswith(
        "no rule failed over 3 rounds, but 1 of 1 lacked evidence of a pass: health-errors:"
        " error_rate upper bound"
    ), alone.reason
    # the alert names the rule the reason leads with, in the same words
    alert = dataclasses.replace(
        Alert.for_window(window(), "inconclusive", reason=verdict.reason),
        rules=[dataclasses.asdict(r) for r in verdict.rules],
    )
    assert unproven_regressions(alert) == ["probe-errors"]
    assert title(alert).endswith(f"probe-errors past its bound, {SHORT_OF_EVIDENCE}")
    assert f"**Why:** {verdict.reason}" in body(alert).replace("\\", "")


def test_a_threshold_streak_short_of_failure_limit_leads_the_reason() -> None:
    rules = [QUIET, ERRORS]
    quiet = Observation(None, error="provider timeout")
    rounds = [{ERRORS.name: counts(19, 40), QUIET.name: quiet}] * 3
    threshold = Policy("threshold", failure_limit=5)
    verdict = judge(rules, {}, rounds, threshold, final=True)
    assert verdict.decision == "inconclusive", verdict.reason
    assert verdict.reason == (
        "probe-errors: error_rate 47.5% past max 5% in each of the 3 rounds judged,"
        f" {SHORT_OF_EVIDENCE} (3 of 5 rounds needed); and 1 of 2 had no data in any"
        " round: health-errors: no data (provider timeout)"
    )

"""A window with unwatched slots whose rule is still past its bound at the end
(`agent.windows.unwatched`), driven through the judge as the watch reads it."""

from __future__ import annotations

from agent.analysis import Observation, Policy, Rule
from agent.analysis.judge import Judge
from agent.analysis.types import Verdict
from agent.analysis.verdicts import Glance
from agent.windows.unwatched import unwatched_end
from common.breaching import Breach, breaching

ERRORS = Rule("probe-errors", "checks", "error_rate", max=0.05)
SENTRY = Rule("sentry-errors", "sentry", "error_rate", max=0.05)
THRESHOLD = Policy("threshold", failure_limit=3)


def rate(failed: int, total: int) -> Observation:
    return Observation(failed / total, count=failed, total=total)


def ended(
    rules: list[Rule], rounds: list[dict[str, Observation]], unwatched: int
) -> tuple[Glance, Verdict | None]:
    """The window's last glance and verdict after `rounds`, as `unwatched_end` leaves them."""
    judge_ = Judge(rules, {}, THRESHOLD, horizon=len(rounds) + unwatched)
    state = judge_.start()
    for round_ in rounds:
        state = judge_.advance(state, round_, final=False)
    glance = judge_.glance(state, final=True)
    verdict = judge_.verdict(state, final=True)
    return unwatched_end(glance, verdict, unwatched)


def test_a_breaching_pass_is_not_passed_when_the_window_is_inconclusive_for_another_reason() -> (
    None
):
    """probe-errors within its bound in round 1, past it in round 2 (1 of 3 rounds), then the
    window's last 2 slots went unwatched; sentry-errors had no data, so the window is
    inconclusive anyway. Before, probe-errors stayed `pass` with a streak of 1 and nothing
    said why it was not failed; it now reads as in a window that would have passed:
    `inconclusive`, not passed, saying it was still past its bound and slots went
    unwatched."""
    silent = Observation(None, error="Sentry answered 503")
    rounds = [
        {ERRORS.name: rate(0, 10), SENTRY.name: silent},
        {ERRORS.name: rate(5, 10), SENTRY.name: silent},
    ]
    glance, verdict = ended([ERRORS, SENTRY], rounds, unwatched=2)
    assert verdict is not None
    assert glance.decision == verdict.decision == "inconclusive"
    probe = next(r for r in verdict.rules if r.name == ERRORS.name)
    assert probe.outcome == "inconclusive", probe
    assert breaching(probe.outcome, probe.evidence) is None
    assert "not passed: still past its bound at the end" in probe.detail, probe.detail
    assert "2 slots of the window went unwatched" in probe.detail, probe.detail
    assert probe.evidence["unwatched_slots"] == 2
    assert [g.outcome for g in glance.rules] == ["inconclusive", "inconclusive"]
    # the judge's own reason (sentry-errors' missing data) is kept, and this one said too
    assert "Sentry answered 503" in verdict.reason, verdict.reason
    assert "probe-errors still past its bound at the window's end" in verdict.reason


def test_a_window_that_would_pass_still_reads_as_before() -> None:
    rounds = [{ERRORS.name: rate(0, 10)}, {ERRORS.name: rate(5, 10)}]
    glance, verdict = ended([ERRORS], rounds, unwatched=2)
    assert verdict is not None and glance.decision == verdict.decision == "inconclusive"
    assert verdict.reason.startswith("probe-errors still past its bound at the window's end")
    assert verdict.rules[0].outcome == "inconclusive"
    # no slot unwatched: the judge's pass stands, its streak read as a breaching pass
    glance, verdict = ended([ERRORS], rounds, unwatched=0)
    assert verdict is not None and verdict.decision == "pass"
    assert breaching(verdict.rules[0].outcome, verdict.rules[0].evidence) == Breach(
        "1 of 3 rounds", 1, 3
    )


def test_a_rule_back_within_its_bound_and_a_fail_are_left_as_they_are() -> None:
    silent = Observation(None, error="Sentry answered 503")
    back = [
        {ERRORS.name: rate(5, 10), SENTRY.name: silent},
        {ERRORS.name: rate(0, 10), SENTRY.name: silent},
    ]
    glance, verdict = ended([ERRORS, SENTRY], back, unwatched=2)
    assert verdict is not None and verdict.decision == "inconclusive"
    assert verdict.rules[0].outcome == "pass", verdict.rules[0]
    assert "went unwatched" not in verdict.reason
    failing = [{ERRORS.name: rate(5, 10), SENTRY.name: silent}] * 3
    glance, verdict = ended([ERRORS, SENTRY], failing, unwatched=2)
    assert verdict is not None and glance.decision == verdict.decision == "fail"
    assert verdict.rules[0].outcome == "fail"

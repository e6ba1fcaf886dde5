"""A window's pass when some of its slots went unwatched.

No I/O. Why: a replica killed while holding a window leaves its slots unwatched until
another takes the lease over (or the agent restarts); when the window ends meanwhile, it
is judged on the rounds it had. The threshold policy passes a rule whose streak past its
bound is still short of `failure_limit` at the end, and a streak cut short by missing
rounds is no evidence of a pass: a deploy whose every check failed passed "on the rounds
it had" (`bench/ha_faults.py`, seeds 700-705). Such a rule is `inconclusive` instead, and
so is the window; a fail the rounds it had showed stands, and a rule back within its
bounds by the end still passes. The judge is left as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from agent.analysis.types import RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from common.breaching import passed_in_a_streak
from common.words import counted


def unwatched_end(
    glance: Glance, verdict: Verdict | None, unwatched: int
) -> tuple[Glance, Verdict | None]:
    """`glance` and `verdict` as a window with `unwatched` slots passed over may end: a
    pass on a rule still breaching is `inconclusive`, saying why, whether the window would
    have passed or is inconclusive for another reason (a rule without data) too."""
    if glance.decision not in ("pass", "inconclusive") or unwatched <= 0:
        return glance, verdict
    short = {r.name for r in glance.rules if passed_in_a_streak(r.outcome, r.evidence)}
    if not short:
        return glance, verdict
    glance = Glance("inconclusive", tuple(_glance(r, short) for r in glance.rules))
    if verdict is None:
        return glance, None
    why = (
        f"{counted(unwatched, 'slot')} of the window went unwatched (a replica's takeover"
        " or a restart)"
    )
    said = (
        f"{', '.join(sorted(short))} still past its bound at the window's end and {why}:"
        " missing rounds are missing evidence, so it is not passed"
    )
    if verdict.decision == "pass":
        reason = f"{said} (the judge alone said: {verdict.decision}: {verdict.reason})"
    else:  # inconclusive already: the judge's reason first, this one beside it
        reason = f"{verdict.reason}; {said}"
    rules = tuple(_rule(r, short, why, unwatched) for r in verdict.rules)
    return glance, Verdict("inconclusive", reason, rules)


def _glance(rule: RuleGlance, short: Iterable[str]) -> RuleGlance:
    if rule.name not in short:
        return rule
    return dataclasses.replace(rule, outcome="inconclusive")


def _rule(rule: RuleVerdict, short: Iterable[str], why: str, unwatched: int) -> RuleVerdict:
    if rule.name not in short:
        return rule
    detail = f"{rule.detail} (not passed: still past its bound at the end, and {why})"
    evidence = {**rule.evidence, "unwatched_slots": unwatched}
    return dataclasses.replace(rule, outcome="inconclusive", detail=detail, evidence=evidence)

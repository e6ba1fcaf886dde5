"""A rule the judge has not failed, past its bound as it stands (contract §4's `rule
breached` warning), read from its evidence: one read-out for both policies that warn.

Shared by `status`/`register --wait` (`agent.cli.render`) and the deploy page
(`agent.web.view`), which each read it alike and once said `pass` beside 100% errors, and
`inconclusive` beside a sequential rule on-call had just been paged `breached` for: one
rule, here at the bottom both may import. The threshold policy writes `streak` and
`failure_limit` into a rule's evidence, the sequential policy its warning's `breaching`
figures (`agent.analysis.policies.sequential`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from common.words import odds, odds_number


@dataclass(frozen=True)
class Breach:
    """How far along failing a breaching rule is: `so_far` beside its bound (`3 of 4
    rounds`; `379 to 1 of 1,500`, its evidence against what fails it); `streak`/`limit`
    for the threshold policy's rounds in a row (0 under the sequential policy)."""

    so_far: str
    streak: int = 0
    limit: int = 0


def breaching(outcome: str, evidence: object) -> Breach | None:
    """The breach of a rule past its bound short of failing: under the threshold policy a
    streak short of `failure_limit` (`pass` in the window's progress, or a window passed
    so); under the sequential policy its warning's read-out (`pass`, or `inconclusive` for
    want of evidence of a pass). None otherwise, evidence of any other shape included."""
    if outcome not in ("pass", "inconclusive") or not isinstance(evidence, Mapping):
        return None
    if evidence.get("policy") == "threshold" and outcome == "pass":
        streak, limit = evidence.get("streak"), evidence.get("failure_limit")
        if isinstance(streak, int) and isinstance(limit, int) and streak > 0:
            return Breach(f"{streak} of {limit} rounds", streak, limit)
    warned = evidence.get("breaching")
    if isinstance(warned, Mapping):  # the glance's figures name no policy
        now, fails = warned.get("likelihood_ratio"), warned.get("likelihood_ratio_needed")
        if isinstance(now, int | float) and isinstance(fails, int | float):
            return Breach(f"{odds(now)} of {odds_number(fails)}")
    return None

"""A threshold rule past its bound but short of `failure_limit`, read from its evidence.

Shared by `status`/`register --wait` (`agent.cli.render`) and the deploy page
(`agent.web.view`), which each read it alike and once said `pass` beside 100% errors: one
rule, here at the bottom both may import (the threshold policy writes `streak` and
`failure_limit` into a rule's evidence).
"""

from __future__ import annotations

from collections.abc import Mapping


def breaching(outcome: str, evidence: object) -> tuple[int, int] | None:
    """(rounds past its bound, `failure_limit`) of a threshold rule past its bound short of
    its limit: `pass` in the window's progress (the verdict if it ended now), or a window
    passed so. None otherwise, evidence of any other shape included."""
    if outcome != "pass" or not isinstance(evidence, Mapping):
        return None
    if evidence.get("policy") != "threshold":
        return None
    streak, limit = evidence.get("streak"), evidence.get("failure_limit")
    if isinstance(streak, int) and isinstance(limit, int) and streak > 0:
        return streak, limit
    return None

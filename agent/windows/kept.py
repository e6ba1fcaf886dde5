"""The words a relative checks rule takes when its baseline pooled the runs of a release
whose window ended inconclusive (`foresight.kept_releases`).

No I/O. Why: such a release stays live (nothing rolled it back), so a regression its
window could not show within bounds became the next window's reference, and the next
deploy as slow passed `max_increase` against it, its verdict saying nothing of what it
was compared with (live trial, seed 1 at 20 probes: 3 of 12 latency x2 passed so).
"""

from __future__ import annotations

import dataclasses

from agent.analysis.types import Rule, RuleVerdict, Verdict
from agent.windows.foresight import KeptRelease


class KeptBaseline:
    """What the checks rules' baseline pooled of inconclusive releases, said in each
    relative checks rule's detail."""

    def __init__(self) -> None:
        self._words = ""
        self._relative: frozenset[str] = frozenset()

    def note(self, kept: list[tuple[KeptRelease, int]], rules: list[Rule]) -> None:
        self._relative = frozenset(
            r.name for r in rules if r.source == "checks" and r.max_increase is not None
        )
        self._words = "; ".join(
            f"its baseline holds {count} run{'s' if count != 1 else ''} of {release.version}"
            f" ({release.window_id}), whose window ended inconclusive"
            for release, count in kept
        )

    def said(self, verdict: Verdict) -> Verdict:
        """`verdict` with each relative checks rule naming the inconclusive releases its
        baseline holds runs of."""
        if not self._words or not self._relative:
            return verdict
        return dataclasses.replace(verdict, rules=tuple(self._said(r) for r in verdict.rules))

    def _said(self, rule: RuleVerdict) -> RuleVerdict:
        if rule.name not in self._relative or rule.baseline is None:
            return rule
        return dataclasses.replace(rule, detail=f"{rule.detail}; {self._words}")

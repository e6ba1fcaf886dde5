"""The words a relative checks rule takes when its baseline left out, or kept, the runs of
a release whose window ended inconclusive with that rule's estimate past its bound
(`foresight.kept_releases`).

No I/O. Why: such a release stays live (nothing rolled it back), so a regression its
window could not show within bounds became the next window's reference, and the next
deploy as slow passed `max_increase` against it, its verdict saying nothing of what it
was compared with (live trial, seed 1 at 20 probes: 3 of 12 latency x2 passed so).
"""

from __future__ import annotations

import dataclasses

from agent.analysis.types import RuleVerdict, Verdict
from agent.windows import foresight
from agent.windows.foresight import KeptRuns
from common.words import counted


class KeptBaseline:
    """What the checks rules' baseline left out or kept of inconclusive releases past
    their bounds, said in each such rule's detail."""

    def __init__(self) -> None:
        self._words: dict[str, str] = {}

    def note(self, kept: list[KeptRuns]) -> None:
        words: dict[str, list[str]] = {}
        for item in kept:
            release = f"{item.release.version} ({item.release.window_id})"
            runs = counted(item.runs, "run")
            for name in item.pooled_by:
                words.setdefault(name, []).append(
                    f"its baseline holds {runs} of {release}, whose window ended"
                    f" inconclusive past this bound (fewer than {foresight.KEPT_RUNS_LEFT}"
                    " other runs in its lookback)"
                )
            for name in item.left_out_of:
                words.setdefault(name, []).append(
                    f"its baseline leaves out {runs} of {release}, whose window ended"
                    " inconclusive past this bound"
                )
        self._words = {name: "; ".join(said) for name, said in words.items()}

    def said(self, verdict: Verdict) -> Verdict:
        """`verdict` with each relative checks rule naming the inconclusive releases past
        its bound its baseline left out or holds runs of."""
        if not self._words:
            return verdict
        return dataclasses.replace(verdict, rules=tuple(self._said(r) for r in verdict.rules))

    def _said(self, rule: RuleVerdict) -> RuleVerdict:
        words = self._words.get(rule.name)
        if words is None or rule.baseline is None:
            return rule
        return dataclasses.replace(rule, detail=f"{rule.detail}; {words}")

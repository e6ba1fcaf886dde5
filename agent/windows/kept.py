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
from collections.abc import Iterable, Mapping
from typing import Any

from agent.analysis.types import Rule, RuleVerdict, Verdict
from agent.windows import foresight
from agent.windows.foresight import KeptRuns
from common.words import counted

STORED_KEY = "kept"
"""The key of a relative checks rule's stored baseline observation holding its words
(`KeptBaseline.stored_in`); `observation_from_dict` reads past it. Why stored: a resumed
watch read its lookback's probe summaries again to rebuild them (start-up reads as long as
the lookback, for every window resumed), and could word them otherwise than the window's
first watch did (runs pruned, windows ended since)."""


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

    def stored_in(self, baseline: Mapping[str, Any], rules: Iterable[Rule]) -> dict[str, Any]:
        """`baseline` (rule name to stored observation) with each relative checks rule's
        words under `STORED_KEY` (empty: none), stored with it so that a resumed watch
        reads them back (`restore`) instead of the lookback's probe summaries again."""
        out = dict(baseline)
        for name in foresight.relative_checks(rules):
            if name in out:
                out[name] = {**out[name], STORED_KEY: self._words.get(name, "")}
        return out

    def restore(self, baseline: Mapping[str, Any], rules: Iterable[Rule]) -> bool:
        """The words stored with `baseline` (`stored_in`); False, none taken, when a
        relative checks rule's were not stored (a baseline stored before they were: the
        caller rebuilds them from the lookback, once)."""
        words: dict[str, str] = {}
        for name in foresight.relative_checks(rules):
            stored = baseline.get(name)
            if not isinstance(stored, Mapping) or not isinstance(stored.get(STORED_KEY), str):
                return False
            if stored[STORED_KEY]:
                words[name] = stored[STORED_KEY]
        self._words = words
        return True

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

"""Provider baselines the agent's own stall left unread (`Observation.agent_lag`), and the
words an inconclusive rule without its baseline takes.

No I/O. Why: such a fetch raises no provider alert (the provider did nothing wrong), and
a relative rule whose every baseline fetch the agent could not read ended "no baseline
to compare with (8 rounds with data)" with no word of why; on-call must read that the
agent was overloaded, not guess at the provider. (A figure the agent left unread says so
already: the judge's "no data (…)" quotes the latest round's reason.)
"""

from __future__ import annotations

import dataclasses

from agent.analysis.types import Observation, RuleVerdict, Verdict


class UnreadBaselines:
    """Per rule: why its latest baseline fetch was not read, while that is the agent's
    stall; forgotten once one is read or fails for the provider's own reason."""

    def __init__(self) -> None:
        self._why: dict[str, str] = {}

    def note(self, rule: str, baseline: Observation) -> None:
        if baseline.agent_lag and baseline.error:
            self._why[rule] = baseline.error
        else:
            self._why.pop(rule, None)

    def said(self, verdict: Verdict) -> Verdict:
        """`verdict` with each inconclusive rule still without its baseline for the
        agent's stall saying so in its detail."""
        if not self._why:
            return verdict
        return dataclasses.replace(verdict, rules=tuple(self._said(r) for r in verdict.rules))

    def _said(self, rule: RuleVerdict) -> RuleVerdict:
        why = self._why.get(rule.name)
        if why is None or rule.outcome != "inconclusive" or rule.baseline is not None:
            return rule
        return dataclasses.replace(rule, detail=f"{rule.detail}; baseline not read: {why}")

"""The judge: rules, baselines and rounds in, verdicts out.

Pure: no I/O, no clock, no asyncio. Everything it needs arrives as arguments,
so a decision can be replayed exactly (tests, the decision benchmark, a restart).

`observe` / `merge` turn check samples and periods into observations; `judge` turns
observations into a `Verdict` under one of three policies (threshold, sequential, fixed).
The statistics and their assumptions are documented in `agent.analysis.stats`.
"""

from agent.analysis.judge import judge
from agent.analysis.observe import merge, observe
from agent.analysis.types import Observation, Policy, Rule, RuleVerdict, Verdict

__all__ = [
    "Observation",
    "Policy",
    "Rule",
    "RuleVerdict",
    "Verdict",
    "judge",
    "merge",
    "observe",
]

"""The judge: rules, baselines and rounds in, verdicts out.

Pure: no I/O, no clock, no asyncio. Everything it needs arrives as arguments,
so a decision can be replayed exactly (tests, the decision benchmark, a restart).

`observe.observe` / `observe.merge` turn check samples and periods into observations;
`judge.judge` turns observations into a `Verdict` under one of three policies
(threshold, sequential, fixed). The statistics and their assumptions are documented in
`agent.analysis.stats`.

The package itself holds the types only: reading a configuration needs them and the
policies' names (`agent.analysis.policies`), not the statistics (numpy, scipy: about
0.7 s of CPU for `validate-config`, `check` or `schema`), which load with the module
that needs them.
"""

from agent.analysis.types import Observation, Policy, Rule, RuleVerdict, Verdict

__all__ = ["Observation", "Policy", "Rule", "RuleVerdict", "Verdict"]

"""A rule whose probes a check's own bug ended says so: its round's observation names the
bug, where it would say only "no samples". No I/O.

Why: the registry leaves a run its check's bug ended out of the evidence
(`checks.bugs`: no sample, neither a pass nor a failure of the target), so a check whose
every run has the bug gives its rules no data; the judge's reason for such a rule is its
observation's error, and "no samples" would send on-call to the target, not to the
plugin. A rule that keeps other probes is judged on them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from agent.analysis.types import Observation, Rule
from checks.base import CheckResult
from checks.lag import run_target


def bug_said(rule: Rule, observation: Observation, results: Sequence[CheckResult]) -> Observation:
    """`observation` of `rule` for a round of `results`: when it has no data and a check
    the rule reads had its bug in the round, its error is that bug's words (the check,
    the exception, where; redacted by the registry), the latest of them."""
    if observation.value is not None:
        return observation
    said = [
        r.message
        for r in results
        if r.bug and run_target(r) == "deploy" and (rule.check is None or r.check == rule.check)
    ]
    if not said:
        return observation
    return dataclasses.replace(observation, error=said[-1])

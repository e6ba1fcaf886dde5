"""A check's own bug in a window's round, said where on-call reads it: a rule whose probes
it ended names the bug, where it would say only "no samples"; and the window's one
`check_bug` alert of the check says how many runs of the round it took. No I/O.

Why: the registry leaves a run its check's bug ended out of the evidence
(`checks.bugs`: no sample, neither a pass nor a failure of the target), so a check whose
every run has the bug gives its rules no data; the judge's reason for such a rule is its
observation's error, and "no samples" would send on-call to the target, not to the
plugin. A rule that keeps other probes is judged on them, on fewer probes than planned:
that was a WARNING logged once and a metric, no alert, so on-call never heard that a
window was judged so.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence

from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict
from checks.base import CheckResult
from checks.bugs import NOT_EVIDENCE
from checks.lag import run_target
from common.words import counted


def bug_said(rule: Rule, observation: Observation, results: Sequence[CheckResult]) -> Observation:
    """`observation` of `rule` for a round of `results`: when it has no data and a check
    the rule reads had its bug in the round, its error is that bug's words (the check,
    the exception, where; redacted by the registry), the latest of them. A later round
    with no run of the rule's checks at all (the window's last, cut at its end; one a
    stalled agent ran nothing in) says `no samples`, which the judge never lets replace
    the bug's words (`agent.analysis.judge._EMPTY_ROUND`), so the verdict names the bug."""
    if observation.value is not None:
        return observation
    said = _bugs_of(rule, results, "deploy")
    if not said:
        return observation
    return dataclasses.replace(observation, error=said[-1].message)


def _bugs_of(rule: Rule, results: Sequence[CheckResult], target: str) -> list[CheckResult]:
    """The runs of `rule`'s checks of `target` among `results` that a bug ended."""
    return [
        r
        for r in results
        if r.bug and run_target(r) == target and (rule.check is None or r.check == rule.check)
    ]


class BaselineBugs:
    """Per canary rule: the latest bug that ended its baseline runs (`baseline_url`'s,
    probed side by side), while its baseline has no probe. Why: such a rule ended "no
    baseline to compare with" in the verdict the API and `register --wait` show (its
    reason "p95: no baseline"), the bug named only in the `check_bug` alert, so whoever
    read the verdict looked at the stable side, not the plugin. Forgotten once the
    baseline has data."""

    def __init__(self) -> None:
        self._why: dict[str, tuple[str, str]] = {}
        """Rule name → (the check, the bug's words)."""

    def note(self, rule: Rule, baseline: Observation, results: Sequence[CheckResult]) -> None:
        if baseline.value is not None:
            self._why.pop(rule.name, None)
        elif said := _bugs_of(rule, results, "baseline"):
            self._why[rule.name] = (said[-1].check, said[-1].message.removesuffix(NOT_EVIDENCE))

    def said(self, verdict: Verdict) -> Verdict:
        """`verdict` with each inconclusive rule still without its baseline for the
        check's bug naming it: in its detail, and where the reason says it had none."""
        named = [r.name for r in verdict.rules if self._named(r)]
        if not named:
            return verdict
        reason = verdict.reason
        for name in named:
            tail = f" (check {self._why[name][0]}'s bug ended its baseline runs)"
            pattern = rf"(?:^|(?<=: )|(?<=; )){re.escape(name)}: no baseline(?=;|$)"
            reason = re.sub(pattern, functools.partial(_and, tail), reason)
        rules = tuple(self._said(r) if self._named(r) else r for r in verdict.rules)
        return dataclasses.replace(verdict, reason=reason, rules=rules)

    def _named(self, rule: RuleVerdict) -> bool:
        return rule.name in self._why and rule.outcome == "inconclusive" and rule.baseline is None

    def _said(self, rule: RuleVerdict) -> RuleVerdict:
        left = "its baseline runs (baseline_url) were left out, ended by the check's bug"
        return dataclasses.replace(rule, detail=f"{rule.detail}; {left}: {self._why[rule.name][1]}")


def _and(tail: str, match: re.Match[str]) -> str:
    return match[0] + tail


BUG_WORDS_SHOWN = 3
"""The most of a check's distinct bugs in a round its alert quotes (the rest are counted)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RoundBugs:
    """A check's runs of one round that its own bug ended: the deploy's, and a canary's
    baseline runs' (`baseline_bugs` of `baseline_runs`), which are its rules' baseline."""

    check: str
    bugs: int
    runs: int
    said: tuple[str, ...]
    """Each distinct bug's words, as its result says them (redacted by the registry)."""
    baseline_bugs: int = 0
    baseline_runs: int = 0

    def reason(self, number: int) -> str:
        """The `check_bug` alert's reason: the check, the exception and where, how many
        runs of round `number` it took, and what that means for the evidence."""
        shown = [s.removesuffix(NOT_EVIDENCE) for s in self.said[:BUG_WORDS_SHOWN]]
        more = len(self.said) - len(shown)
        words = "; ".join(shown) + (f"; and {counted(more, 'other bug')}" if more > 0 else "")
        if not self.bugs:  # the canary's baseline runs alone
            return f"{words} — {self._baseline_share(number)}." + TOLD
        share = _share(self.bugs, self.runs)
        if self.bugs == self.runs:
            left = (
                "the check gave its rules no probe that round (a rule with none is"
                " inconclusive, naming the bug)"
            )
        else:
            others = self.runs - self.bugs
            left = f"the window is judged on the check's {counted(others, 'other probe')}"
        also = f"; and {self._baseline_share(number)}" if self.baseline_bugs else ""
        return (
            f"{words} — {share} {'run' if self.runs == 1 else 'runs'} of round {number} ended"
            " so, left out of the evidence (neither a pass nor a failure of the target): "
            + left
            + also
            + "."
            + TOLD
        )

    def _baseline_share(self, number: int) -> str:
        """What the bug took of the canary's baseline runs of round `number`: the baseline
        of the check's rules (`baseline_url`, probed side by side)."""
        runs = self.baseline_runs
        share = _share(self.baseline_bugs, runs)
        if self.baseline_bugs == runs:
            left = (
                "its rules' baseline has none of that round's probes (a relative rule with"
                " no baseline is inconclusive)"
            )
        else:
            others = runs - self.baseline_bugs
            left = f"its rules' baseline has the {counted(others, 'other probe')} of that round"
        return (
            f"{share} of the canary's baseline {'run' if runs == 1 else 'runs'} (baseline_url)"
            f" of round {number} ended so, left out of the baseline: {left}"
        )


def _share(bugs: int, runs: int) -> str:
    """How many of a round's `runs` the bug ended: `all 3`, `its 1`, `2 of 3`."""
    if bugs == runs:
        return f"all {runs}" if runs > 1 else "its 1"
    return f"{bugs} of {runs}"


TOLD = (
    " Told once a deploy, whatever later rounds do: each such run is counted in"
    ' postflight_check_runs_total{result="error"}, and the agent\'s log has its traceback.'
)


def round_bugs(results: Iterable[CheckResult]) -> list[RoundBugs]:
    """The checks whose own bug ended runs in a round's `results`, in the order met,
    counting the deploy's runs (those `bug_said` reads) apart from a canary's baseline
    runs: those are no probe of the deploy, but they are its rules' baseline, and a bug
    in them alone left a relative rule "no baseline to compare with" and on-call untold."""
    runs: dict[tuple[str, bool], int] = {}
    bugs: dict[tuple[str, bool], int] = {}
    said: dict[str, list[str]] = {}
    for result in results:
        key = (result.check, run_target(result) == "baseline")
        runs[key] = runs.get(key, 0) + 1
        if result.bug:
            bugs[key] = bugs.get(key, 0) + 1
            said.setdefault(result.check, []).append(result.message)
    return [
        RoundBugs(
            check,
            bugs.get((check, False), 0),
            runs.get((check, False), 0),
            tuple(dict.fromkeys(words)),
            bugs.get((check, True), 0),
            runs.get((check, True), 0),
        )
        for check, words in said.items()
    ]


class CheckBugAlerts:
    """Which checks' bugs a watch has alerted: each check's once (the store's claim keeps
    it to one a deploy across rounds, restarts and replicas; this spares it a claim a
    round)."""

    def __init__(self) -> None:
        self.told: set[str] = set()

    def new(self, results: Sequence[CheckResult]) -> list[RoundBugs]:
        """The checks of a round's `results` whose bug this watch has not alerted yet."""
        if not any(r.bug for r in results):
            return []
        fresh = [b for b in round_bugs(results) if b.check not in self.told]
        self.told.update(b.check for b in fresh)
        return fresh

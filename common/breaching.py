"""A rule the judge has not failed, past its bound as it stands (contract §4's `rule
breached` warning), read from its evidence: one read-out for both policies that warn.

Shared by `status`/`register --wait` (`agent.cli.render`) and the deploy page
(`agent.web.view`), which each read it alike and once said `pass` beside 100% errors, and
`inconclusive` beside a sequential rule on-call had just been paged `breached` for: one
rule, here at the bottom both may import. The threshold policy writes `streak` and
`failure_limit` into a rule's evidence, the sequential policy its warning's `breaching`
figures (`agent.analysis.policies.sequential`). The threshold streak's own test,
`in_a_streak`, is here too: the alerts' `breached`, /metrics' `breaching` and a window
that went unwatched read it alike; and the sequential warning's, `warned`.

Each reads its own policy's evidence only: a rule's evidence names the policy that judged
it (`policy: threshold` for a rule a sequential window judges by the streak: a bare value
with a `min`, one gone below 0), and the judge writes `streak` under the threshold policy
alone, `breaching` under the sequential one alone (whose glance names no policy). So a
threshold streak is never read on a rule the sequential tests judged, nor a sequential
warning on one the streak judged; the two tests below say so themselves rather than
rely on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    warned = evidence.get("breaching") if is_sequential(evidence) else None
    if isinstance(warned, Mapping):
        now, fails = warned.get("likelihood_ratio"), warned.get("likelihood_ratio_needed")
        if isinstance(now, int | float) and isinstance(fails, int | float):
            return Breach(f"{odds(now)} of {odds_number(fails)}")
    return None


SHORT_OF_EVIDENCE = "short of the evidence to fail"
"""How the verdict's reason (`agent.analysis`) and the `inconclusive` alert (its title and
headline, `alerting.events`) say a rule ended past its bound without failing: one set of
words, so the alert's body agrees with the reason it quotes."""


def unproven(outcome: str, evidence: object) -> Breach | None:
    """A rule that ended the window `inconclusive` past its bound, short of the evidence to
    fail: the sequential policy's warning (`breaching`), or the threshold policy's streak
    too short for `failure_limit` over rounds none of which was within the bound (its
    `_none_within`, whose outcome `breaching` does not read). None otherwise."""
    if outcome != "inconclusive" or not isinstance(evidence, Mapping):
        return None
    if in_a_streak(evidence):
        streak, limit = evidence["streak"], evidence.get("failure_limit")
        if isinstance(limit, int):
            return Breach(f"{streak} of {limit} rounds", streak, limit)
    return breaching(outcome, evidence)


def short_of_failing(breach: Breach) -> str:
    """`short of the evidence to fail (655 to 1 of 750 needed)`, `(2 of 3 rounds needed)`:
    how far an `unproven` rule got, in the words `register --wait` and the deploy page show
    its breach with (`Breach.so_far`)."""
    return f"{SHORT_OF_EVIDENCE} ({breach.so_far} needed)"


def past_their_bounds(names: list[str]) -> str:
    """`probe-errors past its bound, short of the evidence to fail`: the `unproven` rules
    as the `inconclusive` alert's title and `register --wait`'s end line name them."""
    bounds = "past its bound" if len(names) == 1 else "past their bounds"
    return f"{', '.join(names)} {bounds}, {SHORT_OF_EVIDENCE}"


def in_a_streak(evidence: Mapping[str, Any]) -> bool:
    """The threshold policy's streak under way: the rule past its bound in its latest
    round judged, `streak` rounds in a row. Whatever its outcome: at the window's end a
    rule every judged round of which was past its bound, too few to fail, is `inconclusive`
    with its streak (the threshold policy's `_none_within`), and alerts call that
    `breached` as they do a `pass` in a streak; `breaching` and `passed_in_a_streak` read
    only the `pass`. The threshold policy's evidence only (see the module's docstring)."""
    if evidence.get("policy") != "threshold":
        return False
    streak = evidence.get("streak")
    return isinstance(streak, int) and streak > 0


def is_sequential(evidence: Mapping[str, Any]) -> bool:
    """Whether the sequential policy's tests judged the rule of this evidence: its verdict
    says `policy: sequential`, its glance (figures only) names no policy."""
    return evidence.get("policy") in (None, "sequential")


def warned(evidence: Mapping[str, Any]) -> bool:
    """The sequential policy's `rule breached` warning: a test past its warning bar
    (`breaching`, the read-out), on a rule its tests judged (see the module's docstring)."""
    return is_sequential(evidence) and bool(evidence.get("breaching"))


def passed_in_a_streak(outcome: str, evidence: Mapping[str, Any]) -> bool:
    """A rule passed by the judge while past its bound (a streak short of the limit): what
    /metrics counts as `breaching` and a window that went unwatched does not pass."""
    return outcome == "pass" and in_a_streak(evidence)

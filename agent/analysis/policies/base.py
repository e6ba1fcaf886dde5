"""What a judging policy is: per-rule start state, one step per round, a rule's verdict.

Pure: no I/O, no clock. The judge keeps the bookkeeping every policy shares (the rule's
kind, rounds with data, pooled counts, a quantile sketch, the sum of bare values) and hands
each round with data to the window's policy; the policy keeps its own fields in the same
JSON-able per-rule state, so a restart resumes any policy from the stored state alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from agent.analysis import sketch
from agent.analysis.sequential import BaselineData, Kind
from agent.analysis.types import Observation, Policy, Rule
from agent.analysis.verdicts import Judged, RuleGlance, State, glance_of, pooled


@dataclass(frozen=True, slots=True)
class Window:
    """What a policy is compiled against: one window's rules, baselines and settings."""

    rules: tuple[Rule, ...]
    base: Mapping[str, BaselineData | None]
    policy: Policy
    alpha: float
    """The window's error budget (1 - confidence): each bound's evidence to pass takes it
    whole (an intersection-union test)."""
    alpha_rule: float
    """The budget shared equally among the rules: the failing side's union bound."""
    horizon: int
    """Planned number of rounds (0: unknown)."""


class RulePolicy(Protocol):
    """How one policy judges a window's rules; compiled once per window."""

    on_evidence: bool
    """A window passes only when every rule passed on evidence (else `inconclusive`)."""

    def start(self, rule: Rule) -> State:
        """The policy's own fields of a rule's state before the first round (JSON-able)."""
        ...

    def step(self, rule: Rule, st: State, obs: Observation, kind: Kind, index: int) -> None:
        """Fold round `index`'s usable observation into the rule's state `st`, in place."""
        ...

    def finish(self, rule: Rule, st: State, index: int) -> None:
        """Round `index`, just folded, was the window's last: a policy's tests that look
        once at the window's end do so now, in place (`BasePolicy`: none)."""
        ...

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        """The rule's verdict from its state (only called once it has data)."""
        ...

    def glance(self, rule: Rule, st: State, kind: Kind, final: bool) -> RuleGlance:
        """`judge`'s outcome and headline figures without its words (every round)."""
        ...

    def failed_at(self, rule: Rule, st: State) -> int | None:
        """The round at which the rule failed, if it has, without wording a verdict."""
        ...

    def blind_spots(
        self, per_round: Mapping[str, float], interval: float | None = None
    ) -> list[str]:
        """Before the first round: rules whose bound is below what they can detect, or
        that a good release would likely not show hold by the window's end (its length
        said at `interval` seconds a round)."""
        ...


class BasePolicy:
    """Defaults for the optional parts of `RulePolicy`: a policy that only says when a rule
    fails (`st["failed_at"]`), glances by wording its verdict, and has nothing to say
    before the first round."""

    on_evidence = False
    needs_samples = True
    """A percentile rule's round is judged only with fresh samples (`values`); False for a
    policy that judges each round's figure alone, which a round without new samples has
    (the judge reads it with getattr: a policy without it needs samples)."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self._readers: dict[str, sketch.Reader] = {}

    def finish(self, rule: Rule, st: State, index: int) -> None:
        """No test that looks once at the window's end."""

    def pooled(self, rule: Rule, st: State) -> float | None:
        """`verdicts.pooled`, a percentile read by the rule's own `sketch.Reader` (its
        buckets kept in order from round to round instead of sorted every round)."""
        reader = self._readers.get(rule.name)
        if reader is None:
            reader = self._readers[rule.name] = sketch.Reader()
        return pooled(rule, st, reader)

    def judge(self, rule: Rule, st: State, kind: Kind, final: bool) -> Judged:
        raise NotImplementedError

    def glance(self, rule: Rule, st: State, kind: Kind, final: bool) -> RuleGlance:
        return glance_of(self.judge(rule, st, kind, final))

    def failed_at(self, rule: Rule, st: State) -> int | None:
        at = st.get("failed_at")
        return at if isinstance(at, int) else None

    def blind_spots(
        self, per_round: Mapping[str, float], interval: float | None = None
    ) -> list[str]:
        return []


PolicyFactory = Callable[[Window], RulePolicy]

"""A relative p95 rule compiled against a fresh lognormal baseline: what the latency tests'
windows start from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from agent.analysis.sequential import BaselineData, SequentialRule
from agent.analysis.types import Observation, Rule

LATENCY = Rule("p95", "checks", "latency_p95", max_increase=0.1)


class WindowEnd(NamedTuple):
    """One of a rule's tests at a window's end: its peak log e-value, the round it crossed."""

    peak: float
    crossed: int | None

    @classmethod
    def of(cls, test: Mapping[str, Any]) -> WindowEnd:
        """Read from the test's state (`state["tests"][name]`)."""
        return cls(float(test["peak"]), test["crossed"])


def lognormal_rule(
    rng: np.random.Generator,
    *,
    base_n: int,
    rounds: int,
    sigma: float = 0.6,
    alpha: float = 0.005,
    rule: Rule = LATENCY,
    periods: int = 0,
) -> SequentialRule:
    """`rule` against `base_n` lognormal baseline samples (median 82 ms, log-sd `sigma`),
    for a window of `rounds` rounds, at the decision benchmark's rule alpha by default;
    pooled from `periods` background runs alike when given (the rank test's sub-Gaussian
    bets then size by their measured design effect)."""
    base_values = rng.lognormal(-2.5, sigma, base_n)
    base = Observation(
        float(np.percentile(base_values, 95)),
        values=tuple(base_values.tolist()),
        quantile=0.95,
        period_sizes=(base_n // periods,) * periods if periods else (),
    )
    return SequentialRule(
        rule, BaselineData.from_observation(base), "distribution", alpha, horizon=rounds
    )

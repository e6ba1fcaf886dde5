"""Typed inputs and outputs of the judge. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Metric = str
"""`error_rate`, `latency_p50`, `latency_p95`, `latency_p99`, `throughput`, or a provider metric."""

Direction = Literal["increase", "decrease"]
RuleOutcome = Literal["pass", "fail", "inconclusive"]
PolicyName = str
"""A registered policy (`agent.analysis.policies`): `sequential`, `threshold`, `fixed`…"""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule as the judge sees it (converted from the configuration)."""

    name: str
    source: str
    metric: Metric
    max: float | None = None
    min: float | None = None
    max_increase: float | None = None
    """Relative change that matters (0.5 = +50%), against the baseline."""
    direction: Direction = "increase"
    """Which way is bad. `decrease` for crash-free rate, throughput and the like."""
    min_samples: int = 1
    check: str | None = None
    query: str | None = None
    query_key: Literal["nrql", "query"] | None = None
    """Which key the configuration gave `query` as, so a provider can refuse the other."""

    @property
    def only_relative(self) -> bool:
        """Bounded by `max_increase` alone: judged against its baseline, and nothing
        without one (a `max` or `min` beside it is judged without: `needs_baseline`)."""
        return self.max_increase is not None and self.max is None and self.min is None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one rule saw over one period (a round, or the baseline period).

    `value` is the metric itself (a rate, seconds, a count…); `count`/`total`
    are the events behind a rate where the source has them (errors out of
    requests); `values` are the raw samples behind a distribution (latencies in
    seconds). `value is None` means no data; `error` says why.
    """

    value: float | None
    count: int | None = None
    total: int | None = None
    values: tuple[float, ...] = ()
    error: str | None = None
    query: str | None = None
    quantile: float | None = None
    """For a percentile metric, which one `value` is (0.95 for p95), so `merge` can recompute it."""
    seconds: float | None = None
    """Length of the period, so a throughput (`count` per second) pools exactly."""
    periods: int = 1
    """How many periods were pooled into this one (`merge`)."""
    dispersion: float | None = None
    """Correlation of events within one period (bursty errors), measured by `merge` across its
    periods; the sequential test discounts each round's counts by it. None: not measured."""
    period_sizes: tuple[int, ...] = ()
    """With `values` pooled from several periods (`merge`: a baseline's background runs), how
    many each period gave, in order, so the judge can measure how samples past any cutoff
    cluster in periods (slow whole rounds) as `dispersion` does for counts. Empty: not kept
    (one period, or a baseline stored before it was)."""
    period_counts: tuple[tuple[int, int], ...] = ()
    """With counts pooled from several periods (`merge`: a baseline's background runs,
    provider buckets), each period's (bad events, total), in order, so the judge can rank
    a round among them (`agent.analysis.period_ranks`). Empty: not kept (one period, or a
    baseline stored before it was)."""
    answered: bool = False
    """With `error`: the source answered, but not usably (a rejected key or query, an answer
    that cannot be read): a fix in the configuration, not an outage that passes."""
    not_yet: bool = False
    """With `error`: the source answered that it has nothing there yet (Sentry's 404 for
    an environment it has seen no event of): it comes with the first event."""
    agent_lag: bool = False
    """With `error`: no answer was read in time while the agent's own event loop was
    stalled for more of the wait than it can vouch for (`checks.lag`): the agent's
    failure, not the source's; asked again, never alerted as the source's."""
    lower_bounds: int = 0
    """How many of `values` are the waits of probes that timed out: lower bounds on the
    target's time, not measures of it (`observe`). A round mostly of them can show a
    latency rule past its bound, never within it (the judge skips it otherwise)."""
    rests_on_waits: bool = False
    """`value`, a percentile, would be higher were a timeout's wait longer (`observe`): a
    lower bound itself, as when most probes timed out, though they were few (one of 5 for
    a p95). Such a round too shows a latency rule past its bound, never within it."""

    @property
    def has_data(self) -> bool:
        return self.value is not None and self.value == self.value and self.error is None


@dataclass(frozen=True, slots=True)
class Policy:
    name: PolicyName = "sequential"
    failure_limit: int = 3
    confidence: float = 0.99
    pass_on: Literal["evidence", "no_failure"] = "evidence"
    """sequential: a rule passes only on evidence that it is within its bounds (`evidence`),
    or whenever it did not fail (`no_failure`, the older meaning)."""


@dataclass(frozen=True, slots=True)
class RuleVerdict:
    """One rule's judgement, with the evidence a human needs to trust it."""

    name: str
    source: str
    metric: Metric
    outcome: RuleOutcome
    observed: float | None
    baseline: float | None
    threshold: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    """Statistic, p-value or likelihood ratio, effect size, failing rounds…"""


WindowDecision = Literal["continue", "fail", "pass", "inconclusive"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The window's judgement after a round.

    `decision` is `fail` as soon as the evidence says so, `continue` while the
    window runs, and at the window's end `pass` or `inconclusive` (a rule lacked
    evidence of a pass, or had no data).
    """

    decision: WindowDecision
    reason: str
    rules: tuple[RuleVerdict, ...]

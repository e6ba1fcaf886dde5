"""Turn check samples into observations, and pool observations of several periods.

Pure: no I/O, no clock. The daemon calls `observe` once per rule per round with that round's
samples; `merge` pools the background probing before a deploy (or any list of periods) into
one baseline, keeping counts and raw values so the judge can weigh the evidence, and
measuring how bursty errors are across the periods (`Observation.dispersion`, and each
period's counts, `Observation.period_counts`; for raw values, how many each period gave:
`Observation.period_sizes`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from agent.analysis.describe import quantile_of
from agent.analysis.stats import intra_period_correlation, percentile
from agent.analysis.types import Observation, Rule
from common.samples import Sample, Target

NO_SAMPLES = "no samples"
"""A check-backed rule's round without a run of its checks: nothing of why it had none."""


def _usable(obs: Observation) -> bool:
    return obs.value is not None and math.isfinite(obs.value) and obs.error is None


def observe(
    rule: Rule,
    samples: Sequence[Sample],
    round_seconds: float,
    *,
    target: Target = "deploy",
) -> Observation:
    """One round of one check-backed rule, from the samples of that round.

    Only samples of `target` count, and only those of `rule.check` when the rule names one.
    `error_rate` = failed / total (count = failed, total = n); `latency_pNN` = the NN-th
    percentile in seconds of the samples that have a latency (values = those latencies,
    count = total = n, `lower_bounds` = how many are a timeout's wait, `rests_on_waits` =
    whether the percentile is a lower bound too); `throughput` = the samples that passed /
    round_seconds (count = those).
    """
    check = rule.check  # list comprehensions, not generators: this runs per rule per round
    if check is None:
        chosen = [s for s in samples if s.target == target]
    else:
        chosen = [s for s in samples if s.target == target and s.check == check]
    if not chosen:
        return Observation(value=None, error=NO_SAMPLES, seconds=round_seconds)
    metric = rule.metric
    n = len(chosen)
    if metric == "error_rate":
        failed = len([s for s in chosen if not s.ok])
        return Observation(value=failed / n, count=failed, total=n, seconds=round_seconds)
    if metric == "throughput":
        if round_seconds <= 0:
            return Observation(value=None, error="round has no duration", count=n)
        # what the target served: a failed probe (refused, 5xx, timed out) is none of it,
        # or a target that answered nothing kept the agent's own steady pace
        served = len([s for s in chosen if s.ok])
        return Observation(value=served / round_seconds, count=served, seconds=round_seconds)
    q = quantile_of(metric)
    if metric.startswith("latency_") and q is not None:
        latencies = tuple([float(s.latency_s) for s in chosen if s.latency_s is not None])
        if not latencies:
            return Observation(value=None, error="no latencies", seconds=round_seconds)
        value = percentile(latencies, q)
        # a timeout's latency is the time it waited: at least the target's, never a measure
        # (the others' latencies are listed only when there is one: a pass over them a round)
        waits = len([s for s in chosen if s.error == "timeout" and s.latency_s is not None])
        answered = (
            [float(s.latency_s) for s in chosen if s.latency_s is not None and s.error != "timeout"]
            if waits
            else []
        )
        return Observation(
            value=value,
            count=len(latencies),
            total=len(latencies),
            values=latencies,
            quantile=q,
            seconds=round_seconds,
            lower_bounds=waits,
            rests_on_waits=waits > 0 and _rests_on_waits(answered, waits, q, value),
        )
    return Observation(value=None, error=f"checks do not measure {metric}")


def _rests_on_waits(answered: list[float], waits: int, q: float, value: float) -> bool:
    """Whether the round's q-quantile `value` would be higher were its `waits` timeouts'
    waits longer: it is then a lower bound itself, whatever their share (a p95 of 5 probes
    is read off its slowest, so one timeout of 5 is enough). The quantile with the waits
    unbounded, as numpy's linear method reads it: unbounded when it reaches one of them."""
    ordered = sorted(answered)
    virtual = (len(answered) + waits - 1) * q
    below = math.floor(virtual)
    gamma = virtual - below
    if below >= len(ordered) or (gamma > 0 and below + 1 >= len(ordered)):
        return True
    upper = (
        ordered[below] + (ordered[below + 1] - ordered[below]) * gamma if gamma else ordered[below]
    )
    return upper > value + 1e-9 * max(1.0, abs(value))


def merge(observations: Sequence[Observation]) -> Observation:
    """Pool several periods into one: the pre-deploy baseline, or a provider's lookback.

    Percentiles are recomputed from the pooled values (periods of another percentile, or
    without samples, are left out; with no samples at all they are averaged); rates from the
    summed counts (and
    their burstiness across periods is measured); throughputs from counts over seconds; a
    value without counts is averaged (weighted by `total` when every period has one).
    Periods without data are skipped; none at all gives no data.
    """
    usable = [o for o in observations if _usable(o)]
    if not usable:
        errors = sorted({o.error for o in observations if o.error})
        return Observation(
            value=None,
            error="no data in any period" + (f" ({'; '.join(errors)})" if errors else ""),
            periods=len(observations),
        )
    periods = sum(o.periods for o in usable)
    seconds = (
        sum(o.seconds for o in usable if o.seconds is not None)
        if all(o.seconds is not None for o in usable)
        else None
    )
    quantiles = {o.quantile for o in usable if o.quantile is not None}
    if quantiles:
        # a percentile: pool the raw samples; never read its sample counts as a rate
        q = max(quantiles) if len(quantiles) > 1 else next(iter(quantiles))
        sampled = [o for o in usable if o.values and o.quantile == q]
        if not sampled:
            return _average(usable, seconds, periods, quantile=q)
        values = tuple(itertools.chain.from_iterable(o.values for o in sampled))
        return Observation(
            value=percentile(values, q),
            count=len(values),
            total=len(values),
            values=values,
            quantile=q,
            seconds=seconds,
            periods=sum(o.periods for o in sampled),
            period_sizes=_period_sizes(sampled),
        )
    if all(o.count is not None and o.total is not None for o in usable):
        counts = [int(o.count or 0) for o in usable]
        totals = [int(o.total or 0) for o in usable]
        total = sum(totals)
        if total > 0:
            return Observation(
                value=sum(counts) / total,
                count=sum(counts),
                total=total,
                seconds=seconds,
                periods=periods,
                dispersion=_dispersion(usable, counts, totals),
                period_counts=_period_counts(usable, counts, totals),
            )
    if seconds and all(o.count is not None for o in usable):
        count = sum(int(o.count or 0) for o in usable)
        return Observation(value=count / seconds, count=count, seconds=seconds, periods=periods)
    return _average(usable, seconds, periods)


def _average(
    usable: Sequence[Observation],
    seconds: float | None,
    periods: int,
    *,
    quantile: float | None = None,
) -> Observation:
    """Mean of bare values, weighted by `total` when every period has one."""
    values = [float(o.value) for o in usable if o.value is not None]
    weights = [float(o.total) for o in usable if o.total is not None]
    if len(weights) == len(values) and sum(weights) > 0:
        value = float(np.average(values, weights=weights))
    else:
        value = float(np.mean(values))
    return Observation(value=value, seconds=seconds, periods=periods, quantile=quantile)


def _period_sizes(sampled: Sequence[Observation]) -> tuple[int, ...]:
    """How many of the pooled values each period gave (`Observation.period_sizes`): a
    period's own sizes when it was pooled already, else its values; () when any pooled
    period did not keep them, or there is only one."""
    sizes: list[int] = []
    for o in sampled:
        if o.period_sizes and sum(o.period_sizes) == len(o.values):
            sizes.extend(o.period_sizes)
        elif o.periods == 1:
            sizes.append(len(o.values))
        else:
            return ()
    return tuple(sizes) if len(sizes) > 1 else ()


def _period_counts(
    usable: Sequence[Observation], counts: list[int], totals: list[int]
) -> tuple[tuple[int, int], ...]:
    """Each pooled period's (bad events, total) (`Observation.period_counts`): a period's
    own when it was pooled already and kept them, else its counts; () when any pooled
    period did not keep them, or there is only one."""
    out: list[tuple[int, int]] = []
    for o, count, total in zip(usable, counts, totals, strict=True):
        if o.periods == 1:
            out.append((count, total))
        elif o.period_counts and sum(t for _, t in o.period_counts) == total:
            out.extend(o.period_counts)
        else:
            return ()
    return tuple(out) if len(out) > 1 else ()


def _dispersion(
    usable: Sequence[Observation], counts: list[int], totals: list[int]
) -> float | None:
    """Estimate across single periods; carry an average when the inputs were pooled already."""
    if all(o.periods == 1 for o in usable):
        return intra_period_correlation(counts, totals)
    known = [
        (o.dispersion, t) for o, t in zip(usable, totals, strict=True) if o.dispersion is not None
    ]
    if not known:
        return None
    weight = sum(t for _, t in known)
    return sum(float(d or 0.0) * t for d, t in known) / weight if weight else None

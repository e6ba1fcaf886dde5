"""How a rule's numbers read to humans, and what kind of number a metric is.

Pure: no I/O. One place decides that latencies print as durations and rates as plain numbers,
so the API, alerts and rollback reasons say the same thing.
"""

from __future__ import annotations

import functools
import math
import re

from agent.analysis.types import Metric, Rule
from common.durations import format_duration
from common.words import odds as odds  # their home; the judge and alerts import them here
from common.words import odds_number as odds_number

_PERCENTILE = re.compile(r"(?:^|_)p(\d{1,2}(?:\.\d+)?)(?:_|$)")


@functools.lru_cache(maxsize=256)
def quantile_of(metric: Metric) -> float | None:
    """The quantile a percentile metric stands for: `latency_p95` → 0.95, else None
    (remembered: the judge asks it of every distribution rule every round)."""
    match = _PERCENTILE.search(metric)
    if not match:
        return None
    q = float(match.group(1)) / 100.0
    return q if 0.0 < q < 1.0 else None


def is_duration(metric: Metric) -> bool:
    """Whether the metric is measured in seconds (latencies, durations)."""
    return metric.startswith("latency") or metric.endswith("duration") or "_duration" in metric


def is_rate(metric: Metric) -> bool:
    """Whether the metric is a fraction in [0, 1] (error rate, crash-free rate)."""
    return metric.endswith("_rate")


COUNTS = ("throughput", "error_count")
"""Metrics counted from events: 0 or more, as rates and durations are."""


def never_negative(metric: Metric) -> bool:
    """Whether the metric's values are 0 or more (a rate, a duration, a count), so that a
    bare value's mean at most 0 means every value is 0; a provider query's (a Prometheus
    `deriv()`, a delta) may be of either sign."""
    return is_rate(metric) or is_duration(metric) or metric in COUNTS


def change_floor(metric: Metric) -> float:
    """Smallest absolute change that counts, so a zero baseline does not make every value a
    breach: 0.1 percentage point for rates, 1 ms for durations, nothing otherwise."""
    if is_rate(metric) or is_duration(metric):
        return 0.001
    return 0.0


def format_value(metric: Metric, value: float | None) -> str:
    """`412ms` for durations, `1.94ms` and `0.228ms` below 10 ms (`format_duration`'s three
    significant digits: a 0.19 ms baseline's +20% read `0ms (+20% of 0ms)`, a bound of
    2.5ms `max 2ms`), three significant digits otherwise; `n/a` without a value."""
    if value is None or math.isnan(value):
        return "n/a"
    if is_duration(metric) and math.isfinite(value) and value >= 0:
        return format_duration(value)
    return f"{value:.3g}"


def format_past(metric: Metric, value: float, bound: float) -> str:
    """`value` as `format_value` writes it, with the digits that show it past `bound`
    where that text is the bound's own: `300.04ms > max 300ms`, never `300ms > max 300ms`
    (a value 0.4 ms past its bound read as no breach at all)."""
    text = format_value(metric, value)
    if not (math.isfinite(value) and math.isfinite(bound)) or value == bound:
        return text
    if text != format_value(metric, bound):
        return text
    duration = is_duration(metric) and value >= 0 and bound >= 0
    scale, unit = (1000.0, "ms") if duration and value < 1 else (1.0, "s" if duration else "")
    for digits in range(1, 16):
        if duration:
            ours, theirs = (f"{x * scale:.{digits}f}".rstrip("0") for x in (value, bound))
        else:
            ours, theirs = (f"{x:.{digits + 3}g}" for x in (value, bound))
        if ours != theirs:
            return ours.rstrip(".") + unit
    return text


def format_limit(metric: Metric, limit: float, value: float) -> str:
    """A computed bound (baseline × (1 + max_increase)) as `format_value` writes it, with
    the digits `format_past` gives `value` past it where both texts read alike: `4.7ms >
    max 4.6ms`, never `4.7ms > max 5ms` (a bound rounded up read as above the value)."""
    text = format_value(metric, limit)
    if text != format_value(metric, value) or not math.isfinite(value):
        return text
    refined = format_past(metric, limit, value)
    return refined if refined != text else text


def format_percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def threshold_text(rule: Rule) -> str:
    """The rule's bounds as written: `max 0.05`, `max 300ms`, `max_increase 50%`, `min 0.99`."""
    parts: list[str] = []
    if rule.max is not None:
        parts.append(f"max {format_value(rule.metric, rule.max)}")
    if rule.min is not None:
        parts.append(f"min {format_value(rule.metric, rule.min)}")
    if rule.max_increase is not None:
        word = "max_increase" if rule.direction == "increase" else "max_decrease"
        parts.append(f"{word} {format_percent(rule.max_increase)}")
    return ", ".join(parts) if parts else "none"


CANNOT_PASS = "cannot pass on evidence by the window's end"
"""How registration's warning of a window a good release would likely not pass begins
(`SequentialPolicy.blind_spots`): the API logs those it answers (`likely_inconclusive`)."""


def likely_inconclusive(warnings: list[str]) -> list[str]:
    """Of registration's warnings, each rule's "cannot pass on evidence" clause, named: the
    window never logs it (it logs what a rule can detect, at its first round), so the
    registration does, once; a rule also blind to its bound keeps that part for the window."""
    out = []
    for said in warnings:
        if (at := said.find(CANNOT_PASS)) >= 0:
            out.append(f"{said.partition(':')[0]}: {said[at:]}")
    return out


def unit_noun(rule: Rule) -> str:
    """What one counted event is, for details like `31 of 100 probes failed`."""
    return "probes" if rule.source == "checks" else "events"


OUTAGE_SHARE = 0.5
"""An error-rate baseline's share of errors at or above which it looks taken while the
service was down (a checks rule's background probes, a provider's previous release):
registration says so, and a provider's window as it opens (`foresight.outage_baseline`),
and an absolute bound on its rate is judged on the release's own rounds
(`SequentialRule.outage_baseline`: its pass side, what it can detect, its reach)."""


def outage_share(rule: Rule, count: float | None, total: float | None) -> float | None:
    """An error-rate baseline's share of errors when it looks taken while the service was
    down (at least `OUTAGE_SHARE`), else None: a checks rule's or a provider's alike (a
    Sentry baseline of the previous release's period half failed was neither said nor
    judged as one)."""
    if rule.metric != "error_rate" or not count or not total:
        return None
    share = count / total
    return share if share >= OUTAGE_SHARE else None


def outage_taken(rule: Rule) -> str:
    """How an outage baseline was taken, for `... looks {this} while the service was down`:
    probed between windows (checks), or the previous release's period (a provider)."""
    return "probed" if rule.source == "checks" else "measured over the previous release"


BURSTS_WIDEN = (
    "wide: the baseline's errors came in bursts, so the release's may too, and its rounds"
    " count as fewer independent requests"
)
"""Why a rate's bound on the pass side is wide over a baseline whose errors came in bursts
(`BaselineData.shows_bursts`: its runs' error counts spread past chance): its measured
burstiness divides each round's counts (`PassTest.dispersion`). `upper bound 0.217 vs
max 0.05` alone read as a fault."""

BURSTS_WIDEN_BOTH = (
    "both wide: the baseline's errors came in bursts, so its counts and the release's"
    " rounds count as fewer independent requests"
)
"""`BURSTS_WIDEN` for a relative bound, whose least baseline rate is widened too
(`BaselineData.burst_limit`)."""


def exact_rate_bounds(rule: Rule) -> list[tuple[str, str]]:
    """(key, sentence) for each bound of a rate at its very end, `max: 0` or `min: 1`: the
    sequential policy fails it at the first bad event (none can happen under it), but no
    number of samples shows a rate of exactly 0, so passing on evidence never comes."""
    if not is_rate(rule.metric):
        return []
    out = []
    for key, bound, rate, instead in (
        ("max", rule.max, 0, "max 0.001"),
        ("min", rule.min, 1, "min 0.999"),
    ):
        if bound is not None and bound == rate:
            # a provider's bare figures (no counts) of exactly the bound have no spread
            bare = "" if rule.source == "checks" else ", unless its answers are bare figures"
            out.append(
                (
                    key,
                    f"{rule.metric} {key} {rate} can only fail: no number of {unit_noun(rule)}"
                    f" shows a rate of exactly {rate}, so with pass_on: evidence every window"
                    f" it does not fail ends inconclusive, however good the release{bare}; use"
                    f" a bound such as {instead}, or pass_on: no_failure",
                )
            )
    return out

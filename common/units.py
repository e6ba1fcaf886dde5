"""A rule's values in their metric's unit (`412ms`, `1.875%`, `16.7/s`), as alerts, the
deploy page and the CLI write them: one formatter for all three, in `common` so the CLI's
`register` and `status` format a value without importing the judge or the alerting stack
(`tests/e2e/test_cli_imports.py`)."""

from __future__ import annotations

import math
import re
from typing import Any

from common.durations import format_duration

LATENCY_METRICS = frozenset({"latency_p50", "latency_p95", "latency_p99", "p95_duration"})
"""Metrics whose values are durations in seconds."""
RATE_METRICS = frozenset({"error_rate", "crash_free_rate"})
"""Metrics whose values are fractions (0.31 = 31%)."""


def _number(value: float) -> str:
    """A readable number: few significant digits, thousands separators, no exponent
    for anything an operator is likely to see."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 0.01:
        return f"{value:.4g}"
    return f"{value:.2g}"


def format_latency(seconds: float) -> str:
    """Seconds as the judge's reason beside it words them (`format_duration`): `412ms`,
    `6.24ms`, `0.42ms`, `1.25s`, as the contract and README write durations; an alert
    wrote `412 ms`, `1,250 ms` and `12.3 s` beside the reason's `412ms`, `1.25s`."""
    return format_duration(seconds) if seconds >= 0 else "-" + format_duration(-seconds)


def judged_rate(metric: str, value: float) -> str:
    """A rate the judge worked out, in % at the three significant digits its words give
    (`93.1%`, not `93.09%`): what it can detect, the bound a rule reached."""
    return format_value(metric, float(f"{value:.3g}"))


def format_value(metric: str | None, value: Any) -> str:
    """A rule's observed or baseline value in its metric's unit; `n/a` when missing."""
    if value is None or isinstance(value, bool):
        return "n/a"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "n/a"
    name = (metric or "").lower()
    if name in LATENCY_METRICS or "latency" in name or name.endswith("_duration"):
        return format_latency(number)
    if is_rate(name):
        return f"{_number(number * 100)}%"
    if name == "throughput":
        return f"{_number(number)}/s"
    if name.endswith("_count") and number.is_integer():
        return f"{number:,.0f}"
    return _number(number)


def is_rate(metric: str) -> bool:
    """A metric whose values are fractions, shown in %."""
    return metric in RATE_METRICS or metric.endswith("_rate")


RATE_BOUND = re.compile(r"\b(max|min) (\d+(?:\.\d+)?(?:e-?\d+)?)(?=,|$)")
"""A rate's bound as the judge and the contract write it (`max 0.05`: a fraction, as
configured)."""


def bounds_in_units(metric: Any, threshold: Any, *, as_written: bool = False) -> str:
    """The judge's bounds with a rate's in % as its values are shown (`max 0.05` → `max
    5%`); others as written. The deploy page, `postflight status`, the GitHub job summary
    and the judge's free text write them so, beside `observed 31%`: `max 0.05` made
    on-call do the sum. The API's, the webhook's and the config's `threshold` keep the
    words as written (contract sections 2 and 3). `as_written`: those words with the %
    beside them (`max 0.05 (5%)`), for alerts: on-call match them against the webhook's
    and the API's `threshold`, and so do tools that read the alert (contract section 4's
    "observed vs baseline vs threshold")."""
    text = "" if threshold is None else str(threshold)
    if not isinstance(metric, str) or not is_rate(metric):
        return text
    if as_written:
        return RATE_BOUND.sub(lambda m: f"{m[0]} ({format_value(metric, float(m[2]))})", text)
    return RATE_BOUND.sub(lambda m: f"{m[1]} {format_value(metric, float(m[2]))}", text)

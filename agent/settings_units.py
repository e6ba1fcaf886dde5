"""Bare numbers where a time in milliseconds was likely meant: a warning, not an error.

A duration written as a bare number is seconds (README, "Durations"), so
`max_latency: 500` allowed 500 s, and a latency rule's `max: 300` a 5-minute p95:
neither could ever fail, and validate-config said "valid".
A time of a minute or more for one request is an unlikely intent; writing it with its
unit (`300s`, or `5m`) says it is meant, and silences the warning.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from common.durations import format_duration

Loc = tuple[str | int, ...]

LIKELY_MILLISECONDS_S = 60.0
"""A bare number from here up, as one request's time, was most likely meant in ms."""

_REQUEST_TIMES = frozenset({"timeout", "max_latency"})
_LATENCY_METRICS = frozenset({"latency_p50", "latency_p95", "latency_p99", "p95_duration"})


def bare_millisecond_warnings(document: Any) -> list[tuple[Loc, str]]:
    """`(loc, message)` for each request time in the environments' checks and latency
    rules written as a bare number of a minute or more."""
    environments = document.get("environments") if isinstance(document, dict) else None
    if not isinstance(environments, dict):
        return []
    out: list[tuple[Loc, str]] = []
    for name, env in environments.items():
        if not isinstance(env, dict):
            continue
        base: Loc = ("environments", str(name))
        for loc, value in _request_times(env.get("checks"), (*base, "checks")):
            out.append((loc, _message(value, "one request")))
        rules = env.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict) or rule.get("metric") not in _LATENCY_METRICS:
                continue
            for key in ("max", "min"):
                if _bare(rule.get(key)):
                    loc = (*base, "rules", i, key)
                    out.append((loc, _message(rule[key], "a latency bound")))
    return out


def _request_times(node: Any, loc: Loc) -> Iterator[tuple[Loc, float | str]]:
    """Every `timeout` and `max_latency` below `node` (checks, their steps, their expect)
    written as a bare number of a minute or more, quoted or not (`_bare`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            at = (*loc, str(key))
            if key in _REQUEST_TIMES and _bare(value):
                yield at, value
            else:
                yield from _request_times(value, at)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _request_times(item, (*loc, i))


def _bare(value: Any) -> bool:
    seconds = _bare_seconds(value)
    return seconds is not None and seconds >= LIKELY_MILLISECONDS_S


def _bare_seconds(value: Any) -> float | None:
    """The seconds of a duration written without a unit: a number, or text that is one
    (`'300'`, or a `${VAR}`'s value, which is always text), read alike by
    `parse_duration`; quoted, it was read as 300 s and said nothing. None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    try:  # as `parse_duration` reads text with no unit (`300ms` is no float)
        seconds = float(value.strip().lower().replace(" ", ""))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None


def _message(value: float | str, what: str) -> str:
    value = _bare_seconds(value) or 0.0
    return (
        f"{value:g} is a bare number, read as seconds: {format_duration(value)} for {what};"
        f" write {value:g}ms if you meant milliseconds, or {value:g}s to keep it"
    )

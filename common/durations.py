"""Durations and percentages as users write them in the configuration and the API.

Pure: no I/O. `250ms`, `30s`, `10m`, `1h`, `1h30m` or `1h 30m` (each unit once, largest
first, in either case), `0.5s` or `.5s`, a bare number of seconds;
`50%` or a fraction (0.5, at most 10: a bare 50 is a percentage missing its `%`) for
relative bounds.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNITS = ("d", "h", "m", "s", "ms")
"""The order units are written in, largest first (`1h30m`, never `30m1h`)."""
# One grammar for the validator and the JSON Schema an editor checks a file against: no
# `\d` or `\s` (Python's take other scripts' digits and spaces, ECMA's not), units in
# either case (`30S`), spaces between number, unit and part (`1h 30m`, `500 ms`), blanks
# at the ends; a bare number as YAML 1.2 writes one, less its sign (`45`, `1e3`, `.5`).
_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"  # `0.5` and `.5`
_ENDS = r"[ \t\r\n]*"
_UNIT_TEXT = {
    "d": "[dD]",
    "h": "[hH]",
    "m": "[mM](?![sS])",
    "s": "[sS]",
    "ms": "[mM][sS]",
}
_BARE = r"(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
DURATION_TEXT_PATTERN = (
    f"^{_ENDS}(?:(?=[.0-9])"
    + "".join(f"(?:{_NUMBER} *{_UNIT_TEXT[unit]} *)?" for unit in _UNITS)
    + f"|{_BARE}){_ENDS}$"
)
"""A duration as text, for the JSON Schema and `parse_duration` alike: each unit at most
once, largest first, or a number of seconds."""
_TEXT = re.compile(DURATION_TEXT_PATTERN)
_PART = re.compile(rf"({_NUMBER}) *(ms|s|m|h|d)", re.IGNORECASE)
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
"""Units in any order or twice, said so (`30s30s`), once spaces are out and case is low."""


def _in_order(text: str, parts: list[tuple[str, str]], seconds: float) -> None:
    """`30s30s` and `1m1h` are refused: a unit twice or out of order is a typo more often
    than a sum (and a reader cannot tell which was meant); `seconds` is their sum, the
    way to write it said in the error."""
    units = [unit for _, unit in parts]
    for unit in units:
        if units.count(unit) > 1:
            raise ValueError(
                f"{text!r} gives {unit} twice: write {format_duration(seconds)}"
                " (each unit once, largest first)"
            )
    ranks = [_UNITS.index(unit) for unit in units]
    if ranks != sorted(ranks):
        raise ValueError(
            f"{text!r} has its units out of order: write {format_duration(seconds)}"
            " (each unit once, largest first)"
        )


def parse_duration(value: Any) -> float:
    """Seconds from `250ms`, `30s`, `10m`, `1h30m` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 250ms, 30s, 10m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        if _TEXT.fullmatch(value):
            parts = _PART.findall(value)
            seconds = (
                sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in parts)
                if parts
                else float(value)
            )
        else:
            text = value.strip().lower().replace(" ", "")
            if _WHOLE.fullmatch(text):
                parts = _PART.findall(text)
                _in_order(value.strip(), parts, sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))
            raise ValueError(_not_a_duration(value, text))
    else:
        raise ValueError("expected a duration like 250ms, 30s, 10m or 1h")
    if not math.isfinite(seconds) or seconds < 0:  # `inf` parses as a float
        raise ValueError("a duration must be a finite number, zero or more")
    return seconds


_CLOCK = re.compile(r"\d+(?::[0-5]?\d){1,2}")
"""`1:30`, `0:05:00`: a clock reading, which YAML 1.1 would read as a number in base 60."""


def _not_a_duration(value: str, text: str) -> str:
    """Why `value` is not a duration, and what to write: a negative one or a clock reading
    said as such (`1:30` is 1m30s or 1h30m: the writer knows which)."""
    if text.lstrip("+-").lstrip(".") in ("inf", "infinity", "nan"):  # Python's float() words
        return "a duration must be a finite number, zero or more"
    if text.startswith("-") and (_TEXT.fullmatch(text[1:]) or _CLOCK.fullmatch(text[1:])):
        if _CLOCK.fullmatch(text[1:]) or parse_duration(text[1:]) > 0:
            return f"{value!r} is negative: a duration is zero or more"
        zero = text[1:] if _TEXT.fullmatch(text[1:]) else "0s"  # `-0s` is not below 0
        return f"{value!r} has a minus sign, which a duration does not take: write {zero}"
    if _CLOCK.fullmatch(text):
        numbers = [int(part) for part in text.split(":")]
        if len(numbers) == 3:
            hours, minutes, secs = numbers
            return f"{value!r} is not a duration: write {_written(hours, minutes, secs)}"
        first, second = numbers
        return (
            f"{value!r} is not a duration: write {_written(0, first, second)},"
            f" or {_written(first, second, 0)} for hours and minutes"
        )
    return f"{value!r} is not a duration; write it like 250ms, 30s, 10m or 1h"


def _written(hours: int, minutes: int, seconds: int) -> str:
    """`1h2m3s` as written (no carrying: `0:90` is not a clock reading anyway)."""
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"


FINE_MS = 10.0
"""Below this many milliseconds a duration reads in three significant digits (`1.94ms`,
`0.19ms`): whole milliseconds read 1.9 ms as `2ms`, a bound of 2.5ms as `max 2ms` (below
a 2.3 ms p95 it failed), and a 0.4 ms wait as `retry in 0ms`."""


def fine_ms(ms: float) -> str:
    """`ms` (more than 0) in three significant digits, written out (`0.000123`, never
    `1.23e-04`): how a duration below `FINE_MS` reads, in the judge's words and alerts."""
    places = max(0, 2 - math.floor(math.log10(ms)))
    return f"{ms:.{places}f}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """The shortest readable form: 0.25 → `250ms`, 90 → `1m30s`, 0.00194 → `1.94ms`
    (three significant digits below `FINE_MS`); a negative one as its size with a minus
    (`fine_ms` takes only more than 0)."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        if not seconds:
            return "0s"
        ms = seconds * 1000
        return f"{fine_ms(ms)}ms" if ms < FINE_MS else f"{round(ms):d}ms"
    parts = []
    rest = round(seconds, 3)
    for unit, size in (("h", 3600), ("m", 60)):
        if rest >= size:
            whole = int(rest // size)
            parts.append(f"{whole}{unit}")
            rest -= whole * size
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


LONG_S = 2 * 86400.0
"""From here on a span reads in days (`format_span`)."""


def format_span(seconds: float) -> str:
    """How long ago or ahead, as a reader takes it in: `format_duration` below two days,
    whole days and the nearest hour from there (`2529d18h`, where `format_duration` says
    `60713h40m`: a deploy time six years off, read as nobody reads hours)."""
    if seconds < LONG_S:
        return format_duration(round(seconds))
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def format_bound(seconds: float) -> str:
    """A limit as users write it: its largest unit that divides it exactly (7 days →
    `7d`, where `format_duration` says `168h`; 36 hours → `36h`; 1.5s → `1500ms`), so it
    reads as the README and the configuration speak of it."""
    for unit in _UNITS:
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and count.is_integer():
            return f"{int(count)}{unit}"
    return format_duration(seconds)


def _beside(seconds: float, limit: float) -> str:
    """A value said next to its limit: in whole days when it is some, as a limit in days is
    (`at most 7d (got 8d)`, not `got 192h`); otherwise as `format_duration` says it."""
    days = seconds / _UNIT_SECONDS["d"]
    if limit >= _UNIT_SECONDS["d"] and days >= 1 and days.is_integer():
        return f"{int(days)}d"
    return format_duration(seconds)


MAX_BARE_FRACTION = 10.0
"""A bare number is a fraction (0.5 = 50%); above this one (+1000%) it is almost surely a
percentage missing its `%` (`max_increase: 50` would allow ×51, not +50%)."""


def parse_fraction(value: Any, name: str = "value", *, signed: bool = False) -> float:
    """A relative change: `50%` → 0.5; a bare number is taken as a fraction, up to
    `MAX_BARE_FRACTION`. `name` and `signed` (an increase: `+5000%`) word the errors."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage like 50%")
    bare = True
    if isinstance(value, str):
        text = value.strip()
        bare = not text.endswith("%")
        try:
            number = float(text) if bare else float(text[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage; write it like 50%") from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise ValueError("expected a percentage like 50%")
    if not math.isfinite(number):  # `.inf`, `inf%`, `.nan`: a bound that judges nothing
        raise ValueError(f"{name} must be finite (.inf and .nan judge nothing); write it like 50%")
    if number < 0:
        raise ValueError(f"{name} must be zero or more")
    if bare and number > MAX_BARE_FRACTION:
        shown = f"{number:g}"
        percent = f"{number * 100:g}%"
        meant = f" (or {percent} if you mean it)" if signed else ""  # a share is at most 100%
        raise ValueError(
            f"{name} {shown} is {'+' if signed else ''}{percent}: a bare number is a fraction"
            f" (0.5 = 50%); write {shown}% for {shown} percent{meant}"
        )
    return number


def _fraction_field(value: Any, info: ValidationInfo) -> float:
    """`parse_fraction` with the errors naming the field (`max_increase 50 is +5000%`)."""
    name = info.field_name or "value"
    return parse_fraction(value, name, signed="increase" in name)


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_TEXT_PATTERN},
        # the largest double: `.inf` is no duration
        {"type": "number", "minimum": 0, "maximum": sys.float_info.max},
    ],
    "description": "a duration: 250ms, 30s, 10m, 1h, 1h30m, or seconds",
}
_FRACTION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?%\s*$"},
        {"type": "number", "minimum": 0, "maximum": MAX_BARE_FRACTION},
    ],
    "description": "a relative change: 50% (or the fraction 0.5, at most 10)",
}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(_DURATION_SCHEMA),
]
"""Seconds, written by users as `250ms`, `30s`, `10m` or `1h`."""


@dataclass(frozen=True)
class DurationBound:
    """A duration's bounds: its check (if any), and the same bounds on the JSON Schema's
    number form, exact there (`exclusiveMinimum`, `minimum`, `maximum`), and said in the
    description for the text form, whose pattern cannot state them (a regular expression
    for "at most 10s" over `10000ms`, `0.5m`, `1e1` is no schema a reader can check)."""

    bounds: tuple[tuple[str, float], ...]
    """(`exclusiveMinimum`, `minimum` or `maximum`, seconds)."""
    check: Callable[[float], float] | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        schema = handler(source)
        if self.check is None:
            return schema
        return core_schema.no_info_after_validator_function(self.check, schema)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = {**handler(schema)}
        branches = [{**branch} for branch in json_schema.get("anyOf", [])]
        for branch in branches:
            if branch.get("type") == "number":
                for keyword, limit in self.bounds:
                    tighter = min if keyword == "maximum" else max
                    known = branch.get(keyword)
                    branch[keyword] = limit if known is None else tighter(known, limit)
        if branches:
            json_schema["anyOf"] = branches
        said = "; ".join(
            _BOUND_WORDS[keyword] + format_bound(limit) for keyword, limit in self.bounds
        )
        described = json_schema.get("description")
        json_schema["description"] = f"{described}; {said}" if described else said
        return json_schema


_BOUND_WORDS = {"exclusiveMinimum": "more than ", "minimum": "at least ", "maximum": "at most "}


def schema_bounds(*, minimum: float, maximum: float) -> DurationBound:
    """A check's bounds (both included) on the JSON Schema alone, for a field whose own
    check words its errors (`alerting.timeout`)."""
    return DurationBound((("minimum", minimum), ("maximum", maximum)))


def _more_than_zero(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be more than 0s")
    return seconds


def at_most(limit: float) -> DurationBound:
    """A duration's upper bound, said as a duration (`at most 10s`, `at most 7d`): pydantic's
    `le` would say `less than or equal to 10`, a number of no unit."""

    def check(seconds: float) -> float:
        if seconds > limit:
            raise ValueError(
                f"must be at most {format_bound(limit)} (got {_beside(seconds, limit)})"
            )
        return seconds

    return DurationBound((("maximum", limit),), check)


def at_least(limit: float) -> DurationBound:
    """A duration's lower bound, said as a duration (`at least 1s`)."""

    def check(seconds: float) -> float:
        if seconds < limit:
            raise ValueError(
                f"must be at least {format_bound(limit)} (got {_beside(seconds, limit)})"
            )
        return seconds

    return DurationBound((("minimum", limit),), check)


def _at_most_all(fraction: float) -> float:
    if fraction > 1:
        raise ValueError(f"must be at most 100% (got {fraction * 100:g}%)")
    return fraction


PositiveDuration = Annotated[Duration, DurationBound((("exclusiveMinimum", 0.0),), _more_than_zero)]
"""A `Duration` that must be more than 0s (an interval, a timeout): the error names the
field itself."""

Fraction = Annotated[
    float,
    BeforeValidator(_fraction_field),
    PlainSerializer(lambda v: f"{v * 100:g}%", return_type=str, when_used="json"),
    WithJsonSchema(_FRACTION_SCHEMA),
]
"""A relative change, written `50%`."""

Share = Annotated[Fraction, AfterValidator(_at_most_all)]
"""A part of a whole (an error rate), written `5%`: at most 100%, said so."""

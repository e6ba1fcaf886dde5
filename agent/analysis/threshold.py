"""The threshold policy (what Flagger and Argo Rollouts do): each round against fixed bounds.

Pure: no I/O. A round with data breaches a rule when its value is past `max`/`min`, or past
the baseline moved by `max_increase` (never by less than `describe.change_floor`, so a zero
baseline does not turn every blip into a breach). `failure_limit` consecutive breaching
rounds fail the rule; rounds without data are skipped: they neither break nor extend a
streak, and no data alone never fails anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.analysis.describe import (
    change_floor,
    format_limit,
    format_percent,
    format_value,
    is_rate,
    never_negative,
)
from agent.analysis.types import Rule


@dataclass(frozen=True, slots=True)
class Breach:
    """One bound a value is past."""

    bound: Literal["max", "min", "max_increase"]
    limit: float
    op: Literal[">", "<"]
    text: str
    """`max 0.05`, or `max 375ms (baseline 250ms +50%)` for a relative bound."""


def relative_limit(rule: Rule, baseline: float) -> float | None:
    """The value past which `max_increase` is breached, or None if the rule has none."""
    if rule.max_increase is None:
        return None
    floor = change_floor(rule.metric)
    if rule.direction == "increase":
        return max(baseline * (1.0 + rule.max_increase), baseline + floor)
    return min(baseline * (1.0 - rule.max_increase), baseline - floor)


def breaches(rule: Rule, value: float, baseline: float | None) -> list[Breach]:
    """Every bound of `rule` that `value` is past (empty: the round passes)."""
    found: list[Breach] = []
    fmt = rule.metric
    if rule.max is not None and value > rule.max:
        found.append(Breach("max", rule.max, ">", f"max {format_value(fmt, rule.max)}"))
    if rule.min is not None and value < rule.min:
        found.append(Breach("min", rule.min, "<", f"min {format_value(fmt, rule.min)}"))
    if baseline is not None:
        limit = relative_limit(rule, baseline)
        if limit is not None and rule.max_increase is not None:
            up = rule.direction == "increase"
            if (value > limit) if up else (value < limit):
                sign = "+" if up else "-"
                text = (
                    f"{'max' if up else 'min'} {format_limit(fmt, limit, value)} "
                    f"(baseline {format_value(fmt, baseline)} {sign}"
                    f"{format_percent(rule.max_increase)})"
                )
                found.append(Breach("max_increase", limit, ">" if up else "<", text))
    return found


def keeps_the_streak(rule: Rule) -> bool:
    """Whether a bare value of `rule` is judged by the threshold streak (`failure_limit`
    rounds in a row past a bound) whatever its baseline: not a rate, with a `min` or a
    relative decrease (no bounded bad side to test: the decrease had no test and never
    failed), or a `max` below 0 (a delta's: the value test bets on value / bound, which
    needs a bound above 0; it had no test and never failed), or at 0 unless no value is
    below 0 (a count's `max: 0` fails at its first value above 0; a delta's did too,
    however far below 0 its mean). Read by the sequential policy
    (`agent.analysis.policies.sequential`) and the configuration's warnings
    (`agent.windows.unjudged`), which load no statistics."""
    if is_rate(rule.metric):
        return False
    if rule.min is not None:
        return True
    if rule.max_increase is not None and rule.direction == "decrease":
        return True  # its low side, as a `min`'s (it had no test: `SequentialRule._planned`)
    if rule.max is None:
        return False
    return rule.max < 0 or (rule.max == 0 and not never_negative(rule.metric))

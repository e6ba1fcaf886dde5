"""A provider's answer checked before the judge reads it: a figure that is no number is
the provider's error for that round, not a bug of the judge. No I/O.

Why: a provider plugin that answered a value the judge cannot read (`"n/a"`, `None`'s
place taken by NaN, a bool) made the judge raise, which ended the whole window as a bug
of the agent; the answer is the provider's fault, so its rule is inconclusive that
round and the provider's one alert says what it answered, as for any answer that cannot
be read. Built-in providers never answer so (they say "no data" with `value=None`).
So too an error or a query that is no text (bytes, a dict): bytes made the round's
store write raise, and the window ended as a bug of the store; and `period_sizes` that
are not counts of its values (a float, a negative, sizes that do not add up to the
values): they were stored as answered, and the judge silently read no periods.
And `values` or `period_sizes` given as a one-shot iterator (a generator, a `map`): the
checks here read it, and it was stored empty (a round judged on no samples, a baseline
with no periods), so `taken` takes each once into a tuple before anything reads it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast

from agent.analysis.types import Observation
from common.redaction import truncate

_FIGURES = ("value", "count", "total", "seconds", "quantile", "dispersion")
"""The observation's figures that are each a number or None."""

_TEXTS = ("error", "query")
"""The observation's words, each text or None (stored, shown, alerted as text)."""

SHOWN_LIMIT = 60
"""The most of a wrong figure's text an error shows."""


_ITERATED = ("values", "period_sizes", "period_counts")
"""The observation's sequences, which `taken` reads once."""


_Answer = TypeVar("_Answer")


def taken(answer: _Answer) -> _Answer:
    """`answer` with its `values` and `period_sizes` each read once into a tuple when a
    plugin gave a one-shot iterator (a generator): every later read (`unreadable`,
    `plain`, the judge) sees them whole, where the first read used them up. A sequence is
    kept as given (`plain` makes it Python's). What the iterator raises is raised: the
    caller's, as a fetch that raised (a bug in the provider)."""
    if not isinstance(answer, Observation):
        return answer
    read: dict[str, Any] = {
        name: tuple(field)
        for name in _ITERATED
        if isinstance(field := getattr(answer, name), Iterator)
    }
    return cast(_Answer, dataclasses.replace(answer, **read)) if read else answer


def unreadable(answer: object) -> str | None:
    """What is wrong with a fetch's `answer`, in words ("its value 'n/a' (str) is not a
    number", "its error b'reset' (bytes) is not text"), or None when the judge can read
    it and the store can keep it."""
    if not isinstance(answer, Observation):
        return f"it answered {_shown(answer)}, not an Observation"
    for name in _FIGURES:
        if (why := _not_a_number(getattr(answer, name))) is not None:
            return f"its {name} {why}"
    if not _is_count(answer.periods):
        return f"its periods {_shown(answer.periods)} is not a count"
    for name in _TEXTS:
        if (text := getattr(answer, name)) is not None and not isinstance(text, str):
            return f"its {name} {_shown(text)} is not text"
    if isinstance(answer.values, str | bytes) or not isinstance(answer.values, Iterable):
        return f"its values {_shown(answer.values)} are not a sequence of numbers"
    samples = 0
    for i, sample in enumerate(answer.values):
        if sample is None or (why := _not_a_number(sample)) is not None:
            return f"its values[{i}] {why or 'None is not a number'}"
        samples += 1
    return _unreadable_sizes(answer.period_sizes, samples) or _unreadable_counts(
        answer.period_counts
    )


def _unreadable_sizes(sizes: Any, samples: int) -> str | None:
    """What is wrong with `period_sizes` (how many of the `samples` values each period
    gave), or None: a sequence of counts adding up to the values, or none at all."""
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Iterable):
        return f"its period_sizes {_shown(sizes)} are not a sequence of counts"
    sizes = tuple(sizes)
    for i, size in enumerate(sizes):
        if not _is_count(size):
            return f"its period_sizes[{i}] {_shown(size)} is not a count"
    if sizes and sum(sizes) != samples:
        return f"its period_sizes {_shown(sizes)} count {sum(sizes)} values, not its {samples}"
    return None


def _unreadable_counts(counts: Any) -> str | None:
    """What is wrong with `period_counts` (each period's bad events and total), or None: a
    sequence of (bad, total) counts, bad at most total, or none at all (`plain` reads
    each pair; a relative count bound ranks its rounds among them)."""
    if isinstance(counts, str | bytes) or not isinstance(counts, Iterable):
        return f"its period_counts {_shown(counts)} are not a sequence of (bad, total) counts"
    for i, pair in enumerate(counts):
        if (
            isinstance(pair, str | bytes)
            or not isinstance(pair, Iterable)
            or len(pair := tuple(pair)) != 2
            or not all(_is_count(x) for x in pair)
            or pair[0] > pair[1]
        ):
            return f"its period_counts[{i}] {_shown(pair)} is not a (bad, total) pair of counts"
    return None


def plain(answer: Observation) -> Observation:
    """A readable `answer` (`unreadable` said None) with Python's numbers and bools in
    place of a plugin's own (numpy's `float64`, `int64`, `bool_`, arrays; a `Fraction`),
    its figures, `periods`, `period_sizes`, `period_counts` and flags alike: the judge
    reads those, but the round's store write raised on them ("Object of type int64 is not
    JSON serializable") and the window ended as a bug of the store."""
    figures: dict[str, Any] = {name: _plain(getattr(answer, name)) for name in _FIGURES}
    return dataclasses.replace(
        answer,
        values=tuple(float(v) for v in answer.values),
        periods=int(answer.periods),
        period_sizes=tuple(int(s) for s in answer.period_sizes),
        period_counts=tuple((int(b), int(n)) for b, n in answer.period_counts),
        answered=bool(answer.answered),
        agent_lag=bool(answer.agent_lag),
        **figures,
    )


def _plain(figure: Any) -> int | float | None:
    if figure is None or type(figure) in (int, float):
        return figure  # type: ignore[no-any-return]
    return int(figure) if isinstance(figure, numbers.Integral) else float(figure)


def _is_count(figure: Any) -> bool:
    return (
        not isinstance(figure, bool) and isinstance(figure, numbers.Integral) and int(figure) >= 0
    )


def _not_a_number(figure: Any) -> str | None:
    if figure is None:
        return None
    if isinstance(figure, bool) or not isinstance(figure, numbers.Real):
        return f"{_shown(figure)} is not a number"
    if not math.isfinite(figure):
        return f"{figure} is not a finite number"
    return None


def _shown(figure: object) -> str:
    return f"{truncate(repr(figure), SHOWN_LIMIT)} ({type(figure).__name__})"

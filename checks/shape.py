"""A check plugin's result read before anything else does: Python's own types where the
plugin used another readable one (numpy's `bool_`, `float32`, `int64`; a list of samples),
None where a default says nothing (no message, details or bytes), and `UnreadableResult`
where it is no result (a dict, None, a latency that is an array or text, NaN). No I/O.

Why: the judge and the store read each sample's fields as Python's bools and numbers. A
sample whose latency was an array made the round's observation raise, and numpy's
scalars made the round's store write raise ("Object of type float32 is not JSON
serializable"): alike in every round, the window ended as a bug of the agent's watch.
What cannot be read is the plugin's bug (`checks.bugs`), not evidence about the target.
"""

from __future__ import annotations

import math
import numbers

from checks.base import CheckResult, Sample
from common.redaction import truncate

SHOWN_LIMIT = 60
"""The most of a wrong value's text the error shows."""

_TARGETS = ("deploy", "baseline")


class UnreadableResult(TypeError):
    """A check's run returned what is no result it could have meant: its own bug."""


def plain_result(result: object, by: str) -> CheckResult:
    """`result` as the agent reads it, its samples' fields in Python's types; raises
    `UnreadableResult` saying what is wrong ("run() returned dict, not a CheckResult",
    "its samples[0].latency_s array([0.01, 0.01]) (ndarray) is not a number")."""
    if not isinstance(result, CheckResult):
        raise UnreadableResult(f"{by} returned {type(result).__name__}, not a CheckResult")
    samples = result.samples
    if not isinstance(samples, tuple | list):
        raise UnreadableResult(f"{by} returned samples {_shown(samples)}, not a tuple of Samples")
    ok = _flag(result.ok, f"{by} returned ok")
    plain = tuple(_plain_sample(s, f"{by} returned samples[{i}]") for i, s in enumerate(samples))
    message = "" if result.message is None else result.message
    if not isinstance(message, str):
        raise UnreadableResult(f"{by} returned message {_shown(message)}, not text")
    details = {} if result.details is None else result.details
    if not isinstance(details, dict):
        raise UnreadableResult(f"{by} returned details {_shown(details)}, not a dict")
    if (
        ok is result.ok
        and type(samples) is tuple
        and message is result.message
        and details is result.details
        and all(p is s for p, s in zip(plain, samples, strict=True))
    ):
        return result
    return CheckResult(result.check, result.type, ok, plain, message, result.duration_s, details)


def _plain_sample(sample: object, said: str) -> Sample:
    if not isinstance(sample, Sample):
        raise UnreadableResult(f"{said} is {_shown(sample)}, not a Sample")
    ok = _flag(sample.ok, f"{said}.ok")
    latency = sample.latency_s
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, numbers.Real):
            raise UnreadableResult(f"{said}.latency_s {_shown(latency)} is not a number")
        if not (math.isfinite(latency) and latency >= 0):
            raise UnreadableResult(f"{said}.latency_s {latency} is not a duration")
    status = None if sample.status is None else _count(sample.status, f"{said}.status")
    size = 0 if sample.bytes is None else _count(sample.bytes, f"{said}.bytes")
    if sample.error is not None and not isinstance(sample.error, str):
        raise UnreadableResult(f"{said}.error {_shown(sample.error)} is not text")
    if sample.target not in _TARGETS:
        raise UnreadableResult(f"{said}.target {_shown(sample.target)} is not deploy or baseline")
    if not isinstance(sample.check, str):
        raise UnreadableResult(f"{said}.check {_shown(sample.check)} is not text")
    if (
        ok is sample.ok
        and (latency is None or type(latency) is float)
        and status is sample.status
        and size is sample.bytes
    ):
        return sample
    return Sample(
        check=sample.check,
        ok=ok,
        latency_s=None if latency is None else float(latency),
        status=status,
        error=sample.error,
        bytes=size,
        target=sample.target,
    )


def _flag(value: object, said: str) -> bool:
    """A bool, or numpy's (`bool_`: no `numbers` type claims it)."""
    if isinstance(value, bool):
        return value
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool"):
        return bool(value)
    raise UnreadableResult(f"{said} {_shown(value)} is not a bool")


def _count(value: object, said: str) -> int:
    """A count as Python's `int` (numpy's `int64` too)."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UnreadableResult(f"{said} {_shown(value)} is not a count")
    return int(value)


def _shown(value: object) -> str:
    return f"{truncate(repr(value), SHOWN_LIMIT)} ({type(value).__name__})"

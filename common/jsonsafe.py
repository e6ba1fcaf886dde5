"""Making values JSON: NaN and infinities become null (JSON has neither). Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_PLAIN = frozenset({str, int, bool, type(None)})


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float as None, mappings and sequences walked,
    numpy scalars as floats and anything else unknown as its string."""
    kind = type(value)  # the exact built-in types first: every round's verdict is walked
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {str(k): json_safe(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    try:
        return json_safe(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return str(value)

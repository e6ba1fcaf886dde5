"""The store's JSON encoder: orjson's speed, and exactly what `json.dumps` stored before.

Checked against `json.dumps` itself on the values a round summary, a verdict or a judge
state hold: the text decodes to the same value (NaN and Infinity included, which orjson
alone would turn into null), and what `json.dumps` refuses is refused the same way.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.store.sql import _dumps, _loads

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN (json.loads reads NaN back as NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
def test_every_value_reads_back_as_json_dumps_wrote_it(value: Any) -> None:
    text = _dumps(value)
    assert text is not None or value is None
    assert same(_loads(text), json.loads(json.dumps(value)))


def test_nan_and_infinity_are_kept_not_nulled() -> None:
    state = {"e": [1.0, math.inf], "bound": -math.inf, "p": math.nan, "n": 3}
    back = _loads(_dumps(state))
    assert back["e"] == [1.0, math.inf] and back["bound"] == -math.inf
    assert math.isnan(back["p"]) and back["n"] == 3


def test_a_summary_is_compact_and_keeps_key_order() -> None:
    summary = {"observations": {"latency": {"values": [6.9e-05, 0.1]}}, "decision": "continue"}
    text = _dumps(summary)
    assert text == '{"observations":{"latency":{"values":[0.000069,0.1]}},"decision":"continue"}'
    assert _loads(text) == summary


def test_numpy_numbers_are_written_as_json_dumps_writes_them() -> None:
    value = {"x": np.float64(0.25), "n": [np.float64(1e-9)]}
    assert _loads(_dumps(value)) == json.loads(json.dumps(value))


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [{"p": Point(1)}, {"s": {1, 2}}, {"o": object()}])
def test_what_json_dumps_refuses_is_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        _dumps(value)

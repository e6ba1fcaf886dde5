"""`json_safe`: what a verdict's evidence becomes before it is stored (every round)."""

from __future__ import annotations

import math
from collections import OrderedDict
from types import MappingProxyType

import numpy as np

from common.jsonsafe import json_safe


def test_plain_values_nested_and_non_finite_floats() -> None:
    value = {
        "a": 1.5,
        "nan": math.nan,
        "inf": [math.inf, -math.inf, 2],
        "t": (True, None, "x"),
        3: {"deep": (0.25, math.nan)},
    }
    assert json_safe(value) == {
        "a": 1.5,
        "nan": None,
        "inf": [None, None, 2],
        "t": [True, None, "x"],
        "3": {"deep": [0.25, None]},
    }
    assert json_safe(True) is True


def test_other_mappings_numpy_scalars_and_unknowns() -> None:
    assert json_safe(OrderedDict(a=np.float64("nan"))) == {"a": None}
    assert json_safe(MappingProxyType({"b": np.int64(3)})) == {"b": 3.0}
    assert json_safe(np.float32(0.5)) == 0.5
    assert json_safe({1, 2}) in ("{1, 2}", "{2, 1}")

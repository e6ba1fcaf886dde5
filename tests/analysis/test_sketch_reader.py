"""The quantile sketch's round-by-round reader and one-pass counting answer exactly what the
plain functions answer: the judge's pooled percentile is read by `sketch.Reader` every round,
so a wrong bucket would change what every stored round shows."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analysis import sketch

DERANDOMIZED = settings(max_examples=200, deadline=None, derandomize=True)

latency = st.one_of(
    st.floats(min_value=1e-6, max_value=30.0),
    st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 5e-324, 1e300]),
)
rounds = st.lists(st.lists(latency, max_size=12), min_size=1, max_size=25)
quantiles = st.sampled_from([0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0])


def _numpy_add(sketch_: dict[str, int], values: list[float]) -> dict[str, int]:
    """`sketch.add`'s large-round path (numpy), the reference for its one-pass small one."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    zeros = int(np.count_nonzero(x <= 0))
    if zeros:
        sketch_[sketch._ZERO] = sketch_.get(sketch._ZERO, 0) + zeros
    for key in np.ceil(np.log(x[x > 0]) / sketch._LOG_GAMMA).tolist():
        name = str(int(key))
        sketch_[name] = sketch_.get(name, 0) + 1
    return sketch_


@DERANDOMIZED
@given(rounds=rounds, q=quantiles, restart_at=st.integers(min_value=0, max_value=30))
def test_the_reader_reads_what_quantile_reads_round_after_round(
    rounds: list[list[float]], q: float, restart_at: int
) -> None:
    reader = sketch.Reader()
    growing: dict[str, int] = {}
    for k, values in enumerate(rounds):
        if k == restart_at:
            growing = {}  # another sketch (buckets lost): the reader must not trust its order
        sketch.add(growing, values)
        assert reader.quantile(growing, q) == sketch.quantile(growing, q)
        assert reader.quantile(growing, 1.0 - q) == sketch.quantile(growing, 1.0 - q)


def test_the_reader_of_an_empty_or_all_zero_sketch() -> None:
    reader = sketch.Reader()
    assert reader.quantile({}, 0.95) is None
    assert reader.quantile({"z": 3}, 0.95) == 0.0 == sketch.quantile({"z": 3}, 0.95)
    # a bucket with no samples (not made by `add`, but readable) changes nothing
    odd = {"-250": 0, "-240": 2, "z": 1, "-260": 0}
    for q in (0.1, 0.5, 0.95):
        assert reader.quantile(odd, q) == sketch.quantile(odd, q)


@DERANDOMIZED
@given(values=st.lists(latency, max_size=64))
def test_a_round_of_probes_is_counted_as_numpy_counts_it(values: list[float]) -> None:
    few = sketch.add({}, values)
    reference = _numpy_add({}, values)
    assert few == reference
    assert list(few) == list(reference)  # the same buckets in the same order (the state's JSON)

"""`agent.windows.answers.unreadable`: which provider answers the judge cannot read (its
rule is then inconclusive for the round, the provider's alert saying why; before, the
judge raised on them and the window ended as a bug of the agent)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from agent.analysis.types import Observation
from agent.store.sql import _dumps
from agent.windows.answers import plain, taken, unreadable
from agent.windows.evidence import bounded_observation_dict


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (Observation(value="n/a"), "its value 'n/a' (str) is not a number"),  # type: ignore[arg-type]
        (Observation(value=True), "its value True (bool) is not a number"),
        (Observation(value=float("nan")), "its value nan is not a finite number"),
        (Observation(value=float("-inf")), "its value -inf is not a finite number"),
        (Observation(value=0.1, count=False, total=10), "its count False (bool) is not a number"),
        (Observation(value=0.1, count=1, total="10"), "its total '10' (str) is not a number"),  # type: ignore[arg-type]
        (Observation(value=0.2, values=(0.1, "x")), "its values[1] 'x' (str) is not a number"),  # type: ignore[arg-type]
        (Observation(value=0.2, values=(0.1, None)), "its values[1] None is not a number"),  # type: ignore[arg-type]
        (Observation(value=0.2, seconds=float("inf")), "its seconds inf is not a finite number"),
        (
            Observation(value=0.2, values="0.1"),  # type: ignore[arg-type]  # a plugin's mistake
            "its values '0.1' (str) are not a sequence of numbers",
        ),
        (
            Observation(value=None, error=b"reset"),  # type: ignore[arg-type]
            "its error b'reset' (bytes) is not text",
        ),
        (
            Observation(value=None, error={"code": 503}),  # type: ignore[arg-type]
            "its error {'code': 503} (dict) is not text",
        ),
        (
            Observation(value=0.1, query=["up"]),  # type: ignore[arg-type]
            "its query ['up'] (list) is not text",
        ),
        ({"value": 0.1}, "it answered {'value': 0.1} (dict), not an Observation"),
        (None, "it answered None (NoneType), not an Observation"),
    ],
)
def test_an_answer_that_is_no_number_is_said(answer: Any, said: str) -> None:
    assert unreadable(answer) == said


@pytest.mark.parametrize(
    "answer",
    [
        Observation(value=None),
        Observation(value=None, error="timed out"),
        Observation(value=0.1, query="sum(rate(x[1m]))"),
        Observation(value=0.05, count=5, total=100, seconds=60.0, values=(0.1, 0.2)),
        Observation(value=np.float64(0.3), count=np.int64(3), total=10),  # type: ignore[arg-type]
        Observation(value=Fraction(1, 3)),  # type: ignore[arg-type]
        Observation(value=-2.5),
        Observation(value=0.2, values=np.array([0.1, 0.2])),  # type: ignore[arg-type]
    ],
)
def test_an_answer_the_judge_reads_passes(answer: Observation) -> None:
    assert unreadable(answer) is None


def test_a_readable_answer_is_kept_in_python_numbers_the_store_writes() -> None:
    """numpy's numbers (and a Fraction) read as numbers, but the round's store write
    raised on them: `plain` gives Python's, the same figures."""
    answer = Observation(
        value=Fraction(3, 10),  # type: ignore[arg-type]
        count=np.int64(3),  # type: ignore[arg-type]
        total=np.uint16(10),  # type: ignore[arg-type]
        seconds=np.float32(0.5),  # type: ignore[arg-type]
        values=np.array([0.1, 0.2]),  # type: ignore[arg-type]
        error="partial",
    )
    assert unreadable(answer) is None
    made = plain(answer)
    assert (made.value, made.count, made.total, made.seconds) == (0.3, 3, 10, 0.5)
    assert [type(f) for f in (made.value, made.count, made.total, made.seconds)] == [
        float,
        int,
        int,
        float,
    ]
    assert made.values == (0.1, 0.2) and {type(v) for v in made.values} == {float}
    assert made.error == "partial"
    stored = _dumps(bounded_observation_dict(made))
    assert (
        stored
        == '{"value":0.3,"count":3,"total":10,"values":[0.1,0.2],"error":"partial","seconds":0.5}'
    )


def test_an_answers_count_of_periods_and_flags_are_kept_as_python_s() -> None:
    """`periods`, `answered` and `agent_lag` are stored too: numpy's made the round's
    store write raise as its figures did; a `periods` that is no count is unusable."""
    made = plain(
        Observation(
            value=0.1,
            periods=np.int64(2),  # type: ignore[arg-type]
            answered=np.bool_(True),  # type: ignore[arg-type]
            error="partial",
        )
    )
    assert (type(made.periods), type(made.answered), type(made.agent_lag)) == (int, bool, bool)
    assert _dumps(bounded_observation_dict(made)) == (
        '{"value":0.1,"error":"partial","periods":2,"answered":true}'
    )
    assert unreadable(Observation(value=0.1, periods="2")) == (  # type: ignore[arg-type]
        "its periods '2' (str) is not a count"
    )
    assert unreadable(Observation(value=0.1, periods=-1)) == "its periods -1 (int) is not a count"
    assert unreadable(Observation(value=None, error="no data in any period", periods=0)) is None


@pytest.mark.parametrize(
    ("sizes", "said"),
    [
        ((1.0, 2.0), "its period_sizes[0] 1.0 (float) is not a count"),
        ((4, -1), "its period_sizes[1] -1 (int) is not a count"),
        ((1, True), "its period_sizes[1] True (bool) is not a count"),
        ((1, 1), "its period_sizes (1, 1) (tuple) count 2 values, not its 3"),
        ("12", "its period_sizes '12' (str) are not a sequence of counts"),
        (3, "its period_sizes 3 (int) are not a sequence of counts"),
    ],
)
def test_period_sizes_that_are_not_counts_of_its_values_are_said(sizes: Any, said: str) -> None:
    """`period_sizes` say how many of the values each period gave: a float, a negative or
    sizes that do not add up were stored as answered and read by the judge as no periods."""
    assert unreadable(Observation(value=0.2, values=(0.1, 0.2, 0.3), period_sizes=sizes)) == said


def test_numpy_period_sizes_are_kept_as_python_s() -> None:
    """numpy's counts (an array, its `int64`s) are counts: the store write raised on an
    array (its truth is ambiguous) and on `int64` (no JSON)."""
    for sizes in (np.array([1, 2]), (np.int64(1), np.uint8(2))):
        answer = Observation(value=0.2, values=(0.1, 0.2, 0.3), period_sizes=sizes)  # type: ignore[arg-type]
        assert unreadable(answer) is None
        made = plain(answer)
        assert made.period_sizes == (1, 2) and {type(s) for s in made.period_sizes} == {int}
        dumped = _dumps(bounded_observation_dict(made))
        assert dumped is not None and '"period_sizes":[1,2]' in dumped
    assert unreadable(Observation(value=0.2, values=(0.1,), period_sizes=())) is None


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        ("12", "its period_counts '12' (str) are not a sequence of (bad, total) counts"),
        (
            ((1, 300), (4,)),
            "its period_counts[1] (4,) (tuple) is not a (bad, total) pair of counts",
        ),
        (
            ((1.5, 300),),
            "its period_counts[0] (1.5, 300) (tuple) is not a (bad, total) pair of counts",
        ),
        (((5, 3),), "its period_counts[0] (5, 3) (tuple) is not a (bad, total) pair of counts"),
        ((3,), "its period_counts[0] 3 (int) is not a (bad, total) pair of counts"),
    ],
)
def test_period_counts_that_are_not_pairs_of_counts_are_said(counts: Any, said: str) -> None:
    """`plain` reads each period's (bad, total): anything else made it raise, a bug of the
    agent where the answer is the provider's."""
    assert unreadable(Observation(value=0.1, count=1, total=10, period_counts=counts)) == said


@pytest.mark.parametrize(
    "counts",
    [np.array([[1, 300], [4, 300]]), ((np.int64(1), np.int64(300)), (np.uint16(4), 300))],
)
def test_numpy_period_counts_are_kept_as_python_s(counts: Any) -> None:
    """A plugin's per-period (bad, total) counts, which a relative count bound ranks its
    rounds among: numpy's went to the store as given, and its write raised on them (an
    array's truth is ambiguous; `int64` is no JSON), as on `period_sizes` before `plain`."""
    answer = Observation(value=5 / 600, count=5, total=600, period_counts=counts)
    assert unreadable(answer) is None
    made = plain(answer)
    assert made.period_counts == ((1, 300), (4, 300))
    assert {type(x) for pair in made.period_counts for x in pair} == {int}
    assert {type(pair) for pair in made.period_counts} == {tuple}
    dumped = _dumps(bounded_observation_dict(made))
    assert dumped is not None and '"period_counts":[[1,300],[4,300]]' in dumped


def test_one_shot_values_and_period_sizes_are_taken_once_whole() -> None:
    """A plugin's generators were read by `unreadable` and used up: `plain` then stored
    no samples and no periods. `taken` reads each once; a sequence is kept as given."""
    answer = Observation(
        value=0.3,
        values=(v for v in (0.1, 0.2, 0.3)),  # type: ignore[arg-type]
        period_sizes=iter((2, 1)),  # type: ignore[arg-type]
    )
    once = taken(answer)
    assert unreadable(once) is None and unreadable(once) is None
    assert (plain(once).values, plain(once).period_sizes) == ((0.1, 0.2, 0.3), (2, 1))
    kept = Observation(value=0.2, values=np.array([0.1, 0.2]))  # type: ignore[arg-type]
    assert taken(kept) is kept
    assert taken(None) is None


def test_a_generator_that_raises_raises_out_of_taken() -> None:
    """Its exception is the provider's bug, told as a fetch that raised is."""

    def broken() -> Any:
        yield 0.1
        raise ValueError("no more")

    with pytest.raises(ValueError, match="no more"):
        taken(Observation(value=0.1, values=broken()))

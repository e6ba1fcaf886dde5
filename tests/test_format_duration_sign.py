"""`format_duration` says any duration it is given, a negative one too (a clock read
backwards, a deadline already past): since sub-millisecond durations read in three
significant digits (`fine_ms`, a logarithm), a negative one raised `math domain error`
in whatever log line or message was being worded, where it read `-500ms` before."""

from __future__ import annotations

import pytest

from common.durations import format_duration


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(-0.5, "-500ms"), (-0.00194, "-1.94ms"), (-90.0, "-1m30s"), (-2.0, "-2s")],
)
def test_a_negative_duration_reads_as_its_size_with_a_minus(seconds: float, said: str) -> None:
    assert format_duration(seconds) == said


@pytest.mark.parametrize(
    ("seconds", "said"), [(0.5, "500ms"), (0.00194, "1.94ms"), (90.0, "1m30s")]
)
def test_a_positive_duration_reads_as_before(seconds: float, said: str) -> None:
    assert format_duration(seconds) == said

"""bench/pass_design_effect.py measures the judge's own pass side: each variant hands the
judge's `SequentialRule._ends` its own burstiness, where the script once swapped in a copy
of an older `_ends` (a normal-mixture floor), which the judge's `_ends(..., one=True)` call
then failed on (TypeError) before any window was judged."""

from __future__ import annotations

import pytest

from agent.analysis.sequential import SequentialRule
from tests.bench_module import bench_module


@pytest.mark.timeout(120)
def test_every_variant_judges_a_window_with_the_judges_own_ends(
    capsys: pytest.CaptureFixture[str],
) -> None:
    own = SequentialRule._ends
    bench = bench_module("pass_design_effect")
    case = bench.whole_errors(0.06)
    bench.run("whole-round errors", [bench.ERRORS], case, case, 40, 6, 1, 0, bench.VARIANTS)
    line = capsys.readouterr().out
    for variant in bench.VARIANTS:
        assert f"{variant} pass " in line
    assert SequentialRule._ends is own  # the judge's own again, for the tests beside it

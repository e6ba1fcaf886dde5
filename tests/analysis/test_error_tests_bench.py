"""bench/error_tests.py tells which of the error rule's tests fails a decision-benchmark
window first, and how far each got in a window none failed: the diagnosis of a cell near
its detection goal (errors x2 at 10 req/s: 192 of 200 windows, 131 first by the two-sample
e-process from the deploy, 29 by its look at the midpoint)."""

from __future__ import annotations

import pytest

from tests.bench_module import bench_module


@pytest.mark.timeout(120)
def test_errors_x5_fail_by_a_test_from_the_deploy_and_a_good_deploy_shows_how_far_each_got() -> (
    None
):
    bench = bench_module("error_tests")
    found = bench.run("errors_x5", 10, 3)
    assert [w.failed_s for w in found] == [60.0] * 3
    assert all(w.by and all(by.endswith(":deploy") for by in w.by) for w in found)
    good = bench.run("aa", 10, 1)[0]
    assert good.failed_s is None and good.by == ()
    assert [r.split()[0] for r in good.reached] == ["proportion", "periods"]
    assert "final p " in good.reached[0]
    assert "missed: proportion" in bench.report("aa", 10, [good])

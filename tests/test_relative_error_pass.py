"""The README's figures of a relative error bound's passes at the example's defaults
(`bench/relative_error_pass.py`): registration says `cannot pass on evidence` of the
cells where A/A windows rarely pass, and not of those where they mostly do. A few windows
of three cells, the bench's own code (judge only)."""

from __future__ import annotations

import numpy as np

from tests.bench_module import bench_module


def _cell(rps: float, rate: float, kappa: float, windows: int = 6) -> list[tuple[str, bool]]:
    bench = bench_module("relative_error_pass")
    runs: list[tuple[str, bool]] = bench.sentry_cell(
        np.random.default_rng(5), rps, rate, kappa, windows
    )
    return runs


def test_at_1_req_s_none_passes_and_registration_says_so() -> None:
    runs = _cell(1, 0.01, 0.0)
    assert [o for o, _ in runs].count("pass") == 0
    assert all(warned for _, warned in runs)


def test_at_10_req_s_of_1_percent_errors_it_passes_unwarned() -> None:
    runs = _cell(10, 0.01, 0.0)
    assert [o for o, _ in runs].count("pass") >= 5
    assert not any(warned for _, warned in runs)


def test_bursty_rare_errors_at_1000_req_s_are_warned() -> None:
    runs = _cell(1000, 0.001, 1000.0, windows=3)
    assert [o for o, _ in runs].count("pass") <= 1
    assert all(warned for _, warned in runs)

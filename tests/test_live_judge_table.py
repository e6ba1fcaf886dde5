"""`bench/live_judge.py`'s table: a latency x2 window whose environment kept the one before
(not rolled back) is counted apart, since the daemon pooled that slow release's rounds
into its baseline (`max_increase` then sees no regression); errors x5 are not split."""

from __future__ import annotations

from typing import Any

import pytest

from bench.live_judge import Target, table


def window(env: str, kind: str, version: str, state: str) -> dict[str, Any]:
    back = [200] if state == "rolled_back" else []
    return {
        "env": env,
        "kind": kind,
        "version": version,
        "state": state,
        "receiver": back,
        "t_verdict": 30.0,
        "t_from_onset": None,
    }


def rows(out: str) -> dict[str, list[str]]:
    cells = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("| mid")]
    return {c[1].strip(): [x.strip() for x in c[2:6]] for c in cells}


def test_a_latency_window_after_a_kept_one_is_counted_apart(
    capsys: pytest.CaptureFixture[str],
) -> None:
    table(
        [
            window("t02-latency_x2", "latency_x2", "v0", "inconclusive"),
            window("t02-latency_x2", "latency_x2", "v1", "inconclusive"),
            window("t06-latency_x2", "latency_x2", "v0", "rolled_back"),
            window("t06-latency_x2", "latency_x2", "v1", "rolled_back"),
            window("t00-errors_x5", "errors_x5", "v0", "inconclusive"),
            window("t00-errors_x5", "errors_x5", "v1", "rolled_back"),
        ]
    )
    # deploys, rolled back, passed, inconclusive
    assert rows(capsys.readouterr().out) == {
        "latency_x2": ["3", "2", "0", "1"],
        "latency_x2, after one kept": ["1", "0", "0", "1"],
        "errors_x5": ["2", "1", "0", "1"],
    }


def test_the_bursty_targets_runs_keep_its_mean_error_rate() -> None:
    """`aa_runs`: 8 requests in a row fail together, at the 1% mean of the plain A/A target
    (the bench's A/A with bursts is the same release, not a worse one)."""
    target = Target(seed=5, latency=0.0, error_rate=0.01, run=8)
    draws = [target.fails() for _ in range(200_000)]
    assert 0.009 <= sum(draws) / len(draws) <= 0.011
    runs, length = [], 0
    for failed in [*draws, False]:
        if failed:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert min(runs) >= 8 and sum(r % 8 for r in runs) == 0  # whole runs, back to back at most

"""kill -9 at random instants of a window that breaches, two replicas on PostgreSQL: the
sweep `bench/crash_resume.py --anywhere` runs at length, one trial of it here, judged
as the sweep judges (`judged`: exactly one rollback acted on, each alert once or once
more after a kill, one final GitHub status each, the last GitHub got)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.bench_module import bench_module
from tests.e2e.crash_anywhere import run_anywhere_trial

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_two_replicas_killed_anywhere_in_a_breaching_window_lose_and_repeat_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    trial, kills = run_anywhere_trial(
        tmp_path,
        random.Random(5),
        store_url=pg_url,
        replicas=2,
        kills=2,
    )
    assert len(kills) == 2
    judged = bench_module("crash_resume").judged(trial)
    assert judged["wrong"] == [], judged

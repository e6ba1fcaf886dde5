"""tests/e2e/chaos.py's end-of-run count, from the monitor's rows alone (no processes):
a regressed deploy not rolled back is a rollback lost (`unrecorded`) unless its window
ended on fewer rounds than its `failure_limit` (`ended_short`)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.chaos import Chaos, Plan


def _run(tmp_path: Path, windows: dict[str, dict[str, object]]) -> Chaos:
    run = Chaos(Plan(), "postgresql://127.0.0.1:1/none", tmp_path)
    for deploy, window in windows.items():
        run.deploys[deploy] = True
        run.failure_limit[deploy] = 24
        run.monitor.windows[deploy] = window
    run.monitor.rollbacks["done"] = {"state": "delivered"}
    return run


def test_a_regressed_window_ended_inconclusive_short_of_its_failure_limit_is_counted_apart(
    tmp_path: Path,
) -> None:
    run = _run(
        tmp_path,
        {
            "short": {"state": "inconclusive", "rounds": 20},  # 20 < 24: it could not fail
            "passed_short": {"state": "passed", "rounds": 5},
            "lost": {"state": "inconclusive", "rounds": 24},  # could have failed: not short
            "failed": {"state": "failed", "rounds": 3},  # failed, rollback not delivered
            "done": {"state": "rolled_back", "rounds": 24},
        },
    )
    run.f.regressed = 5
    run.f.delivered = {"done": 1, "failed": 0, "lost": 0, "short": 0, "passed_short": 0}
    assert run._ended_short() == [
        "short: window inconclusive, rollback None",
        "passed_short: window passed, rollback None",
    ]
    assert run._unrecorded() == [
        "lost: window inconclusive, rollback None",
        "failed: window failed, rollback None",
    ]
    run.f.unrecorded, run.f.ended_short = run._unrecorded(), run._ended_short()
    assert run.f.undelivered == 2  # lost and failed; the short ones send nothing
    assert run.f.summary()["ended_short"] == 2 and not run.f.ok


def test_a_registered_deploy_whose_window_is_not_judged_at_the_end_is_counted_unjudged(
    tmp_path: Path,
) -> None:
    """A window lost (not in the store) or left watching is a registered deploy never
    judged, regressed or not: `stuck` counts only the windows still watching."""
    run = _run(tmp_path, {"judged": {"state": "passed", "rounds": 48}})
    run.deploys.update({"missing": False, "watching": False})
    run.monitor.windows["watching"] = {"state": "watching", "rounds": 3}
    assert run._unjudged() == ["missing: window None", "watching: window watching"]
    run.f.unjudged = run._unjudged()
    assert run.f.summary()["unjudged"] == 2 and not run.f.ok


def test_each_rollback_delivered_once_sets_aside_only_a_deploy_that_ended_short(
    tmp_path: Path,
) -> None:
    """A deploy that ended short sent nothing and is set aside; one delivered twice, or
    not at all without ending short, fails the count."""
    run = _run(
        tmp_path,
        {
            "short": {"state": "inconclusive", "rounds": 9},
            "done": {"state": "rolled_back", "rounds": 24},
        },
    )
    run.f.ended_short = run._ended_short()
    run.f.delivered = {"done": 1, "short": 0}
    assert run.f.delivered_once(), run.f.why()
    run.f.delivered = {"done": 2, "short": 0}
    assert not run.f.delivered_once()  # a duplicate
    run.f.delivered = {"done": 0, "short": 0}
    assert not run.f.delivered_once()  # a rollback lost
    run.f.ended_short = []
    run.f.delivered = {"done": 1, "short": 0}
    assert not run.f.delivered_once()
    assert "delivered {'done': 1, 'short': 0}" in run.f.why()

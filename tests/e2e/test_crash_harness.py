"""The kill -9 trials' harness (tests/e2e/crash.py), where its own timing decides what a
trial counts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bench_module import bench_module
from tests.e2e import crash
from tests.e2e.crash_end import EndTrial


def test_a_tracked_agents_pid_is_in_its_file_before_it_can_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver of `--kill-on-accept` kills the pid in the file the instant it takes a
    rollback; a restarted agent resumes its pending rollback as it starts. The pid was
    written once the agent was ready: `bench/crash_resume.py --kill-on-accept` read the
    file as it was rewritten (empty: ValueError in the receiver, which answered 500 to a
    rollback it had counted accepted), 1 WRONG trial of 20."""
    pidfile = tmp_path / "agent.pid"
    pidfile.write_text("1")  # the previous agent's, long dead
    seen: list[str] = []

    def ready(port: int, proc: subprocess.Popen[bytes], within: float) -> None:
        seen.append(pidfile.read_text())

    monkeypatch.setattr(crash, "_wait_ready", ready)
    agent = crash.start_tracked(tmp_path / "none.yaml", 9, tmp_path / "agent.log", pidfile)
    agent.kill()
    agent.wait()
    assert seen == [str(agent.pid)]


@pytest.mark.parametrize(
    ("statuses", "right"),
    [
        (["in_progress", "failure"], True),
        (["failure"], True),
        # the verdict's re-sent after a watch's GitHub took after it: the last is the verdict's
        (["failure", "in_progress", "failure"], True),
        (["failure", "in_progress"], False),
        (["in_progress", "failure", "failure"], False),
        (["in_progress"], False),
    ],
)
def test_the_anywhere_trials_judge_wants_the_verdicts_status_last_and_once_but_re_sent(
    statuses: list[str], right: bool
) -> None:
    """`judged` of `bench/crash_resume.py --anywhere` on a trial's deployment statuses."""
    bench = bench_module("crash_resume")
    trial = EndTrial(
        killed=True,
        state="rolled_back",
        alerts=list(bench.ALERTS),
        rollbacks_acted_on=1,
        rollback_requests=1,
        rollback_markers=1,
        deployment_statuses=statuses,
        commit_statuses=["pending", "failure"],
    )
    wrong = bench.judged(trial)["wrong"]
    assert (wrong == []) is right, wrong

"""The kill -9 trials' harness (tests/e2e/crash.py), where its own timing decides what a
trial counts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e import crash


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

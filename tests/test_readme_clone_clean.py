"""The README's "Running the daemon" runs `postflight run` from the quick start's clone,
whose example store is `sqlite:///./postflight.db`: what the run leaves there (the
store, its WAL files, the agent's lock beside it) is the repository's `.gitignore`'s,
so `git status` of a clone the README was followed in stays clean."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_run_start import TOKEN, free_port, stopped_once_listening

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_run_from_the_clone_leaves_nothing_git_status_shows(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    git("init", "-q", cwd=clone)
    shutil.copy(ROOT / ".gitignore", clone / ".gitignore")
    git("add", ".gitignore", cwd=clone)
    git("commit", "-q", "-m", "ignore", cwd=clone)
    config = tmp_path / "postflight.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:{free_port()}', api_tokens: ['{TOKEN}']}}\n"
        "store: {url: 'sqlite:///./postflight.db'}\n"
        "environments:\n"
        "  production:\n"
        "    base_url: http://127.0.0.1:9\n"
        "    checks: [{name: up, type: http, path: /}]\n"
        "    rules: [{name: errors, source: checks, metric: error_rate, max: 0.05}]\n"
    )
    said = stopped_once_listening(str(config), tmp_path / "agent.log", signal.SIGTERM, clone)
    assert f"store SQLite file {clone / 'postflight.db'}" in said, said
    left = sorted(p.name for p in clone.iterdir() if p.name not in (".git", ".gitignore"))
    assert "postflight.db" in left, left
    assert git("status", "--porcelain", "--untracked-files=all", cwd=clone) == "", left

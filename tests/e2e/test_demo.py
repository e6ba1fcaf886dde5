"""The README's first command: `postflight demo` passes the good deploy and rolls the bad
one back exactly once, on the default (sequential, pass on evidence) policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.heavy import HEAVY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), HEAVY]


def run_demo(env: dict[str, str] | None = None) -> str:
    """`postflight demo` in a process of its own: its output, once it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", "agent", "demo"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        env=env,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def test_the_demo_passes_the_good_deploy_and_rolls_back_the_bad_one_once() -> None:
    out = run_demo()
    assert "v1.1.0: PASSED" in out
    assert "v1.2.0-bad: ROLLED_BACK" in out
    assert "the bad one was rolled back once" in out


def test_the_demo_ignores_postflight_overrides_and_writes_nothing_outside_its_temp_dir(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = elsewhere / "postflight.yaml"
    config.write_text("server: {listen: 'not an address'}\n")
    env = {
        **os.environ,
        "POSTFLIGHT__STORE__URL": f"sqlite:///{elsewhere}/leak.db",
        "POSTFLIGHT__SERVER__API_TOKENS": "not-json",
        "POSTFLIGHT__ENVIRONMENTS__DEMO__WINDOW": "1s",
        "POSTFLIGHT_CONFIG": str(config),
    }
    out = run_demo(env)
    assert "the bad one was rolled back once" in out
    assert sorted(p.name for p in elsewhere.iterdir()) == ["postflight.yaml"]
    assert str(elsewhere) not in out

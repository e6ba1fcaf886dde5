"""The README's first command: `postflight demo` passes the good deploy and rolls the bad
one back exactly once, on the default (sequential, pass on evidence) policy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.heavy import HEAVY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120), HEAVY]


def test_the_demo_passes_the_good_deploy_and_rolls_back_the_bad_one_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "demo"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "v1.1.0: PASSED" in out
    assert "v1.2.0-bad: ROLLED_BACK" in out
    assert "the bad one was rolled back once" in out

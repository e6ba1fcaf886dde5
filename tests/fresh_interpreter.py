"""A measure taken in a Python of its own: a long-lived xdist worker's heap holds what its
earlier tests left (objects to walk, loops left running in threads that allocate and log
meanwhile), which a census or a traced-memory figure would count as the agent's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def in_a_fresh_interpreter(script: str, *args: str) -> Any:
    """What `script` (run by `python -c` in the checkout, `args` its `sys.argv[1:]`)
    prints, as JSON: a heap of its own, not a long-lived xdist worker's."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    return json.loads(run.stdout)

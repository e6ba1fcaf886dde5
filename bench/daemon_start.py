"""How soon `postflight run` is ready: wall time from spawning it to its first `/readyz`
200, and the CPU (user + system) it used by then, median of N starts, for one SQLite
environment (its target down: no deploy is registered) without and with an alert channel.

    python bench/daemon_start.py [--runs 7] [--json]

Every restart pays this, and so does every test that starts the daemon as a process. Each
configuration starts once uncounted first, with bytecode caching on (as an installed
package has its `.pyc` files): the figures are imports and start-up work, not compiling
the sources. What the start leaves to first use: `tests/e2e/test_daemon_imports.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import print_medians, spawn_env, timing_args
from tests.e2e.crash import ROOT, free_port, server_and_store

ENVIRONMENT = (
    "environments:\n"
    "  production:\n"
    "    base_url: http://127.0.0.1:{port}\n"
    "    window: 10m\n"
    "    interval: 30s\n"
    "    checks:\n"
    "      - {{name: api-health, type: http, path: /health, timeout: 200ms}}\n"
    "    rules:\n"
    "      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}\n"
)
CHANNEL = "alerting:\n  channels:\n    - url: json://127.0.0.1:{port}/alerts\n"


def _start(
    env: dict[str, str], channel: bool, flags: tuple[str, ...] = ()
) -> tuple[float, float, str]:
    """Seconds to the first `/readyz` 200, CPU seconds used by then and what the agent
    said on stderr by its exit (with `flags`, the interpreter's: `-X importtime`)."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "postflight.yaml"
        text = server_and_store(Path(tmp), port) + ENVIRONMENT.format(port=free_port())
        config.write_text(text + (CHANNEL.format(port=free_port()) if channel else ""))
        said = Path(tmp) / "stderr"
        start = time.perf_counter()
        with said.open("wb") as stderr:  # a file, not a pipe: importtime fills a pipe's
            # buffer before the agent is ready, and the agent then waits on it for ever
            proc = subprocess.Popen(
                [sys.executable, *flags, "-m", "agent", "run", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the agent exited: {said.read_text()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                        break
                except (urllib.error.URLError, OSError):
                    time.sleep(0.01)
            wall = time.perf_counter() - start
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
        return wall, cpu, said.read_text()


def daemon_env() -> dict[str, str]:
    """This shell's environment, less what would add to a start (an APM agent's)."""
    return spawn_env("PYTHONDONTWRITEBYTECODE")


def main() -> int:
    args = timing_args(argparse.ArgumentParser(description=__doc__), runs=7)
    env = daemon_env()
    figures: dict[str, dict[str, float]] = {}
    for name, channel in (("no channel", False), ("one channel", True)):
        _start(env, channel)
        starts = [_start(env, channel) for _ in range(args.runs)]
        figures[name] = {
            "ready_s": statistics.median(s[0] for s in starts),
            "cpu_s": statistics.median(s[1] for s in starts),
        }
    title = f"postflight run to /readyz 200, median of {args.runs} starts each"
    print_medians(figures, title, "configuration", 14, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

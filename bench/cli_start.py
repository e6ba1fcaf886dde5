"""What one `postflight` client command costs a deploy pipeline: wall and CPU time of
each process, start to exit (the interpreter, the imports, the work), median of N runs.

    python bench/cli_start.py [--runs 10] [--json]

`register` and `status` talk to a real daemon (`postflight run`, started here on an
embedded SQLite store in a temporary directory, its one environment's target down and
its rollback a dry run); `validate-config` reads the contract's example configuration.
Each command runs once uncounted first, with bytecode caching on (as an installed package
has its `.pyc` files): the figures are imports and work, not compiling the sources.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import print_medians, spawn_env, timing_args
from tests.e2e.crash import ROOT, TOKEN, free_port, server_and_store, start_agent

EXAMPLE = ROOT.parent / "shared" / "spec" / "postflight.example.yaml"
if not EXAMPLE.exists():  # a clone outside the team's tree
    EXAMPLE = Path("/work/shared/spec/postflight.example.yaml")
EXAMPLE_ENV = {  # the secrets the example configuration names, long enough to validate
    "POSTFLIGHT_API_TOKEN": "bench-api-token-0123456789",
    "SENTRY_AUTH_TOKEN": "bench-sentry-token",
    "NEW_RELIC_API_KEY": "bench-newrelic-key",
    "ROLLBACK_SECRET": "bench-rollback-secret",
}


def _config(workdir: Path, port: int) -> Path:
    text = server_and_store(workdir, port) + (
        "environments:\n"
        "  production:\n"
        f"    base_url: http://127.0.0.1:{free_port()}\n"
        "    window: 10m\n"
        "    interval: 30s\n"
        "    checks:\n"
        "      - {name: api-health, type: http, path: /health, timeout: 200ms}\n"
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
        "    rollback: {url: http://127.0.0.1:9/rollback, secret: bench-secret-0123, "
        "dry_run: true}\n"
    )
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


def _time(argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median wall and CPU (user + system) seconds of `python -m agent *argv`."""
    walls, cpus = [], []
    subprocess.run([sys.executable, "-m", "agent", *argv], cwd=ROOT, env=env, capture_output=True)
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "agent", *argv], cwd=ROOT, env=env, capture_output=True
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def commands(port: int) -> dict[str, list[str]]:
    """The commands timed, by name: `register` and `status` ask the agent on `port`."""
    url = ["--url", f"http://127.0.0.1:{port}", "--token", TOKEN]
    return {
        "--help": ["--help"],
        "register --help": ["register", "--help"],
        "register": ["register", *url, "--env", "production", "--version", "v1"],
        "status": ["status", *url],
        "validate-config": ["validate-config", str(EXAMPLE)],
    }


@contextlib.contextmanager
def an_agent() -> Iterator[int]:
    """The port of an agent ready there (its store in a temporary directory), stopped at
    the end."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        agent = start_agent(_config(Path(tmp), port), port, Path(tmp) / "agent.log")
        try:
            yield port
        finally:
            agent.terminate()
            agent.wait(timeout=15)


def client_env() -> dict[str, str]:
    """This shell's environment with the example's secrets, less what would point a
    command elsewhere or add to its work."""
    return spawn_env("POSTFLIGHT_URL", "POSTFLIGHT_TOKEN", "PYTHONDONTWRITEBYTECODE", **EXAMPLE_ENV)


def main() -> int:
    args = timing_args(argparse.ArgumentParser(description=__doc__), runs=10)
    env = client_env()
    with an_agent() as port:
        figures = {name: _time(argv, env, args.runs) for name, argv in commands(port).items()}
    title = f"postflight commands, median of {args.runs} processes each"
    print_medians(figures, title, "command", 18, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

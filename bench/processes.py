"""What the benchmarks that run `postflight` as its own process share: a free port, the
environment a spawned command gets, waiting for its `/readyz`, stopping it, a PostgreSQL
cluster to run on, and the table of median timings the start-up benchmarks print.

Each script wrote these out again; one copy keeps their figures comparable (the same
variables dropped, the same stop). Imports only the standard library at module level:
the soaks run their watcher inside the agent's process, whose heap they measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tests.pg import PgCluster

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
APM_VARIABLES = ("SENTRY_DSN", "NEW_RELIC_LICENSE_KEY")
"""An APM agent's settings in this shell: a spawned agent would start one, adding to the
work measured."""
NO_POSTGRES = "PostgreSQL server binaries not found (see tests/pg.py)"
A = TypeVar("A")
T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spawn_env(*drop: str, **extra: str) -> dict[str, str]:
    """This shell's environment with the repository importable and `extra`, less an APM
    agent's variables and `drop`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    for unwanted in (*APM_VARIABLES, *drop):
        env.pop(unwanted, None)
    return env


def wait_ready(agent: subprocess.Popen[bytes], port: int, deadline: float, log: str) -> None:
    """Until the agent on `port` answers `/readyz`; exits naming `log` if it ended or
    `deadline` (monotonic) passed first."""
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1):
                return
        except OSError:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the agent did not start: see {log}") from None
            time.sleep(0.2)


def stop_agents(agents: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, then up to 60 s each for it to end, killed after that."""
    agents = list(agents)
    for agent in agents:
        agent.send_signal(signal.SIGTERM)
    for agent in agents:
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of its own for the run, stopped after; where the machine has
    no server binaries, says so on stderr and exits 2."""
    from tests.pg import running_cluster, server_bindir  # asyncpg: not in a watched agent

    bindir = server_bindir()
    if bindir is None:
        print(NO_POSTGRES, file=sys.stderr)
        raise SystemExit(2)
    with running_cluster(bindir) as cluster:
        yield cluster


def on_a_cluster(run: Callable[[A, PgCluster], Coroutine[Any, Any, T]], args: A) -> T:
    """`run(args, cluster)` to its end on a cluster of its own (`postgres_cluster`)."""
    with postgres_cluster() as cluster:
        return asyncio.run(run(args, cluster))


def timing_args(parser: argparse.ArgumentParser, runs: int) -> argparse.Namespace:
    """`parser`'s arguments and the two every timing benchmark takes: `--runs` (how many
    times each figure is measured, `runs` by default) and `--json`."""
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def print_medians(
    figures: Mapping[str, Mapping[str, float]], title: str, first: str, width: int, as_json: bool
) -> None:
    """`figures` (name -> seconds by `<what>_s`) as JSON, or as a table in milliseconds
    headed `title`: a row a name, `width` wide under `first`, a column a figure, named
    without its `_s`."""
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    columns = list(next(iter(figures.values()), {}))
    print(title)
    print(f"{first:<{width}}" + "".join(f" {c.removesuffix('_s'):>8}" for c in columns))
    for name, f in figures.items():
        print(f"{name:<{width}}" + "".join(f" {f[c] * 1000:>6.0f}ms" for c in columns))

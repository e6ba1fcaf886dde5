"""Overload: an A/A run of `bench/footprint.py` past what one core keeps on time, counting
the healthy deploys the overloaded agent failed and the rollbacks it sent.

Not a test; it prints figures (`--json`: one object). Every window deploys the same
healthy target (nginx, or aiohttp) in the footprint's default configuration, plus a
rollback webhook pointing at a receiver in its own process: a rollback is counted where
it lands (distinct Idempotency-Keys in the receiver's log), never from the agent's own
bookkeeping. Beside it, from the store and the agent's `/metrics` at the end: windows
by state, verdict reasons, probe results by kind, and the probes the agent dropped as
its own (`postflight_samples_dropped_total`). The goal (issue 9): 0 rollbacks and 0
failed windows in an A/A run however overloaded the agent.

    python bench/overload.py [--windows 1500] [--interval 1s] [--seconds 60] [--one-core]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import footprint  # noqa: E402
from common.durations import parse_duration  # noqa: E402

SECRET = "overload-rollback-secret"


def start_receiver(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The rollback receiver (`tests/receivers.py`) in its own process; its URL."""
    command = [sys.executable, "-m", "tests.receivers", "rollback", "--secret", SECRET]
    proc = subprocess.Popen(
        [*command, "--log", str(log)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first:
        proc.kill()
        raise RuntimeError("the rollback receiver did not start")
    url = str(json.loads(first)["url"])
    return proc, url


def with_rollback(plain: Callable[..., str], url: str) -> Callable[..., str]:
    """The footprint's environment (`plain`, whatever its arguments) with a rollback
    webhook to `url`: a wrapper naming them broke when footprint's grew `probes`."""

    def environment(*args: Any) -> str:
        rollback = f"    rollback: {{url: {url}, secret: {SECRET}, backoff: 1s}}"
        return plain(*args) + "\n" + rollback

    return environment


def received(log: Path) -> int:
    """Distinct deploys the receiver got a rollback for (its own log of requests)."""
    if not log.exists():
        return 0
    keys = {json.loads(line).get("idempotency_key") for line in log.read_text().splitlines()}
    return len(keys)


def probe_counts(port: int) -> dict[str, float]:
    """From the agent's `/metrics`: check runs by result and samples dropped by reason."""
    out: dict[str, float] = collections.defaultdict(float)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
        for line in resp.read().decode().splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("postflight_check_runs_total{"):
                out["runs_" + name.split('result="')[1].split('"')[0]] += float(value)
            elif name.startswith("postflight_samples_dropped_total{"):
                out["dropped_" + name.split('result="')[1].split('"')[0]] += float(value)
    return out


def windows_by_state(db_path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Windows by state, and the first words of the ended ones' verdict reasons."""
    states: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    db = sqlite3.connect(db_path)
    try:
        for state, verdict in db.execute("SELECT state, verdict FROM windows"):
            states[state] += 1
            if state != "watching" and verdict:
                reason = str(json.loads(verdict).get("reason", ""))
                reasons[reason.split(":")[0][:60]] += 1
    finally:
        db.close()
    return dict(states), dict(reasons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1500)
    parser.add_argument("--interval", type=parse_duration, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--one-core", action="store_true", help="pin the agent to one core")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the store and the agent's log here"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postflight-overload-") as tmp:
        workdir = Path(tmp)
        log = workdir / "rollbacks.jsonl"
        receiver, url = start_receiver(log)
        counted: dict[str, float] = {}
        plain_metrics = footprint.agent_metrics

        def agent_metrics(port: int) -> dict[str, float]:
            counted.update(probe_counts(port))  # at the run's end, before the agent stops
            return plain_metrics(port)

        footprint.environment = with_rollback(footprint.environment, url)
        footprint.agent_metrics = agent_metrics
        os.environ["FOOTPRINT_WORKDIR"] = str(workdir)
        try:
            figures = footprint.measure(
                footprint.Run(args.windows, args.interval, args.seconds, pin=args.one_core),
                quiet=args.json,
            )
            states, reasons = windows_by_state(workdir / "postflight.db")
            if args.keep is not None:  # to read the rounds behind a verdict afterwards
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in [*workdir.glob("postflight.db*"), *workdir.glob("*.log")]:
                    shutil.copy2(path, args.keep / path.name)
                for path in workdir.glob("nginx.err"):
                    shutil.copy2(path, args.keep / path.name)
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=10)
        # the receiver's log is written as requests come: read after it stopped
        rollbacks = received(log)
    result = {
        "windows": args.windows,
        "interval_s": args.interval,
        "seconds": args.seconds,
        "rollbacks_received": rollbacks,
        "windows_by_state": states,
        "verdict_reasons": reasons,
        "probe_runs": {k: int(v) for k, v in sorted(counted.items())},
        "rounds": figures["rounds"],
        "register_s": figures["register_s"],
        "lag_p50_ms": figures["lag_p50_ms"],
        "lag_p99_ms": figures["lag_p99_ms"],
        "overruns": figures["overruns"],
        "cpu_ms_per_window_round": figures["cpu_ms_per_window_round"],
        "cpu_by_minute_pct": figures["cpu_by_minute_pct"],
        "loadavg_1m_start": figures["loadavg_1m_start"],
        "loadavg_1m": figures["loadavg_1m"],
        "goals_met": {
            "rollbacks_received==0": rollbacks == 0,
            "windows_failed==0": states.get("failed", 0) + states.get("rolled_back", 0) == 0,
        },
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

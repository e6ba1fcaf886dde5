"""bench/probe_times.py: each probe's times recorded inside the agent's process (as
`bench/footprint.py --probe-times` installs it, through its sitecustomize), and the summary
that tells the agent's own part of a kept latency from the target's queueing."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

PROBING = """
import asyncio
from aiohttp import web
from yarl import URL
from checks.sessions import TargetSessions, lean_client
from checks.ticks import ticks

async def main() -> None:
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = URL(f"http://127.0.0.1:{site.port}/")
    loop = asyncio.get_running_loop()
    async with TargetSessions() as sessions:
        client = lean_client(sessions.get(str(url)))
        answered = [loop.create_future() for _ in range(3)]

        def begin(i: int) -> None:  # as a round's probe starts from the grid (`probing`)
            head = client.head("GET", url, None, None)
            client.send_now(head, url, 5.0, False, lambda p, _, e: answered[i].set_result(p))

        begin(0)  # at once: no due moment
        await answered[0]
        for i in (1, 2):
            ticks().start_at(loop.time() + 0.02, begin, i)
        await asyncio.gather(*answered)
    await runner.cleanup()

asyncio.run(main())
"""


def probe_times() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_times", ROOT / "bench/probe_times.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_process_started_as_the_bench_starts_the_agent_records_each_answered_probe(
    tmp_path: Path,
) -> None:
    times = probe_times()
    path = str(tmp_path / "probe-times")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "bench" / "probe_times_site"), str(ROOT)))
    env[times.ENV] = path
    subprocess.run([sys.executable, "-c", PROBING], env=env, check=True, timeout=60)
    rows = times.read(path)
    assert rows.shape == (3, len(times.FIELDS))
    due, started, written, landed, read = rows.T
    assert math.isnan(due[0]) and not np.isnan(due[1:]).any()
    assert (started[1:] >= due[1:] - 0.002).all()  # never before its moment (uvloop: ms)
    assert (started <= written).all() and (started < landed).all() and (landed <= read).all()
    summary = times.summary(rows)
    assert summary["probes"] == 3 and summary["on_time"]["share"] + summary["late"]["share"] == 1


def test_the_summary_puts_the_tail_on_probes_started_late_in_a_bunch() -> None:
    """80 probes on time, each alone at the target (1 ms); 20 started 50 ms late, written
    together, each answered 1 ms after the one before it (the target's queue)."""
    times = probe_times()
    rows = []
    for i in range(80):
        at = i * 0.01
        rows.append((at - 0.001, at, at + 0.0001, at + 0.001, at + 0.002))
    bunch = 1.0
    for i in range(20):
        at = bunch + i * 1e-5
        rows.append((bunch - 0.05, at, at, bunch + (i + 1) * 0.001, bunch + 0.03))
    summary = times.summary(np.array(rows))
    assert summary["probes"] == 100
    assert summary["on_time"]["share"] == 0.8 and summary["late"]["share"] == 0.2
    assert summary["late"]["share_of_tail"] == 1.0 and summary["on_time"]["share_of_tail"] == 0
    assert summary["on_time"]["kept_ms_p95"] == 1.0 and summary["late"]["kept_ms_p95"] > 18
    assert summary["on_time"]["in_flight_p95"] == 0 and summary["late"]["in_flight_p95"] >= 18
    assert summary["started_late_ms"][0] == 1.0

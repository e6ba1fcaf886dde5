"""Footprint: N concurrent deploy windows, one http check each at a 1 s interval,
against a local target. Prints peak RSS, CPU %, and round-start lag p50/p99.

Goal (issue 2): RSS ≤ 150 MB and lag p99 ≤ 100 ms for 200 windows.

    python bench/footprint.py [--windows 200] [--seconds 30] [--json]

The target is nginx (Debian `nginx-light`) when installed, else a small aiohttp
server in its own process; the agent runs as `postflight run` in its own process,
so its figures are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.crash import free_port, start_agent  # noqa: E402

TOKEN = "footprint-api-token"

TARGET_PY = """
import sys
from aiohttp import web
async def ok(request):
    return web.json_response({"status": "ok"})
app = web.Application()
app.router.add_get("/health", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def start_target(workdir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx:
        conf = workdir / "nginx.conf"
        conf.write_text(
            textwrap.dedent(
                f"""
                worker_processes 1;
                daemon off;
                pid {workdir}/nginx.pid;
                error_log {workdir}/nginx.err;
                events {{ worker_connections 4096; }}
                http {{
                    access_log off;
                    client_body_temp_path {workdir};
                    server {{
                        listen 127.0.0.1:{port};
                        location / {{
                            default_type application/json;
                            return 200 '{{"status":"ok"}}';
                        }}
                    }}
                }}
                """
            )
        )
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])
        kind = "nginx"
    else:
        proc = subprocess.Popen([sys.executable, "-c", TARGET_PY, str(port)])
        kind = "aiohttp"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port, kind
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("target did not start")


def write_config(workdir: Path, agent_port: int, target_port: int, windows: int) -> Path:
    lines = [
        "server:",
        f"  listen: 127.0.0.1:{agent_port}",
        f"  api_tokens: [{TOKEN}]",
        "store:",
        f"  url: sqlite:///{workdir / 'postflight.db'}",
        "environments:",
    ]
    for i in range(windows):
        lines += [
            f"  env{i:03d}:",
            f"    base_url: http://127.0.0.1:{target_port}",
            "    window: 1h",
            "    interval: 1s",
            "    background_interval: 1h",
            "    probes_per_round: 1",
            "    checks:",
            "      - {name: health, type: http, path: /health, timeout: 2s}",
            "    analysis: {policy: threshold, failure_limit: 3}",
            "    rules:",
            "      - {name: errors, source: checks, metric: error_rate, max: 0.5}",
        ]
    path = workdir / "postflight.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def register(port: int, env: str) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/deploys",
        data=json.dumps({"environment": env, "version": "v1"}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).read()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="postflight-footprint-") as tmp:
        workdir = Path(tmp)
        target, target_port, target_kind = start_target(workdir)
        agent_port = free_port()
        config = write_config(workdir, agent_port, target_port, args.windows)
        agent = start_agent(config, agent_port, workdir / "agent.log")
        try:
            idle_rss = rss_mb(agent.pid)
            for i in range(args.windows):
                register(agent_port, f"env{i:03d}")
            time.sleep(2.0)  # every window has started its rounds
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < args.seconds:
                peak = max(peak, rss_mb(agent.pid))
                time.sleep(0.5)
            cpu = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0) * 100
            peak = max(peak, rss_mb(agent.pid, "VmHWM"))
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=15)
            target.send_signal(signal.SIGTERM)
            target.wait(timeout=5)
        db = sqlite3.connect(workdir / "postflight.db")
        lags, rounds = [], 0
        for (summary,) in db.execute("SELECT summary FROM rounds"):
            rounds += 1
            lag = json.loads(summary).get("lag_s")
            if lag is not None:
                lags.append(lag * 1000)
        db.close()
    result = {
        "windows": args.windows,
        "seconds": args.seconds,
        "target": target_kind,
        "rounds": rounds,
        "rss_idle_mb": round(idle_rss, 1),
        "rss_peak_mb": round(peak, 1),
        "cpu_percent": round(cpu, 1),
        "lag_p50_ms": round(percentile(lags, 0.5), 2),
        "lag_p99_ms": round(percentile(lags, 0.99), 2),
        "lag_mean_ms": round(statistics.fmean(lags), 2) if lags else None,
        "goal": {"rss_peak_mb": 150, "lag_p99_ms": 100},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"footprint: {args.windows} windows, 1 http check each at 1 s, {args.seconds:g}s"
            f" against {target_kind} ({rounds} rounds)"
        )
        print(f"  {'metric':<18}{'measured':>10}{'goal':>10}")
        print(f"  {'RSS idle (MB)':<18}{result['rss_idle_mb']:>10}{'':>10}")
        print(f"  {'RSS peak (MB)':<18}{result['rss_peak_mb']:>10}{'≤150':>10}")
        print(f"  {'CPU (% of 1 core)':<18}{result['cpu_percent']:>10}{'':>10}")
        print(f"  {'lag p50 (ms)':<18}{result['lag_p50_ms']:>10}{'':>10}")
        print(f"  {'lag p99 (ms)':<18}{result['lag_p99_ms']:>10}{'≤100':>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

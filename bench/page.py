"""Deploy page benchmark: time to first byte of `GET /deploys/{id}` and the latency of
SSE `round` events (round stored → event received), with N windows running, plus the
page's weight (HTML and every asset it loads).

    python bench/page.py [--windows 200] [--seconds 75] [--interval 30s] [--json]

The agent runs in its own process (`serve` below: the daemon's `agent.app.serve` with
the configured store, wrapped only to note the wall-clock time each round is stored,
in a file this process reads). Every window gets an event stream open for the whole
run, so the figures are for N windows *and* N live pages. Defaults are a user's:
interval 30s, 10 probes per round, a 15m window; `--interval 1s` is the harsh variant.
The target is nginx when installed, else a small aiohttp server (see footprint.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.footprint import TOKEN, register, start_target  # noqa: E402
from tests.e2e.crash import _wait_ready, free_port  # noqa: E402

# the same token `register` (from footprint.py) sends


def write_config(workdir: Path, agent_port: int, target_port: int, n: int, interval: str) -> Path:
    lines = [
        "server:",
        f"  listen: 127.0.0.1:{agent_port}",
        f"  api_tokens: [{TOKEN}]",
        "store:",
        f"  url: sqlite:///{workdir / 'postflight.db'}",
        "environments:",
    ]
    for i in range(n):
        lines += [
            f"  env{i:03d}:",
            f"    base_url: http://127.0.0.1:{target_port}",
            f"    interval: {interval}",
            "    checks:",
            "      - {name: health, type: http, path: /health, timeout: 2s}",
            "    rules:",
            "      - {name: errors, source: checks, metric: error_rate, max: 0.05}",
            "      - {name: latency, source: checks, metric: latency_p95, max_increase: 0.5}",
        ]
    path = workdir / "postflight.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the agent's side -----------------------------------------------------------------


def serve(config: str, stored_log: str) -> None:
    """The daemon as `postflight run` builds it, noting when each round is stored."""
    from agent.app import serve as serve_app
    from agent.settings_file import load_settings
    from agent.store import store_from_url

    settings = load_settings(config)
    out = open(stored_log, "a", buffering=1)  # noqa: SIM115 (open for the process's life)

    class NotingStore:
        def __init__(self, store: Any) -> None:
            self._store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

        async def record_round(self, record: Any, verdict: Any, fence: Any = None) -> bool:
            stored = await self._store.record_round(record, verdict, fence)
            out.write(f"{record.window_id} {record.number} {time.time():.6f}\n")
            return bool(stored)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_app(settings, stop, store=NotingStore(store_from_url(settings.store.url)))

    asyncio.run(main())


# --- the browser's side ---------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def follow(
    http: aiohttp.ClientSession, base: str, deploy_id: str, seen: list[tuple[str, int, float]]
) -> None:
    url = f"{base}/v1/deploys/{deploy_id}/events"
    async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "round":
                data = json.loads(line[5:])
                seen.append((deploy_id, int(data["round"]), time.time()))


async def measure(base: str, ids: list[str], seconds: float) -> dict[str, Any]:
    seen: list[tuple[str, int, float]] = []
    ttfb: list[float] = []
    total: list[float] = []
    weights: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        streams = [asyncio.create_task(follow(http, base, i, seen)) for i in ids]
        deadline = time.monotonic() + seconds
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while time.monotonic() < deadline:
            deploy_id = random.choice(ids)
            t0 = time.perf_counter()
            async with http.get(f"{base}/deploys/{deploy_id}", headers=headers) as r:
                ttfb.append((time.perf_counter() - t0) * 1000)
                body = await r.read()
                total.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200, r.status
            weights["html"] = len(body)
            await asyncio.sleep(0.25)
        for name in ("page.css", "page.js"):
            async with http.get(f"{base}/deploys/static/{name}") as r:
                weights[name] = len(await r.read())
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    return {"seen": seen, "ttfb": ttfb, "total": total, "weights": weights}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=75.0)
    parser.add_argument("--interval", default="30s", help="environment interval (default 30s)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--serve", nargs=2, metavar=("CONFIG", "STORED_LOG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    with tempfile.TemporaryDirectory(prefix="postflight-page-") as tmp:
        workdir = Path(tmp)
        target, target_port, target_kind = start_target(workdir)
        agent_port = free_port()
        config = write_config(workdir, agent_port, target_port, args.windows, args.interval)
        stored_log = workdir / "stored.log"
        with (workdir / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(config), str(stored_log)],
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        try:
            _wait_ready(agent_port, agent)
            base = f"http://127.0.0.1:{agent_port}"
            for i in range(args.windows):
                register(agent_port, f"env{i:03d}")
            ids = asyncio.run(_ids(base, args.windows))
            result = asyncio.run(measure(base, ids, args.seconds))
        finally:
            # SIGTERM, not SIGKILL: nginx's master then takes its workers with it
            for proc, grace in ((agent, 20), (target, 5)):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=grace)
        stored: dict[tuple[str, int], float] = {}
        for line in stored_log.read_text().splitlines():
            window_id, number, at = line.split()
            stored[(window_id, int(number))] = float(at)
    latencies = [(at - stored[(i, n)]) * 1000 for i, n, at in result["seen"] if (i, n) in stored]
    weights = result["weights"]
    figures = {
        "windows": args.windows,
        "interval": args.interval,
        "seconds": args.seconds,
        "target": target_kind,
        "page_requests": len(result["ttfb"]),
        "ttfb_p50_ms": round(statistics.median(result["ttfb"]), 2),
        "ttfb_p95_ms": round(percentile(result["ttfb"], 0.95), 2),
        "page_total_p50_ms": round(statistics.median(result["total"]), 2),
        "round_events": len(latencies),
        "sse_latency_p50_ms": round(percentile(latencies, 0.5), 2),
        "sse_latency_p95_ms": round(percentile(latencies, 0.95), 2),
        "sse_latency_max_ms": round(max(latencies), 2) if latencies else None,
        "page_weight_bytes": {**weights, "total": sum(weights.values())},
        "goal": {"page_weight_total_bytes": 150 * 1024, "sse_latency_ms": 2000},
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"deploy page: {args.windows} windows (interval {args.interval}) with a live event"
            f" stream each, {args.seconds:g}s, target {target_kind}"
        )
        print(
            f"  TTFB of /deploys/{{id}}   p50 {figures['ttfb_p50_ms']} ms,"
            f" p95 {figures['ttfb_p95_ms']} ms over {figures['page_requests']} requests"
            f" (whole page p50 {figures['page_total_p50_ms']} ms)"
        )
        print(
            f"  SSE round latency       p50 {figures['sse_latency_p50_ms']} ms,"
            f" p95 {figures['sse_latency_p95_ms']} ms, max {figures['sse_latency_max_ms']} ms"
            f" over {figures['round_events']} events (goal: within 2000 ms)"
        )
        w = figures["page_weight_bytes"]
        print(
            f"  page weight             {w['total']} bytes (html {w.get('html')},"
            f" css {w.get('page.css')}, js {w.get('page.js')}; goal ≤ 153600)"
        )
    return 0


async def _ids(base: str, n: int) -> list[str]:
    async with aiohttp.ClientSession() as http:
        ids: list[str] = []
        cursor = None
        while len(ids) < n:
            params = {"limit": "200", "state": "watching", **({"cursor": cursor} if cursor else {})}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(f"{base}/v1/deploys", params=params, headers=headers) as r:
                page = await r.json()
            ids += [item["id"] for item in page["items"]]
            cursor = page["next"]
            if not cursor:
                break
        return ids


if __name__ == "__main__":
    raise SystemExit(main())

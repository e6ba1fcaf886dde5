"""Failing soak: one `postflight run` of 12 environments failing every way, its heap
watched from beside it.

Not a test; it prints figures. Each environment is the example configuration's
`production` (its timings, checks, rules, provider baselines, rollback with 8 attempts,
alerts to `oncall`), its target one of: refused, hanging, answering 500, slow (3 s),
resetting mid-body. Sentry hangs, New Relic answers 500, Prometheus refuses; the alert
channels are a json:// sink answering 500, a json:// one refused and a mailto:// one
refused; the rollback receiver answers 500. Each environment gets a deploy every 5
minutes (staggered), so windows keep failing, rolling back and alerting.

The agent runs under a watcher (this file's `--watch` mode, in the agent's process but not
the agent's bookkeeping) that records every collection (generation, pause, objects
found unreachable) and, every 30 s, RSS, `gc.get_count()` and the objects the collector
tracks; at `--census` seconds it collects everything with `gc.DEBUG_SAVEALL` and names
what was unreachable (types, frames, functions, exceptions). The peers count what
reaches them. At the end: RSS and tracked objects over time, the growth over the second
half, the census, the agent's `postflight_gc_pause_seconds`, and the peers' counts.

    python bench/failing_soak.py [--seconds 1080] [--census 1050] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import copy
import json
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import HOST, free_port, stop_agents, wait_ready  # noqa: E402

TOKEN = "soak-api-token-0123456789"
KINDS = ("refused", "hang", "p500", "slow", "reset")
DEPLOY_EVERY_S = 300.0
GC_AND_ALERT_COUNTS = (
    "postflight_gc_pause_seconds_count",
    "postflight_gc_full_pause_seconds_count",
    "postflight_alerts_total",
)


# ------------------------------------------------------------- the watcher


def watch(out: Path, census_at: float | None, argv: list[str]) -> None:
    """Run `python -m agent ARGV` in this process with the collector watched."""
    import gc

    sink = out.open("a", buffering=1)
    t0 = time.time()
    started = [0.0]

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        row = {"t": round(time.time() - t0, 1), "gen": info["generation"]}
        row |= {"pause_s": round(time.perf_counter() - started[0], 4)}
        sink.write(json.dumps(row | {"collected": info["collected"]}) + "\n")

    def census() -> None:
        gc.set_debug(gc.DEBUG_SAVEALL)
        begun = time.perf_counter()
        gc.collect()
        pause = time.perf_counter() - begun
        garbage = list(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        kinds = collections.Counter(type(o).__qualname__ for o in garbage)
        names: collections.Counter[str] = collections.Counter()
        for o in garbage:
            if isinstance(o, types.FrameType):
                names[f"frame {o.f_code.co_qualname} ({Path(o.f_code.co_filename).name})"] += 1
            elif isinstance(o, types.FunctionType):
                names[f"function {o.__module__}.{o.__qualname__}"] += 1
            elif isinstance(o, BaseException):
                names[f"exception {type(o).__qualname__}"] += 1
            elif type(o).__module__ != "builtins":
                names[f"{type(o).__module__}.{type(o).__qualname__}"] += 1
        row: dict[str, object] = {
            "t": round(time.time() - t0, 1),
            "census": len(garbage),
            "pause_s": pause,
        }
        row |= {"types": kinds.most_common(20), "names": names.most_common(60)}
        sink.write(json.dumps(row) + "\n")

    def sample() -> None:
        pending = census_at
        while True:
            time.sleep(30)
            if pending is not None and time.time() - t0 >= pending:
                pending = None
                census()
            with open("/proc/self/status") as status:
                rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
            row: dict[str, object] = {
                "t": round(time.time() - t0, 1),
                "rss_mb": round(rss / 1024, 1),
            }
            row |= {"count": gc.get_count(), "tracked": len(gc.get_objects())}
            sink.write(json.dumps(row) + "\n")

    gc.callbacks.append(on_collection)
    threading.Thread(target=sample, daemon=True).start()
    sys.argv = ["agent", *argv]
    runpy.run_module("agent", run_name="__main__", alter_sys=True)


# ------------------------------------------------------------- the peers


async def peers(counts_path: Path) -> None:
    """Failing peers counting what reaches them; their ports as one JSON line."""
    from aiohttp import web

    counts: collections.Counter[str] = collections.Counter()

    async def fail(request: web.Request) -> web.Response:
        await request.read()
        counts[f"500 {request.path}"] += 1
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        counts[f"slow {request.path}"] += 1
        await asyncio.sleep(3)
        return web.json_response({"status": "ok"})

    async def site(handler: Any) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, HOST, 0)
        await tcp.start()
        return tcp.port

    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts["hung connections"] += 1
        held.append(writer)
        await asyncio.sleep(7200)

    class Reset(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if b"\r\n\r\n" in data:
                counts["reset"] += 1
                assert isinstance(self.transport, asyncio.Transport)
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                self.transport.abort()

    hanging = await asyncio.start_server(hold, HOST, 0)
    reset = await asyncio.get_running_loop().create_server(Reset, HOST, 0)
    ports = {"p500": await site(fail), "slow": await site(slow)}
    ports |= {"hang": hanging.sockets[0].getsockname()[1]}
    ports |= {"reset": reset.sockets[0].getsockname()[1], "refused": free_port()}
    print(json.dumps(ports), flush=True)
    while True:
        await asyncio.sleep(10)
        await asyncio.to_thread(counts_path.write_text, json.dumps(dict(counts)))


# ------------------------------------------------------------- the soak


def configuration(out: Path, ports: dict[str, int], agent_port: int) -> dict[str, Any]:
    import yaml

    example = yaml.safe_load((ROOT / "config" / "postflight.example.yaml").read_text())
    environments = {}
    for i in range(12):
        kind = KINDS[i % len(KINDS)]
        env = copy.deepcopy(example["environments"]["production"])
        env["base_url"] = f"http://{HOST}:{ports[kind]}"
        env["rollback"] = {
            "url": f"http://{HOST}:{ports['p500']}/rollback",
            "secret": "soak-rollback-secret",
            "max_attempts": 8,
        }
        environments[f"env{i:02d}-{kind}"] = env
    mail = "?from=postflight@example.com&to=oncall@example.com"
    return {
        "server": {"listen": f"{HOST}:{agent_port}", "api_tokens": [TOKEN]},
        "store": {"url": f"sqlite:///{out / 'postflight.db'}"},
        "providers": {
            "sentry": {
                "base_url": f"http://{HOST}:{ports['hang']}",
                "org": "acme",
                "token": "sntrys_soak-token-0123456789",
            },
            "newrelic": {
                "api_url": f"http://{HOST}:{ports['p500']}/graphql",
                "account_id": 1234567,
                "api_key": "NRAK-SOAKKEY0123456789",
            },
            "prometheus": {"url": f"http://{HOST}:{ports['refused']}"},
        },
        "alerting": {
            "channels": [
                {"url": f"json://{HOST}:{ports['p500']}/alerts", "tags": ["oncall"]},
                {"url": f"json://{HOST}:{ports['refused']}/alerts", "tags": ["oncall"]},
                {"url": f"mailto://{HOST}:{ports['refused']}{mail}", "tags": ["oncall"]},
            ]
        },
        "environments": environments,
    }


def register(agent_port: int, env: str, n: int) -> None:
    body = {"environment": env, "version": f"v{n}", "previous_version": f"v{n - 1}"}
    request = urllib.request.Request(
        f"http://{HOST}:{agent_port}/v1/deploys",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=60).read()
    except urllib.error.HTTPError as exc:
        print(f"registering {env}: HTTP {exc.code}", flush=True)


def soak(out: Path, seconds: float, census_at: float) -> None:
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peer = subprocess.Popen(
        [*me, "--peers", str(out / "peers.json")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert peer.stdout is not None
    ports = json.loads(peer.stdout.readline())
    agent_port = free_port()
    config = out / "postflight.yaml"
    config.write_text(yaml.safe_dump(configuration(out, ports, agent_port), sort_keys=False))
    watched = [*me, "--watch", str(out / "heap.jsonl"), "--census", str(census_at), "--"]
    with (out / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [*watched, "--log-format", "json", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        wait_ready(agent, agent_port, time.monotonic() + 60, "agent.log")
        start = time.monotonic()
        names = list(configuration(out, ports, agent_port)["environments"])
        due = {e: start + i * DEPLOY_EVERY_S / len(names) for i, e in enumerate(names)}
        deploys = dict.fromkeys(names, 1)
        while time.monotonic() - start < seconds:
            for name in names:
                if time.monotonic() >= due[name]:
                    deploys[name] += 1
                    register(agent_port, name, deploys[name])
                    due[name] += DEPLOY_EVERY_S
            time.sleep(1)
        with urllib.request.urlopen(f"http://{HOST}:{agent_port}/metrics", timeout=30) as r:
            (out / "metrics.txt").write_bytes(r.read())
    finally:
        stop_agents([agent])
        time.sleep(11)  # the peers' last counts
        peer.terminate()
        peer.wait()
    report(out)


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return float("nan")
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "heap.jsonl").read_text().splitlines()]
    samples = [r for r in rows if "rss_mb" in r]
    print("   t s  RSS MB  tracked objects  gc.get_count()")
    for s in samples:
        print(f"{s['t']:6.0f} {s['rss_mb']:7.1f} {s['tracked']:16d}  {s['count']}")
    if samples:
        half = [s for s in samples if s["t"] >= samples[-1]["t"] / 2]
        growth = slope([(s["t"] / 3600, s["rss_mb"]) for s in half])
        tracked = slope([(s["t"] / 60, s["tracked"]) for s in half])
        print(f"RSS {samples[0]['rss_mb']} -> {samples[-1]['rss_mb']} MB; second half:")
        print(f"  RSS {growth:+.1f} MB/h, tracked objects {tracked:+.0f}/min")
    for c in (r for r in rows if "census" in r):
        rate = c["census"] / (c["t"] / 60)
        print(f"census at {c['t']:.0f} s: {c['census']} unreachable objects ({rate:.0f}/min)")
        print(f"  its full collection paused {c['pause_s']:.3f} s")
        print("  types: " + ", ".join(f"{k} {v}" for k, v in c["types"]))
        for name, count in c["names"][:30]:
            print(f"  {count:7d} {name}")
    collections_ = [r for r in rows if "gen" in r and r["t"] > 30]
    print("collections after 30 s (t, generation, pause, unreachable found):")
    for r in collections_:
        print(f"  {r['t']:7.0f} gen{r['gen']} {r['pause_s']:.3f} s {r['collected']}")
    metrics = out / "metrics.txt"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            if line.startswith(GC_AND_ALERT_COUNTS):
                print(f"  {line}")
    if (out / "peers.json").exists():
        print("peers:", (out / "peers.json").read_text())


def main() -> None:
    if "--watch" in sys.argv:
        at = sys.argv.index("--")
        options, argv = sys.argv[1:at], sys.argv[at + 1 :]
        census_at = float(options[options.index("--census") + 1])
        watch(Path(options[options.index("--watch") + 1]), census_at or None, argv)
        return
    if "--peers" in sys.argv:
        asyncio.run(peers(Path(sys.argv[sys.argv.index("--peers") + 1])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1080.0)
    parser.add_argument("--census", type=float, default=1050.0, help="0: none")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temp dir)")
    parser.add_argument("--report", type=Path, help="only print the report of a kept run")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="failing-soak-"))
    print(f"soak in {out}", flush=True)
    soak(out, args.seconds, args.census)


if __name__ == "__main__":
    main()

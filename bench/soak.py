"""Soak on the defaults: one `postflight run` of a dozen environments, windows opened
without pause, watched from outside for anything that grows or rounds that run late.

Not a test; it prints figures (`--json`: one object at the end). Each environment has
the example configuration's checks (`http` health, a `smoke` login flow, a `load` check
at 20/s for 10 s) and check rules, and everything else its defaults: `interval` 30 s,
`probes_per_round` 40, `background_interval` 30 s, the `sequential` policy, the store's
retention. Targets, the rollback receiver and a json:// alert sink are local aiohttp
servers in a process of their own (`--peers`), counting what reaches them. Each
environment opens a window after the previous ended: 30% bad deploys (the target answers
500 until a rollback reaches the receiver), 10% good ones rolled back by hand (the API),
5% cancelled, 5% superseded mid-window; meanwhile a dashboard scrapes `/metrics`, a page
client reads `/deploys/{id}` and follows each window's event stream (SSE).

The agent runs under a watcher (`--watch`, in its process, outside its bookkeeping) that
writes, every `--sample` seconds, its asyncio task count, RSS and where its anonymous
memory is (glibc malloc's heap in use and free but kept, the rest: pymalloc's arenas;
`allocators`), and, every `--census` seconds, after a full collection on its loop (one
pause of the agent), the count of live objects per type and of tasks per coroutine (that
collection frees what cycles kept for the agent's own rare ones: with a `--census` longer
than the run, RSS shows that too). From outside: open fds (`/proc`), the SQLite store's
bytes and rows per table, `postflight_round_overruns_total` and the stored rounds'
lateness against their slots (`deployed_at + k × interval`), and the same lateness as the
target saw it: each load run starts at its round's start, so the first `/api/feed`
request after a quiet second, time-stamped by the target, is a round's start
(`arrival_lag_ms_*`), and a slot of a window with no run arriving is a round passed over
(`arrival_slots_missed`).
At the end: start/end of each series, the growth over the second half, bytes per 1000
windows, and the object types that grew most between the first census after warm-up and
the last.

    python bench/soak.py [--seconds 1800] [--window 2m] [--interval 30s] [--retention 2m]
                         [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import ctypes
import gc
import json
import math
import os
import random
import runpy
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.durations import format_duration, parse_duration  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "soak-api-token-0123456789"
ENVIRONMENTS = 12
RUN_GAP_S = 1.0
"""A `/api/feed` request this long after the previous one starts a load run (20/s: 50 ms
apart within one)."""
HEARTBEAT_S = 0.05
TARGET_STALL_S = 0.25
"""The targets' loop this much later than its heartbeat is a stall of the target's own:
a request time-stamped during it may have waited in the socket, so its lateness is not
the agent's alone (a machine that starves the agent starves the targets too)."""
TABLES = (
    "windows",
    "rounds",
    "probe_summaries",
    "alerts",
    "deliveries",
    "rollbacks",
    "idempotency",
)


# ------------------------------------------------------------- the watcher


def census(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Live objects by type after a full collection (what cycles kept until the agent's
    rare collections is not growth), and `loop`'s tasks by coroutine (another loop's in
    the process are not the agent's)."""
    begun = time.perf_counter()
    gc.collect()
    pause = time.perf_counter() - begun
    kinds = collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
    coros: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks(loop):
        coro = task.get_coro()
        coros[getattr(coro, "__qualname__", type(coro).__qualname__)] += 1
    return {
        "objects": sum(kinds.values()),
        "census": dict(kinds.most_common(400)),
        "coros": dict(coros.most_common(40)),
        "collect_s": round(pause, 3),
    }


def census_on(loop: asyncio.AbstractEventLoop, timeout: float = 120.0) -> dict[str, Any]:
    """`census()` run on `loop`'s thread, between two of its callbacks. From the
    watcher's thread, the list `gc.get_objects()` returns held a reference to a tuple
    the agent was building from a generator (`tuple(x for …)`, resized as it grows,
    which only a tuple nobody else refers to may be): the agent stopped on `SystemError:
    bad argument to internal function` (a default soak's agent did, at its first census,
    building its checks)."""
    done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(census(loop))
        except BaseException as exc:  # said by the watcher, not the agent's loop
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return done.result(timeout)


def live_tasks() -> list[asyncio.Task[Any]] | None:
    """The agent's tasks not done (the set also holds finished ones until they are
    collected), read from another thread; None when the set kept changing meanwhile."""
    for _ in range(5):
        try:
            every = list(asyncio.tasks._all_tasks)  # type: ignore[attr-defined]
        except RuntimeError:  # the set changed while it was read
            continue
        return [task for task in every if not task.done()]
    return None


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The agent's event loop, from a task of it (None before it has one)."""
    live = live_tasks()
    return live[0].get_loop() if live else None


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 on): its malloc's heap, every arena summed."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def allocators() -> dict[str, float]:
    """Where the process's anonymous memory is, in MB: glibc malloc's heap in use
    (`heap_used_mb`: C libraries' and Python's blocks over 512 bytes) and free but kept
    (`heap_free_mb`: what its arenas cannot give back), its blocks mapped apart
    (`heap_mmap_mb`), and the rest of `anon_mb` (`outside_heap_mb`: pymalloc's arenas,
    where Python's small objects live, and the threads' stacks). RSS growing with
    `heap_free_mb` or `outside_heap_mb` while the census stays flat is the allocators
    keeping a peak, not objects kept. Only `anon_mb` where glibc is not the allocator."""
    with open("/proc/self/status") as status:
        anon_kb = next((int(x.split()[1]) for x in status if x.startswith("RssAnon:")), 0)
    out = {"anon_mb": round(anon_kb / 1024, 1)}
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return out
    mallinfo2.restype = _Mallinfo2
    heap = mallinfo2()
    mb = 1024 * 1024
    out["heap_used_mb"] = round(heap.uordblks / mb, 1)
    out["heap_free_mb"] = round(heap.fordblks / mb, 1)
    out["heap_mmap_mb"] = round(heap.hblkhd / mb, 1)
    out["outside_heap_mb"] = round(out["anon_mb"] - (heap.arena + heap.hblkhd) / mb, 1)
    return out


def watch(out: Path, sample_s: float, census_s: float, argv: list[str]) -> None:
    """Run `python -m agent ARGV` in this process, its tasks, RSS and heap sampled."""
    sink = out.open("a", buffering=1)
    t0 = time.time()

    def tasks() -> int:
        live = live_tasks()
        return -1 if live is None else len(live)

    def sample() -> None:
        next_census = 0.0
        while True:
            time.sleep(sample_s)
            t = time.time() - t0
            with open("/proc/self/status") as status:
                rss = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
            row: dict[str, Any] = {"t": round(t, 1), "rss_mb": round(rss / 1024, 1)}
            row["tasks"] = tasks()
            row |= allocators()
            if t >= next_census and (loop := running_loop()) is not None:
                next_census = t + census_s
                try:
                    row |= census_on(loop)
                except (RuntimeError, TimeoutError) as exc:  # the loop closed: stopping
                    row["census_error"] = repr(exc)
            sink.write(json.dumps(row) + "\n")

    threading.Thread(target=sample, daemon=True).start()
    sys.argv = ["agent", *argv]
    runpy.run_module("agent", run_name="__main__", alter_sys=True)


# ------------------------------------------------------------- the peers


async def peers(counts_path: Path) -> None:
    """Targets (one port per environment), a rollback receiver and an alert sink."""
    from aiohttp import web

    counts: collections.Counter[str] = collections.Counter()
    bad: set[int] = set()
    last_feed: dict[int, float] = {}
    runs_started: list[tuple[int, float]] = []  # (environment, wall time): a load run's first
    runs_path = counts_path.with_name("load_runs.jsonl")

    async def site(app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, HOST, 0)
        await tcp.start()
        return tcp.port

    def target(i: int) -> web.Application:
        async def health(request: web.Request) -> web.Response:
            counts["probes"] += 1
            if i in bad:
                return web.json_response({"status": "down"}, status=500)
            return web.json_response({"status": "ok"})

        async def login(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"token": f"t{i}"})

        async def feed(request: web.Request) -> web.Response:
            now = time.time()
            if now - last_feed.get(i, 0.0) > RUN_GAP_S:
                runs_started.append((i, now))
            last_feed[i] = now
            return await health(request)

        async def me(request: web.Request) -> web.Response:
            return web.json_response({"user": "smoke"}, status=500 if i in bad else 200)

        async def control(request: web.Request) -> web.Response:
            (bad.add if request.match_info["state"] == "bad" else bad.discard)(i)
            return web.json_response({"bad": i in bad})

        app = web.Application()
        app.router.add_get("/api/health", health)
        app.router.add_get("/api/feed", feed)
        app.router.add_post("/api/login", login)
        app.router.add_get("/api/me", me)
        app.router.add_post("/_control/{state}", control)
        return app

    async def rollback(request: web.Request) -> web.Response:
        body = await request.json()
        counts["rollbacks"] += 1
        deploy = body.get("deploy") or {}
        counts[f"rollback {deploy.get('id')}"] += 1
        env = str(deploy.get("environment", ""))
        if env.startswith("env"):
            bad.discard(int(env[3:]))
        return web.json_response({"ok": True})

    async def alert(request: web.Request) -> web.Response:
        await request.read()
        counts["alerts"] += 1
        return web.json_response({"ok": True})

    ports = [await site(target(i)) for i in range(ENVIRONMENTS)]
    receivers = web.Application()
    receivers.router.add_post("/rollback", rollback)
    receivers.router.add_post("/alerts", alert)
    print(json.dumps({"targets": ports, "receivers": await site(receivers)}), flush=True)
    stalls: list[tuple[float, float]] = []  # (from, to), wall time: this loop late to run

    async def heartbeat() -> None:
        """The target's own loop's stalls: a request it time-stamps then was read late."""
        while True:
            before = time.time()
            await asyncio.sleep(HEARTBEAT_S)
            if time.time() - before > HEARTBEAT_S + TARGET_STALL_S:
                stalls.append((before + HEARTBEAT_S, time.time()))

    beating = asyncio.create_task(heartbeat())
    while True:
        await asyncio.sleep(5)
        if beating.done():
            beating.result()  # a heartbeat that failed: say why
        totals = {k: v for k, v in counts.items() if not k.startswith("rollback ")}
        twice = sum(1 for k, v in counts.items() if k.startswith("rollback ") and v > 1)
        await asyncio.to_thread(counts_path.write_text, json.dumps(totals | {"twice": twice}))
        started, runs_started[:] = runs_started[:], []
        with runs_path.open("a") as sink:
            sink.writelines(json.dumps(run) + "\n" for run in started)
        stalled, stalls[:] = stalls[:], []
        with runs_path.with_name("target_stalls.jsonl").open("a") as sink:
            sink.writelines(json.dumps(stall) + "\n" for stall in stalled)


# ------------------------------------------------------------- the soak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def configuration(
    out: Path,
    ports: dict[str, Any],
    agent_port: int,
    window: float,
    interval: float,
    retention: float | None = None,
) -> str:
    """The example's environments with check rules only; the defaults everywhere else."""
    receivers = f"http://{HOST}:{ports['receivers']}"
    lines = [
        "server:",
        f"  listen: {HOST}:{agent_port}",
        f"  api_tokens: [{TOKEN}]",
        "store:",
        f"  url: sqlite:///{out / 'postflight.db'}",
        *([f"  retention: {{rounds: {format_duration(retention)}}}"] if retention else []),
        "alerting:",
        "  channels:",
        f"    - {{url: 'json://{HOST}:{ports['receivers']}/alerts', tags: [oncall]}}",
        "environments:",
    ]
    for i, port in enumerate(ports["targets"]):
        lines += [
            f"  env{i:02d}:",
            f"    base_url: http://{HOST}:{port}",
            f"    window: {format_duration(window)}",
            *([f"    interval: {format_duration(interval)}"] if interval != 30.0 else []),
            "    checks:",
            "      - name: api-health",
            "        type: http",
            "        path: /api/health",
            "        timeout: 2s",
            "        expect: {status: 200, max_latency: 500ms, json: {status: ok}}",
            "      - name: login-flow",
            "        type: smoke",
            "        steps:",
            "          - {name: login, method: POST, path: /api/login,"
            " json: {user: smoke, password: smoke}, expect: {status: 200},"
            " capture: {token: $.token}}",
            "          - {name: profile, method: GET, path: /api/me,"
            " headers: {Authorization: 'Bearer {token}'}, expect: {status: 200}}",
            "      - {name: feed-latency, type: load, path: /api/feed, rate: 20/s,"
            f" duration: {format_duration(min(10.0, interval / 3))}}}",
            "    rules:",
            "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}",
            "      - {name: health-latency, source: checks, check: api-health,"
            " metric: latency_p95, max: 300ms}",
            "      - {name: feed-p95, source: checks, check: feed-latency,"
            " metric: latency_p95, max_increase: 50%}",
            "    rollback:",
            f"      url: {receivers}/rollback",
            "      secret: soak-rollback-secret",
            "    alerts: {tags: [oncall]}",
        ]
    return "\n".join(lines) + "\n"


def call(port: int, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw


class Driver(threading.Thread):
    """One environment: a window after another, each good, bad, rolled back by hand,
    cancelled or superseded; a page and an event stream read for each."""

    def __init__(self, i: int, agent_port: int, target_port: int, seed: int) -> None:
        super().__init__(daemon=True)
        self.i, self.agent_port, self.target_port = i, agent_port, target_port
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    def control(self, state: str) -> None:
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://{HOST}:{self.target_port}/_control/{state}", method="POST"
            ),
            timeout=10,
        ).read()

    def stream(self, deploy_id: str) -> None:
        try:
            request = urllib.request.Request(
                f"http://{HOST}:{self.agent_port}/v1/deploys/{deploy_id}/events",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            with urllib.request.urlopen(request, timeout=600) as response:
                for _ in response:
                    if self.stopping.is_set():
                        return
        except OSError as exc:
            self.errors[f"sse {type(exc).__name__}"] += 1

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            roll = self.rng.random()
            kind = (
                "bad"
                if roll < 0.3
                else "manual"
                if roll < 0.4
                else "cancel"
                if roll < 0.45
                else "supersede"
                if roll < 0.5
                else "good"
            )
            self.kinds[kind] += 1
            try:
                self.control("bad" if kind == "bad" else "good")
                body = {"environment": f"env{self.i:02d}", "version": f"v{n}"}
                body["previous_version"] = f"v{n - 1}"
                key = {"Idempotency-Key": f"env{self.i}-{n}"}
                deploy = self.register(body, key)
                threading.Thread(target=self.stream, args=(deploy["id"],), daemon=True).start()
                self.window(deploy, kind)
            except (OSError, ValueError) as exc:
                self.errors[type(exc).__name__] += 1
                self.stopping.wait(5)

    def register(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        request = urllib.request.Request(
            f"http://{HOST}:{self.agent_port}/v1/deploys",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            | headers,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def window(self, deploy: dict[str, Any], kind: str) -> None:
        path = f"/v1/deploys/{deploy['id']}"
        acted = False
        started = time.monotonic()
        while not self.stopping.wait(self.rng.uniform(3, 8)):
            state = call(self.agent_port, "GET", path)
            call(self.agent_port, "GET", f"/deploys/{deploy['id']}")  # the page
            if state["state"] != "watching":
                return
            elapsed = time.monotonic() - started
            if not acted and elapsed > 40:
                acted = True
                try:
                    if kind == "manual":
                        call(self.agent_port, "POST", f"{path}/rollback", {"reason": "soak"})
                    elif kind == "cancel":
                        call(self.agent_port, "POST", f"{path}/cancel", {})
                    elif kind == "supersede":
                        return
                except urllib.error.HTTPError as exc:
                    self.errors[f"{kind} {exc.code}"] += 1


def scrape(port: int) -> str:
    request = urllib.request.Request(f"http://{HOST}:{port}/metrics")
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode())


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rpartition(" ")[2])
    return total


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def store_figures(db_path: Path) -> dict[str, Any]:
    size = sum(
        p.stat().st_size for p in (db_path, db_path.with_name(db_path.name + "-wal")) if p.exists()
    )
    out: dict[str, Any] = {"db_bytes": size}
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            for table in TABLES:
                out[table] = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            out["alert_payload_bytes"] = db.execute(
                "SELECT coalesce(sum(length(payload)), 0) FROM alerts"
            ).fetchone()[0]
            out["pages"] = db.execute("PRAGMA page_count").fetchone()[0]
            out["free_pages"] = db.execute("PRAGMA freelist_count").fetchone()[0]
    except sqlite3.Error as exc:
        out["error"] = str(exc)
    return out


def read_lags(
    db_path: Path, since: float, into: dict[tuple[str, int], tuple[float, int, float]]
) -> None:
    """Each stored round started since `since` not read yet: its start, slot and lag behind
    its slot (`deployed_at + k × interval`, as its summary says). Read at every sample, so
    that rounds a short `--retention` deletes are counted too."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            rows = db.execute(
                "SELECT window_id, number, started_at, summary FROM rounds WHERE started_at >= ?",
                (since,),
            ).fetchall()
    except sqlite3.Error:
        return
    for window_id, number, started, summary in rows:
        if (window_id, number) not in into:
            timing = json.loads(summary)
            into[window_id, number] = (started, timing.get("slot", -1), timing["lag_s"] * 1e3)


def lateness(lags: dict[tuple[str, int], tuple[float, int, float]]) -> dict[str, Any]:
    """The rounds' lags by start, the first round apart (it is due when the deploy is
    registered, so it also waits for the registration and the claim)."""
    first: list[tuple[float, float]] = []
    later: list[tuple[float, float]] = []
    for started, slot, lag in sorted(lags.values()):
        (first if slot == 0 else later).append((started, lag))
    return {"rounds": len(lags), "first": first, "later": later}


def arrival_lateness(out: Path, until: float) -> dict[str, Any]:
    """Each window's rounds as its target saw them start (a load run's first request, the
    target's clock), against their slots (`deployed_at + k × interval`) up to the window's
    end (or `until`): the lags of those that arrived, the first slot apart (it also waits
    for the registration and the claim), and the slots no run arrived in."""
    runs: dict[str, list[float]] = collections.defaultdict(list)
    path = out / "load_runs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        i, at = json.loads(line)
        runs[f"env{i:02d}"].append(at)
    path = out / "target_stalls.jsonl"
    stalls = [json.loads(x) for x in (path.read_text().splitlines() if path.exists() else [])]
    with sqlite3.connect(f"file:{out / 'postflight.db'}?mode=ro", uri=True, timeout=10) as db:
        windows = db.execute(
            "SELECT environment, deployed_at, coalesce(ended_at, ends_at), ends_at FROM windows"
        ).fetchall()
    interval = {env: float(i) for env, i in _intervals(out).items()}
    first: list[float] = []
    later: list[float] = []
    target_stalled: list[float] = []
    missed = due = 0
    for environment, deployed_at, ended_at, ends_at in windows:
        every = interval[environment]
        end = min(ended_at, ends_at, until) - 1.0  # a slot starting later: not due yet
        slots = max(0, math.ceil((end - deployed_at) / every))
        arrived: set[int] = set()
        for at in runs.get(environment, []):
            if deployed_at - 0.5 <= at < end + every:
                slot = max(0, math.floor((at - deployed_at) / every))
                if slot < slots and slot not in arrived:
                    arrived.add(slot)
                    lag_ms = max(0.0, at - (deployed_at + slot * every)) * 1e3
                    if any(a <= at <= b + TARGET_STALL_S for a, b in stalls):
                        target_stalled.append(lag_ms)  # the target's time, maybe not the agent's
                        continue
                    (first if slot == 0 else later).append(lag_ms)
        due += slots
        missed += slots - len(arrived)
    return {
        "due": due,
        "missed": missed,
        "first": first,
        "later": later,
        "in_target_stall": target_stalled,
        "target_stalls": len(stalls),
        "target_stall_max_s": max((b - a for a, b in stalls), default=0.0),
    }


def _intervals(out: Path) -> dict[str, float]:
    """Each environment's interval, from the configuration the agent ran."""
    interval, found, env = 30.0, {}, ""
    for line in (out / "postflight.yaml").read_text().splitlines():
        if line.startswith("  env") and line.endswith(":"):
            env = line.strip()[:-1]
            found[env] = interval
        elif line.startswith("    interval:") and env:
            found[env] = parse_duration(line.split(":", 1)[1].strip())
    return found


def table_bytes(db_path: Path) -> dict[str, int]:
    """Bytes stored per table and its indexes (the cells' payload in SQLite's `dbstat`: what
    a deleted row or a forgotten column frees, though the file keeps its pages), at the end."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10) as db:
            found = db.execute(
                "SELECT coalesce(m.tbl_name, d.name), sum(d.payload) FROM dbstat d"
                " LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
    except sqlite3.Error:
        return {}
    return {name: int(size) for name, size in found}


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return math.nan
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den * 3600 if den else math.nan


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def soak(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SENTRY_DSN", None)
    env.pop("NEW_RELIC_LICENSE_KEY", None)
    peer = subprocess.Popen(
        [*me, "--peers", str(out / "peers.json")], stdout=subprocess.PIPE, text=True, env=env
    )
    assert peer.stdout is not None
    ports = json.loads(peer.stdout.readline())
    agent_port = free_port()
    config = out / "postflight.yaml"
    config.write_text(
        configuration(out, ports, agent_port, args.window, args.interval, args.retention)
    )
    heap = out / "heap.jsonl"
    watched = [*me, "--watch", str(heap), str(args.sample), str(args.census), "--"]
    with (out / "agent.log").open("wb") as log:
        agent = subprocess.Popen(
            [*watched, "--log-format", "json", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    drivers: list[Driver] = []
    samples: list[dict[str, Any]] = []
    lags: dict[tuple[str, int], tuple[float, int, float]] = {}
    t0 = time.time()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{agent_port}/readyz", timeout=1):
                    break
            except OSError:
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the agent did not start: see {out}/agent.log") from None
                time.sleep(0.2)
        t0 = time.time()
        drivers = [Driver(i, agent_port, port, seed=i) for i, port in enumerate(ports["targets"])]
        for d in drivers:
            d.start()
            time.sleep(args.interval / ENVIRONMENTS)
        while time.time() - t0 < args.seconds:
            time.sleep(args.sample)
            text = scrape(agent_port)
            row = {"t": round(time.time() - t0, 1), "fds": fds(agent.pid)}
            row["overruns"] = metric_sum(text, "postflight_round_overruns_total")
            row["metrics_bytes"] = len(text)
            row["metrics_series"] = sum(1 for x in text.splitlines() if x[:1] not in ("#", ""))
            row |= store_figures(out / "postflight.db")
            samples.append(row)
            read_lags(out / "postflight.db", t0, lags)
            if not args.json:
                print(json.dumps(row), flush=True)
    finally:
        until = time.time()
        for d in drivers:
            d.stopping.set()
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
        time.sleep(6)
        peer.terminate()
        peer.wait()
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    read_lags(out / "postflight.db", t0, lags)
    late = lateness(lags)
    return report(out, samples, late, drivers, args, until)


def report(
    out: Path,
    samples: list[dict[str, Any]],
    late: dict[str, Any],
    drivers: list[Driver],
    args: argparse.Namespace,
    until: float,
) -> dict[str, Any]:
    """The figures; `until`: when the soak stopped watching (wall clock), so the slots of
    windows still open after it are not counted as due."""
    heap = [json.loads(x) for x in (out / "heap.jsonl").read_text().splitlines()]
    half = args.seconds / 2
    first, last = samples[0], samples[-1]
    r: dict[str, Any] = {"seconds": args.seconds, "window_s": args.window}
    r["interval_s"] = args.interval
    r["rss_mb"] = [heap[0]["rss_mb"], heap[-1]["rss_mb"]]
    r["rss_mb_per_h_2nd_half"] = round(
        slope_per_hour([(h["t"], h["rss_mb"]) for h in heap if h["t"] >= half]), 1
    )
    for figure in ("anon_mb", "heap_used_mb", "heap_free_mb", "outside_heap_mb"):
        if figure in heap[0] and figure in heap[-1]:  # where the split: RSS kept or grown
            r[figure] = [heap[0][figure], heap[-1][figure]]
            r[f"{figure}_per_h_2nd_half"] = round(
                slope_per_hour([(h["t"], h[figure]) for h in heap if h["t"] >= half]), 1
            )
    r["tasks"] = [heap[0]["tasks"], heap[-1]["tasks"], max(h["tasks"] for h in heap)]
    r["fds"] = [first["fds"], last["fds"], max(s["fds"] for s in samples)]
    censuses = [h for h in heap if "census" in h]
    r["objects"] = [c["objects"] for c in censuses]
    r["objects_per_h_2nd_half"] = (
        round(slope_per_hour([(c["t"], c["objects"]) for c in censuses if c["t"] >= half]))
        if len([c for c in censuses if c["t"] >= half]) >= 2
        else None
    )
    if len(censuses) >= 3:
        a, b = censuses[1], censuses[-1]  # after warm-up, the last
        grew = {k: b["census"].get(k, 0) - a["census"].get(k, 0) for k in b["census"]}
        r["objects_grew"] = dict(sorted(grew.items(), key=lambda kv: -kv[1])[:25])
        r["objects_grew_span_s"] = [a["t"], b["t"]]
    windows = last.get("windows", 0)
    r["windows"] = windows
    r["db_bytes"] = [first["db_bytes"], last["db_bytes"]]
    r["rows_end"] = {t: last.get(t) for t in TABLES}
    if windows - first.get("windows", 0) > 0:
        per = 1000 / (windows - first.get("windows", 0))
        r["db_bytes_per_1000_windows"] = round((last["db_bytes"] - first["db_bytes"]) * per)
    r["overruns"] = last["overruns"]
    r["metrics_series"] = [first["metrics_series"], last["metrics_series"]]
    r["rounds"] = late["rounds"]
    for part in ("first", "later"):
        lags = late[part]
        t0 = lags[0][0] if lags else 0.0
        tenth = args.seconds / 10
        by_tenth = [
            [lag for s, lag in lags if k * tenth <= s - t0 < (k + 1) * tenth] for k in range(10)
        ]
        r[f"lag_ms_{part}_rounds_p50_p99_max"] = [
            round(percentile([x for _, x in lags], q), 1) for q in (0.5, 0.99, 1.0)
        ]
        r[f"lag_ms_{part}_rounds_p99_by_tenth"] = [
            round(percentile(t, 0.99), 1) if t else None for t in by_tenth
        ]
    r["late_past_next_slot"] = sum(
        1 for part in ("first", "later") for _, x in late[part] if x > args.interval * 1000
    )
    seen = arrival_lateness(out, until)
    r["arrival_slots_due"], r["arrival_slots_missed"] = seen["due"], seen["missed"]
    for part in ("first", "later", "in_target_stall"):
        r[f"arrival_lag_ms_{part}_rounds_p50_p99_max"] = [
            round(percentile(seen[part], q), 1) if seen[part] else None for q in (0.5, 0.99, 1.0)
        ]
    r["target_stalls"] = seen["target_stalls"]
    r["target_stall_max_s"] = round(seen["target_stall_max_s"], 2)
    sizes = table_bytes(out / "postflight.db")
    r["table_bytes_end"] = sizes
    if windows:
        kept = ("windows", "alerts", "rollbacks", "deliveries", "idempotency")
        r["kept_bytes_per_1000_windows"] = {
            t: round(sizes.get(t, 0) * 1000 / windows) for t in kept
        }
    kinds: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    for d in drivers:
        kinds.update(d.kinds)
        errors.update(d.errors)
    r["deploys"], r["driver_errors"] = dict(kinds), dict(errors)
    if (out / "peers.json").exists():
        r["peers"] = json.loads((out / "peers.json").read_text())
    return r


def main() -> None:
    if "--watch" in sys.argv:
        at = sys.argv.index("--")
        path, sample_s, census_s = sys.argv[sys.argv.index("--watch") + 1 : at]
        watch(Path(path), float(sample_s), float(census_s), sys.argv[at + 1 :])
        return
    if "--peers" in sys.argv:
        asyncio.run(peers(Path(sys.argv[sys.argv.index("--peers") + 1])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--window", type=parse_duration, default=120.0)
    parser.add_argument("--interval", type=parse_duration, default=30.0)
    parser.add_argument(
        "--retention",
        type=parse_duration,
        help="store.retention.rounds (default: the default, 7d): short, the run shows what"
        " stays for good",
    )
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--census", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="soak-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the agent and peers
    print(f"soak in {args.out}", flush=True)
    result = soak(args)
    print(json.dumps(result, indent=None if args.json else 1))


if __name__ == "__main__":
    main()

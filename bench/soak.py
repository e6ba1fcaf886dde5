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

`--targets good,errors_x5,latency_x2,bursty_aa` (cycled over `--environments`) runs
deploys as a pipeline does instead: each registered when the previous window ended, the
target (20 ms, 2% errors) regressed as its kind says until the rollback reaches the
receiver; each window's verdict is kept and set against its kind (a good or A/A deploy
rolled back, a regression passed: wrong). `--store postgresql --replicas 2` runs the
agents on one throwaway PostgreSQL (`tests/pg.py`), the drivers spread over them; RSS
(`/proc`, as `ps`), fds and overruns are every replica's. Every rollback and alert that
reaches the receivers is kept (`received.jsonl`): one sent twice shows as a duplicate.
Without `--json` a table of the main figures ends the output.

    python bench/soak.py [--seconds 1800] [--window 2m] [--interval 30s] [--retention 2m]
                         [--out DIR] [--json]
    python bench/soak.py --window 15m --pre 240 --seconds 2100 \
        --targets good,errors_x5,latency_x2,bursty_aa [--store postgresql --replicas 2]
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
import re
import runpy
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import free_port, spawn_env, stop_agents, wait_ready  # noqa: E402
from common.durations import format_duration, parse_duration  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "soak-api-token-0123456789"
ENVIRONMENTS = 12
KINDS = ("churn", "good", "errors_x5", "latency_x2", "bursty_aa")
"""What an environment's deploys do (`--targets`, cycled over the environments):
`churn`, a mix of bad deploys (500 until rolled back), manual rollbacks, cancels and
superseded windows on a target answering at once; the others a target of `BASE_LATENCY_S`
and `BASE_ERRORS`, each deploy changing nothing (`good`; `bursty_aa`, its errors in
bursts), five times the errors (`errors_x5`) or twice the latency (`latency_x2`) until
its rollback reaches the receiver or its window ends."""
EXPECTED = {"good": "passed", "bursty_aa": "passed", "errors_x5": "rolled_back"}
EXPECTED["latency_x2"] = "rolled_back"
BASE_ERRORS = 0.02
BASE_LATENCY_S = 0.02
BURST_SLOT_S = 0.5
BURST_P = 0.1
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


async def peers(counts_path: Path, kinds: list[str]) -> None:
    """Targets (one port per environment, each of its kind), a rollback receiver and an
    alert sink; every rollback and alert that reaches them is kept (`received.jsonl`)."""
    from aiohttp import web

    counts: collections.Counter[str] = collections.Counter()
    told: list[dict[str, Any]] = []
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

    rng = random.Random(0)
    bad_slots: dict[tuple[int, int], bool] = {}

    def fails(i: int) -> bool:
        """A request of environment `i` failing: always while a `churn` deploy is bad;
        else at its kind's rate (`errors_x5` five times the base while deployed), in
        bursts for `bursty_aa` (a `BURST_SLOT_S` stretch bad with probability
        `BURST_P`, then `BURST_P`-times-fewer stretches failing more, same mean)."""
        kind = kinds[i]
        if kind == "churn":
            return i in bad
        rate = BASE_ERRORS * (5 if kind == "errors_x5" and i in bad else 1)
        if kind != "bursty_aa":
            return rng.random() < rate
        slot = (i, int(time.monotonic() / BURST_SLOT_S))
        if slot not in bad_slots:
            bad_slots[slot] = rng.random() < BURST_P
        return bad_slots[slot] and rng.random() < rate / BURST_P

    async def served(i: int) -> bool:
        """Wait the target's latency (none for `churn`), then whether this request fails."""
        if kinds[i] != "churn":
            slow = 2 if kinds[i] == "latency_x2" and i in bad else 1
            await asyncio.sleep(slow * BASE_LATENCY_S * math.exp(0.3 * rng.gauss(0.0, 1.0)))
        failed = fails(i)
        counts[f"served {i}"] += 1
        counts[f"failed {i}"] += failed
        return failed

    def target(i: int) -> web.Application:
        async def health(request: web.Request) -> web.Response:
            counts["probes"] += 1
            if await served(i):
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
            return web.json_response({"user": "smoke"}, status=500 if await served(i) else 200)

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
        told.append({"at": time.time(), "rollback": deploy.get("id")})
        env = str(deploy.get("environment", ""))
        if env.startswith("env"):
            bad.discard(int(env[3:]))
        return web.json_response({"ok": True})

    async def alert(request: web.Request) -> web.Response:
        body = await request.json()
        counts["alerts"] += 1
        told.append({"at": time.time(), "title": body.get("title"), "message": body.get("message")})
        return web.json_response({"ok": True})

    ports = [await site(target(i)) for i in range(len(kinds))]
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
        arrived, told[:] = told[:], []
        with runs_path.with_name("received.jsonl").open("a") as sink:
            sink.writelines(json.dumps(x) + "\n" for x in arrived)
        twice = sum(1 for k, v in counts.items() if k.startswith("rollback ") and v > 1)
        await asyncio.to_thread(counts_path.write_text, json.dumps(totals | {"twice": twice}))
        started, runs_started[:] = runs_started[:], []
        with runs_path.open("a") as sink:
            sink.writelines(json.dumps(run) + "\n" for run in started)
        stalled, stalls[:] = stalls[:], []
        with runs_path.with_name("target_stalls.jsonl").open("a") as sink:
            sink.writelines(json.dumps(stall) + "\n" for stall in stalled)


# ------------------------------------------------------------- the soak


def configuration(
    store_url: str,
    ports: dict[str, Any],
    window: float,
    interval: float,
    retention: float | None = None,
) -> str:
    """The example's environments with check rules only (its `lookback` 1h, the default);
    the defaults everywhere else. Each replica listens at `$POSTFLIGHT_LISTEN`."""
    receivers = f"http://{HOST}:{ports['receivers']}"
    lines = [
        "server:",
        "  listen: ${POSTFLIGHT_LISTEN}",
        f"  api_tokens: [{TOKEN}]",
        "store:",
        f"  url: {store_url}",
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
            "    lookback: 1h",
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

    def __init__(
        self, i: int, agent_port: int, target_port: int, seed: int, kind: str = "churn"
    ) -> None:
        super().__init__(daemon=True)
        self.i, self.agent_port, self.target_port = i, agent_port, target_port
        self.kind = kind
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.doing = "start"
        """The call under way (`calling`): an error is counted by it, so a soak tells an API
        call that timed out from the target's control endpoint (10 TimeoutErrors a SQLite
        soak could not place)."""
        self.failures: list[tuple[float, str, float]] = []
        """Each error: when (wall clock), its key in `errors`, how long its call had run."""
        self.since = time.time()
        self.verdicts: list[dict[str, Any]] = []
        """Each window of a kind other than `churn` that ended: its deploy, registration
        (wall clock), state and the rules' outcomes."""

        self.answers: list[tuple[float, str, float]] = []
        """Each API and page call answered: when it was asked (wall clock), what, seconds."""

    def calling(self, what: str) -> None:
        self.doing, self.since = what, time.time()

    def api(self, what: str, method: str, path: str, body: Any = None) -> Any:
        """`call` to the agent, its answer's time kept (`answers`)."""
        self.calling(what)
        answer = call(self.agent_port, method, path, body)
        self.answers.append((self.since, what, time.time() - self.since))
        return answer

    def failed(self, exc: Exception, prefix: str = "") -> None:
        key = f"{prefix}{type(exc).__name__} {self.doing}"
        self.errors[key] += 1
        self.failures.append((time.time(), key, round(time.time() - self.since, 1)))

    def control(self, state: str) -> None:
        self.calling("target control")
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
        if self.kind != "churn":
            self.deploys()
            return
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
                self.failed(exc)
                self.stopping.wait(5)

    def deploys(self) -> None:
        """Deploys back to back as a pipeline registers them (each when the previous
        window ended), the target regressed by this environment's kind meanwhile; each
        window's verdict kept."""
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                self.control("bad")
                body = {"environment": f"env{self.i:02d}", "version": f"v{n}"}
                body["previous_version"] = f"v{n - 1}"
                at = time.time()
                deploy = self.register(body, {"Idempotency-Key": f"env{self.i}-{n}"})
                self.kinds[self.kind] += 1
                threading.Thread(target=self.stream, args=(deploy["id"],), daemon=True).start()
                ended = self.ended(deploy["id"])
                self.control("good")
                if ended is not None:
                    rules = (ended.get("verdict") or {}).get("rules", [])
                    self.verdicts.append(
                        {
                            "id": deploy["id"],
                            "registered_at": at,
                            "state": ended["state"],
                            "rules": {r["name"]: r["outcome"] for r in rules},
                        }
                    )
                self.stopping.wait(1.0)
            except (OSError, ValueError) as exc:
                self.failed(exc)
                self.stopping.wait(5)

    def ended(self, deploy_id: str) -> dict[str, Any] | None:
        """The deploy once its window ended and its rollback, if any, is no longer
        pending (None: the soak stopped first); its page read meanwhile."""
        while not self.stopping.wait(self.rng.uniform(3, 8)):
            state = self.api("API GET /v1/deploys/{id}", "GET", f"/v1/deploys/{deploy_id}")
            self.api("page GET /deploys/{id}", "GET", f"/deploys/{deploy_id}")  # the page
            pending = (state.get("rollback") or {}).get("state") == "pending"
            if state["state"] not in ("watching", "scheduled") and not pending:
                return dict(state)
        return None

    def register(self, body: dict[str, Any], headers: dict[str, str]) -> Any:
        self.calling("API POST /v1/deploys")
        request = urllib.request.Request(
            f"http://{HOST}:{self.agent_port}/v1/deploys",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            | headers,
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        self.answers.append((self.since, "API POST /v1/deploys", time.time() - self.since))
        return answer

    def window(self, deploy: dict[str, Any], kind: str) -> None:
        path = f"/v1/deploys/{deploy['id']}"
        acted = False
        started = time.monotonic()
        while not self.stopping.wait(self.rng.uniform(3, 8)):
            state = self.api("API GET /v1/deploys/{id}", "GET", path)
            self.api("page GET /deploys/{id}", "GET", f"/deploys/{deploy['id']}")  # the page
            if state["state"] != "watching":
                return
            elapsed = time.monotonic() - started
            if not acted and elapsed > 40:
                acted = True
                self.calling(f"API POST {kind}")
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
        if line.startswith((name + "{", name + " ")):
            total += float(line.rpartition(" ")[2])
    return total


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class StoreReader:
    """The agent's store read from outside, as its tables are: SQLite's file (read-only)
    or PostgreSQL's schema (the `search_path` of its URL). Errors are `StoreUnread`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite") else None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.path is not None:
            try:
                with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10) as db:
                    return db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnread(str(exc)) from exc
        numbers = iter(range(1, 99))
        numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        return asyncio.run(self._pg_rows(numbered, params))

    async def _pg_rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import asyncpg

        base, _, query = self.url.partition("?")
        schema = dict(x.split("=", 1) for x in query.split("&") if x).get("search_path")
        try:
            conn = await asyncpg.connect(
                base, timeout=10, server_settings={"search_path": schema} if schema else None
            )
            try:
                return [tuple(r) for r in await conn.fetch(sql, *params)]
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreUnread(str(exc)) from exc

    def bytes(self) -> int:
        """The store's size: the file and its WAL, or the schema's relations."""
        if self.path is not None:
            wal = self.path.with_name(self.path.name + "-wal")
            return sum(p.stat().st_size for p in (self.path, wal) if p.exists())
        return int(sum(self.table_bytes().values()))

    def table_bytes(self) -> dict[str, int]:
        """Bytes stored per table and its indexes: SQLite's cells' payload (`dbstat`: what
        a deleted row or a forgotten column frees, though the file keeps its pages), or
        PostgreSQL's relations (`pg_total_relation_size`: its pages, dead rows included)."""
        sql = (
            "SELECT coalesce(m.tbl_name, d.name), sum(d.payload) FROM dbstat d"
            " LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1 ORDER BY 2 DESC"
            if self.path is not None
            else "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
            " ORDER BY 2 DESC"
        )
        try:
            return {str(name): int(size) for name, size in self.rows(sql)}
        except StoreUnread:
            return {}


class StoreUnread(Exception):
    """The store could not be read from outside (locked, gone, or the server down)."""


def store_figures(store: StoreReader) -> dict[str, Any]:
    out: dict[str, Any] = {"db_bytes": store.bytes()}
    try:
        for table in TABLES:
            out[table] = store.rows(f"SELECT count(*) FROM {table}")[0][0]
        out["alert_payload_bytes"] = store.rows(
            "SELECT coalesce(sum(length(payload)), 0) FROM alerts"
        )[0][0]
        if store.path is not None:
            out["pages"] = store.rows("PRAGMA page_count")[0][0]
            out["free_pages"] = store.rows("PRAGMA freelist_count")[0][0]
    except StoreUnread as exc:
        out["error"] = str(exc)
    return out


def read_lags(
    store: StoreReader, since: float, into: dict[tuple[str, int], tuple[float, int, float]]
) -> None:
    """Each stored round started since `since` not read yet: its start, slot and lag behind
    its slot (`deployed_at + k × interval`, as its summary says). Read at every sample, so
    that rounds a short `--retention` deletes are counted too."""
    try:
        rows = store.rows(
            "SELECT window_id, number, started_at, summary FROM rounds WHERE started_at >= ?",
            (since,),
        )
    except StoreUnread:
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


def arrival_lateness(out: Path, store: StoreReader, until: float) -> dict[str, Any]:
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
    windows = store.rows(
        "SELECT environment, deployed_at, coalesce(ended_at, ends_at), ends_at FROM windows"
    )
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
    return on_store(args, soak_on)


def on_store(
    args: argparse.Namespace, run: Callable[[argparse.Namespace, str], dict[str, Any]]
) -> dict[str, Any]:
    """`run(args, store_url)` on the store `--store` names: a SQLite file in `--out`, or a
    database of a PostgreSQL cluster started for the run (`bench/memory.py` too)."""
    out: Path = args.out
    if args.store != "postgresql":
        return run(args, f"sqlite:///{out / 'postflight.db'}")
    from tests.pg import running_cluster, server_bindir

    bindir = server_bindir()
    if bindir is None:
        raise SystemExit("--store postgresql: no PostgreSQL server binaries (see tests/pg.py)")
    with running_cluster(bindir) as cluster:
        return run(args, asyncio.run(cluster.create_database()))


def soak_on(args: argparse.Namespace, store_url: str) -> dict[str, Any]:
    out: Path = args.out
    store = StoreReader(store_url)
    kinds = [args.targets[i % len(args.targets)] for i in range(args.environments)]
    me = [sys.executable, str(Path(__file__).resolve())]
    env = spawn_env()
    peer = subprocess.Popen(
        [*me, "--peers", str(out / "peers.json"), ",".join(kinds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert peer.stdout is not None
    ports = json.loads(peer.stdout.readline())
    agent_ports = [free_port() for _ in range(args.replicas)]
    config = out / "postflight.yaml"
    config.write_text(configuration(store_url, ports, args.window, args.interval, args.retention))
    agents: list[subprocess.Popen[bytes]] = []
    for n, agent_port in enumerate(agent_ports):
        heap = out / ("heap.jsonl" if n == 0 else f"heap{n}.jsonl")
        watched = [*me, "--watch", str(heap), str(args.sample), str(args.census), "--"]
        with (out / ("agent.log" if n == 0 else f"agent{n}.log")).open("wb") as log:
            agents.append(
                subprocess.Popen(
                    [*watched, "--log-format", "json", "run", "--config", str(config)],
                    cwd=ROOT,
                    env=env | {"POSTFLIGHT_LISTEN": f"{HOST}:{agent_port}"},
                    stdout=log,
                    stderr=log,
                )
            )
    drivers: list[Driver] = []
    samples: list[dict[str, Any]] = []
    scraped: list[str] = []
    lags: dict[tuple[str, int], tuple[float, int, float]] = {}
    t0 = time.time()
    try:
        deadline = time.monotonic() + 60
        for agent, agent_port in zip(agents, agent_ports, strict=True):
            wait_ready(agent, agent_port, deadline, f"{out}/agent*.log")
        time.sleep(args.pre)  # the background runs' baseline before the first deploys
        t0 = time.time()
        drivers = [
            Driver(i, agent_ports[i % len(agent_ports)], port, seed=i, kind=kinds[i])
            for i, port in enumerate(ports["targets"])
        ]
        for d in drivers:
            d.start()
            time.sleep(args.interval / len(drivers))
        while time.time() - t0 < args.seconds:
            time.sleep(args.sample)
            row: dict[str, Any] = {"t": round(time.time() - t0, 1)}
            row["fds"] = sum(fds(agent.pid) for agent in agents)
            texts = [scrape(agent_port) for agent_port in agent_ports]
            scraped = texts
            row["overruns"] = sum(metric_sum(t, "postflight_round_overruns_total") for t in texts)
            row["metrics_bytes"] = len(texts[0])
            row["metrics_series"] = sum(1 for x in texts[0].splitlines() if x[:1] not in ("#", ""))
            row["rss_mb_each"] = [rss_mb(agent.pid) for agent in agents]
            row |= store_figures(store)
            samples.append(row)
            read_lags(store, t0, lags)
            if not args.json:
                print(json.dumps(row), flush=True)
    finally:
        until = time.time()
        for d in drivers:
            d.stopping.set()
        stop_agents(agents)
        time.sleep(6)
        peer.terminate()
        peer.wait()
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    read_lags(store, t0, lags)
    late = lateness(lags)
    r = report(out, store, samples, late, drivers, args, until)
    r |= store_calls(scraped)
    return r


def rss_mb(pid: int) -> float:
    """A process's resident set, from outside (`/proc`, as `ps` reads it)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            kb = next(int(x.split()[1]) for x in status if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return -1.0
    return round(kb / 1024, 1)


def report(
    out: Path,
    store: StoreReader,
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
    seen = arrival_lateness(out, store, until)
    r["arrival_slots_due"], r["arrival_slots_missed"] = seen["due"], seen["missed"]
    for part in ("first", "later", "in_target_stall"):
        r[f"arrival_lag_ms_{part}_rounds_p50_p99_max"] = [
            round(percentile(seen[part], q), 1) if seen[part] else None for q in (0.5, 0.99, 1.0)
        ]
    r["target_stalls"] = seen["target_stalls"]
    r["target_stall_max_s"] = round(seen["target_stall_max_s"], 2)
    sizes = store.table_bytes()
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
    r["driver_failures"] = [  # when (UTC, as the agent's log), what, how long it had run
        (time.strftime("%H:%M:%S", time.gmtime(at)), key, waited)
        for at, key, waited in sorted(f for d in drivers for f in d.failures)
    ]
    if (out / "peers.json").exists():
        r["peers"] = json.loads((out / "peers.json").read_text())
    each = [s["rss_mb_each"] for s in samples if "rss_mb_each" in s]
    if each:  # from outside, every replica
        r["rss_mb_outside"] = [[a, b] for a, b in zip(each[0], each[-1], strict=True)]
        r["rss_mb_outside_per_h_2nd_half"] = [
            round(
                slope_per_hour([(s["t"], s["rss_mb_each"][n]) for s in samples if s["t"] >= half]),
                1,
            )
            for n in range(len(each[0]))
        ]
    r |= received(out)
    r["verdicts"] = verdicts(drivers)
    answers = [x for d in drivers for x in d.answers]
    r["api_ms_p50_p99_max"] = [
        round(percentile([s * 1e3 for _, _, s in answers], q), 1) for q in (0.5, 0.99, 1.0)
    ]
    r["api_slowest"] = [  # when (UTC), what, seconds
        (time.strftime("%H:%M:%S", time.gmtime(at)), what, round(took, 2))
        for at, what, took in sorted(answers, key=lambda x: -x[2])[:5]
    ]
    return r


STORE_CALL = re.compile(r'^postflight_store_(\w+)_seconds_bucket\{le="([^"]+)"\} (\S+)$')


def store_calls(texts: list[str]) -> dict[str, Any]:
    """Each kind of store call's count and p99/max bound in seconds (the bucket's upper
    bound they fall in), every replica's summed, from the last scrape."""
    buckets: dict[str, dict[float, float]] = collections.defaultdict(dict)
    for text in texts:
        for line in text.splitlines():
            m = STORE_CALL.match(line)
            if m:
                bucket = buckets[m[1]]
                bucket[float(m[2])] = bucket.get(float(m[2]), 0.0) + float(m[3])
    out: dict[str, Any] = {}
    for kind, cumulative in buckets.items():
        bounds = sorted(cumulative)
        n = cumulative[math.inf]
        p99 = next((b for b in bounds if cumulative[b] >= 0.99 * n), math.inf) if n else None
        top = next((b for b in bounds if cumulative[b] >= n), math.inf) if n else None
        out[f"store_{kind}_calls_n_p99_max_s"] = [int(n), p99, top]
    return out


def received(out: Path) -> dict[str, Any]:
    """What reached the receivers: rollbacks (requests, deploys, deploys sent more than
    one) and alerts (requests, the same title and message more than once)."""
    path = out / "received.jsonl"
    arrived = [json.loads(x) for x in (path.read_text().splitlines() if path.exists() else [])]
    rollbacks = collections.Counter(x["rollback"] for x in arrived if "rollback" in x)
    alerts = collections.Counter((x["title"], x["message"]) for x in arrived if "title" in x)
    return {
        "rollbacks_received": sum(rollbacks.values()),
        "rollbacks_deploys": len(rollbacks),
        "rollbacks_duplicated": {k: v for k, v in rollbacks.items() if v > 1},
        "alerts_received": sum(alerts.values()),
        "alerts_duplicated": [[t, m[:200], v] for (t, m), v in alerts.items() if v > 1],
    }


def verdicts(drivers: list[Driver]) -> dict[str, Any]:
    """Per kind, the windows that ended by state, and those decided otherwise than the
    kind asks (`EXPECTED`; `inconclusive` is not a wrong decision, only not one)."""
    by_kind: dict[str, Any] = {}
    for d in drivers:
        if d.kind == "churn":
            continue
        row = by_kind.setdefault(d.kind, {"states": collections.Counter(), "wrong": []})
        for v in d.verdicts:
            row["states"][v["state"]] += 1
            wrong = v["state"] in ("passed", "rolled_back") and v["state"] != EXPECTED[d.kind]
            if wrong:
                row["wrong"].append(v)
    return {k: {"states": dict(v["states"]), "wrong": v["wrong"]} for k, v in by_kind.items()}


def table(r: dict[str, Any]) -> str:
    """The figures a reader checks first, one per row."""
    rows = [
        ("seconds, windows (store), rounds", [round(r["seconds"]), r["windows"], r["rounds"]]),
        ("round lag ms p50/p99/max, later rounds", r["lag_ms_later_rounds_p50_p99_max"]),
        ("round lag ms p50/p99/max, first rounds", r["lag_ms_first_rounds_p50_p99_max"]),
        ("rounds later than the next slot, overruns", [r["late_past_next_slot"], r["overruns"]]),
        ("API answers ms p50/p99/max", r["api_ms_p50_p99_max"]),
        ("at the targets: slots due, missed", [r["arrival_slots_due"], r["arrival_slots_missed"]]),
        ("RSS MB start/end (watched), per h 2nd half", [r["rss_mb"], r["rss_mb_per_h_2nd_half"]]),
        ("RSS MB per replica (ps) [start, end]", r.get("rss_mb_outside")),
        ("RSS MB per h 2nd half per replica (ps)", r.get("rss_mb_outside_per_h_2nd_half")),
        ("tasks start/end/max", r["tasks"]),
        ("open fds start/end/max, all replicas", r["fds"]),
        ("store bytes start/end", r["db_bytes"]),
        ("store bytes per 1000 windows", r.get("db_bytes_per_1000_windows")),
        (
            "rollbacks at the receiver: requests, deploys",
            [r["rollbacks_received"], r["rollbacks_deploys"]],
        ),
        ("deploys rolled back more than once", len(r["rollbacks_duplicated"])),
        (
            "alerts at the sink, sent more than once",
            [r["alerts_received"], len(r["alerts_duplicated"])],
        ),
    ]
    for kind, v in r["verdicts"].items():
        rows.append((f"verdicts {kind} (wrong)", [v["states"], len(v["wrong"])]))
    return "\n".join(["| figure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> None:
    if "--watch" in sys.argv:
        at = sys.argv.index("--")
        path, sample_s, census_s = sys.argv[sys.argv.index("--watch") + 1 : at]
        watch(Path(path), float(sample_s), float(census_s), sys.argv[at + 1 :])
        return
    if "--peers" in sys.argv:
        at = sys.argv.index("--peers")
        asyncio.run(peers(Path(sys.argv[at + 1]), sys.argv[at + 2].split(",")))
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
    parser.add_argument("--environments", type=int, default=ENVIRONMENTS)
    parser.add_argument(
        "--targets",
        type=lambda v: v.split(","),
        default=["churn"],
        help=f"what deploys do, cycled over the environments: of {','.join(KINDS)}",
    )
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="agents sharing the store")
    parser.add_argument(
        "--pre", type=float, default=0.0, help="seconds of background runs before the deploys"
    )
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--census", type=float, default=300.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="soak-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops the agent and peers
    print(f"soak in {args.out}", flush=True)
    if unknown := set(args.targets) - set(KINDS):
        parser.error(f"--targets: {', '.join(sorted(unknown))}: not one of {', '.join(KINDS)}")
    if args.replicas > 1 and args.store == "sqlite":
        parser.error("--replicas: more than one agent shares a store on --store postgresql")
    result = soak(args)
    print(json.dumps(result, indent=None if args.json else 1))
    if not args.json:
        print(table(result))


if __name__ == "__main__":
    main()

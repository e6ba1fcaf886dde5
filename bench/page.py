"""Deploy page benchmark: time to first byte of `GET /deploys/{id}` and the latency of
SSE `round` events (round stored → event received), with N windows running, plus the
page's weight (HTML and every asset it loads).

    python bench/page.py [--windows 200] [--seconds 75] [--interval 30s] [--json]
    python bench/page.py --store-reads [--clients 1,10,50] [--idle 12] [--as-page] [--json]

The agent runs in its own process (`serve` below: the daemon's `agent.app.serve` with
the configured store, wrapped only to note the wall-clock time each round is stored,
in a file this process reads). Every window gets an event stream open for the whole
run, so the figures are for N windows *and* N live pages. Defaults are a user's:
interval 30s, 10 probes per round, a 15m window; `--interval 1s` is the harsh variant.
The target is nginx when installed, else a small aiohttp server (see footprint.py).

`--store-reads` counts what the event streams of one deploy cost the store instead: the
SELECTs SQLite ran (its trace callback) while 1, 10 and 50 clients connect, sit idle,
and follow rounds and state changes, less those of the same writes with no client.
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
import aiosqlite

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.footprint import TOKEN, register, start_target  # noqa: E402
from tests.e2e.crash import _wait_ready  # noqa: E402

# the same token `register` (from footprint.py) sends


def write_config(workdir: Path, target_port: int, n: int, interval: str) -> Path:
    lines = [
        "server:",
        "  listen: 127.0.0.1:0",  # the port the agent takes as it binds (`listening_port`)
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
    """The daemon as `postflight run` builds it, noting when each round is stored, and its
    address once it listens in `LISTENING` beside the config (`listening_port`)."""
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
        await serve_app(
            settings,
            stop,
            on_listening=lambda base: Path(config).with_name(LISTENING).write_text(f"{base}\n"),
            store=NotingStore(store_from_url(settings.store.url)),
        )

    asyncio.run(main())


LISTENING = "listening"
"""The file `serve` writes its agent's address to (`http://127.0.0.1:PORT`) once it listens."""


def listening_port(workdir: Path, agent: subprocess.Popen[bytes], within: float = 30.0) -> int:
    """The port the agent in `workdir` took (its config's `listen: 127.0.0.1:0`), as it
    says once it listens: no other process can take it meanwhile, as one could a port
    chosen here by bind-read-close."""
    said = workdir / LISTENING
    deadline = time.monotonic() + within
    while not said.exists() or not said.read_text().endswith("\n"):  # written whole
        if agent.poll() is not None:
            raise RuntimeError(f"agent exited early with {agent.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"agent not listening within {within:g} s")
        time.sleep(0.05)
    return int(said.read_text().strip().rpartition(":")[2])


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
        "--store-reads",
        action="store_true",
        help="instead: count the store reads of 1, 10 and 50 streams of one deploy",
    )
    parser.add_argument("--clients", default="1,10,50", help="with --store-reads")
    parser.add_argument("--idle", type=float, default=12.0, help="with --store-reads (s)")
    parser.add_argument(
        "--as-page",
        action="store_true",
        help="with --store-reads: each client also fetches the page's live part per event",
    )
    parser.add_argument(
        "--serve", nargs=2, metavar=("CONFIG", "STORED_LOG"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    if args.store_reads:
        counts = [0, *(int(n) for n in args.clients.split(","))]
        results = asyncio.run(
            store_reads(counts, rounds=5, attempts=2, idle=args.idle, as_page=args.as_page)
        )
        if args.json:
            print(json.dumps(results))
        else:
            print_store_reads(results, args.idle, args.as_page)
        return 0
    with tempfile.TemporaryDirectory(prefix="postflight-page-") as tmp:
        workdir = Path(tmp)
        target, target_port, target_kind = start_target(workdir)
        config = write_config(workdir, target_port, args.windows, args.interval)
        stored_log = workdir / "stored.log"
        with (workdir / "agent.log").open("ab") as log:
            agent = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(config), str(stored_log)],
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        try:
            agent_port = listening_port(workdir, agent)
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


# --- store reads of the event streams (`--store-reads`) --------------------------------

READS_CONFIG = f"""\
server:
  listen: 127.0.0.1:8787
  api_tokens: [{TOKEN}]
environments:
  production:
    base_url: http://127.0.0.1:9
    checks:
      - {{name: health, type: http, path: /health}}
    rules:
      - {{name: errors, source: checks, metric: error_rate, max: 0.05}}
    rollback:
      url: http://127.0.0.1:9/rollback
      secret: bench-rollback-secret
"""
READS_WINDOW = "dep_01JDBENCHREADS00000000000A"


class Statements:
    """Every SQL statement the store's SQLite connections run (their trace callback, set
    on each connection the store opens): counted below the store, not by the stream."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def selects(self) -> int:
        return sum(1 for sql in self.seen if sql.lstrip().upper().startswith("SELECT"))

    def install(self) -> None:
        import agent.store.sqlite as sqlite_store

        connect = sqlite_store._connected

        async def traced(
            path: str, busy_timeout_s: float = sqlite_store.BUSY_TIMEOUT_MS / 1000
        ) -> aiosqlite.Connection:
            connection = await connect(path, busy_timeout_s)
            await connection.set_trace_callback(self.seen.append)
            return connection

        sqlite_store._connected = traced


async def _reads_with(
    clients: int, rounds: int, attempts: int, idle: float, as_page: bool
) -> dict[str, Any]:
    """One window watched by `clients` streams over HTTP, on the daemon's routes and store
    wrapper (`agent.web.routes.mount`, `agent.web.feed.feed_store`) and a real SQLite
    store; the writes the engine makes (rounds, the failed verdict with its rollback,
    attempts refused, then delivered) are made here one at a time, each once every
    client has the event of the one before. The SELECTs the store ran in each phase.
    `as_page`: each client also fetches the page's live part on each event, as the
    page's script does (`agent/web/static/page.js`)."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from agent.appkeys import SETTINGS, STORE
    from agent.records import DeliveryAttempt, DeployWindow, RollbackIntent, RoundRecord
    from agent.rollback.contract import rollback_intent
    from agent.settings_file import load_settings_text
    from agent.store.sqlite import SqliteStore
    from agent.web.feed import FEED, DeployFeed, feed_store
    from agent.web.routes import mount

    statements = STATEMENTS
    figures: dict[str, Any] = {"clients": clients}
    with tempfile.TemporaryDirectory(prefix="postflight-reads-") as tmp:
        raw = SqliteStore(Path(tmp) / "postflight.db")
        await raw.open()
        feed = DeployFeed()
        store = feed_store(raw, feed)
        app = web.Application()
        app[SETTINGS], app[FEED], app[STORE] = load_settings_text(READS_CONFIG), feed, store
        mount(app)
        now = time.time()
        window = DeployWindow(
            READS_WINDOW, "production", "v2", "v1", None, {}, "watching", now - 1, now + 600, now
        )
        await store.create_window(window)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = f"http://127.0.0.1:{server.port}/v1/deploys/{READS_WINDOW}/events"
        fragment = f"http://127.0.0.1:{server.port}/deploys/{READS_WINDOW}?fragment=1"
        seen: list[list[str]] = [[] for _ in range(clients)]
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
        ) as http:

            async def watch(mine: list[str]) -> None:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(url, headers=headers) as response:
                    assert response.status == 200, response.status
                    async for line in response.content:
                        if line.startswith(b"event:"):
                            if as_page:
                                async with http.get(fragment, headers=headers) as page:
                                    assert page.status == 200, page.status
                                    await page.read()
                            mine.append(line[6:].strip().decode())

            async def everyone_has(count: int) -> None:
                deadline = time.monotonic() + 20
                while any(len(mine) < count for mine in seen):
                    assert time.monotonic() < deadline, [len(m) for m in seen]
                    await asyncio.sleep(0.005)

            def phase(name: str, since: int) -> int:
                figures[name] = statements.selects() - since
                return statements.selects()

            mark = statements.selects()
            tasks = [asyncio.create_task(watch(mine)) for mine in seen]
            await everyone_has(1)
            mark = phase("connect", mark)
            await asyncio.sleep(idle)  # nothing happens: what the streams read meanwhile
            mark = phase("idle", mark)
            events = 1
            for number in range(1, rounds + 1):
                record = RoundRecord(READS_WINDOW, number, time.time(), {"decision": "continue"})
                await store.record_round(record, {"outcome": "pending"})
                events += 1
                await everyone_has(events)
            mark = phase("rounds", mark)
            intent = rollback_intent(window, "errors failed", [], time.time())
            verdict = {"outcome": "fail", "reason": "errors failed"}
            await store.finish_window(READS_WINDOW, "failed", verdict, time.time(), intent)
            events += 1
            await everyone_has(events)
            owner, changes, held = "bench", 1, None
            for attempt in range(1, attempts + 2):
                taken = await raw.take_rollback(
                    READS_WINDOW, owner, time.time(), time.time() + 60, held
                )
                assert taken is not None
                held = taken.fence
                begun = await store.begin_attempt(
                    READS_WINDOW, taken.fence, time.time(), time.time() + 60
                )
                assert begun == attempt
                events, changes = events + 1, changes + 1
                await everyone_has(events)
                delivered = attempt > attempts
                done = RollbackIntent(
                    READS_WINDOW,
                    "delivered" if delivered else "pending",
                    taken.body,
                    taken.requested_at,
                    attempts=attempt,  # the number begun
                    last_status=200 if delivered else 502 + attempt,  # each a change
                    lease_owner=owner,
                    lease_epoch=taken.lease_epoch,
                    finished_at=time.time() if delivered else None,
                )
                status = done.last_status
                tried = DeliveryAttempt(READS_WINDOW, number, time.time(), status, None, 0.01)
                assert await store.settle_rollback(done, tried)
                events, changes = events + 1, changes + 1
                await everyone_has(events)
            phase("changes", mark)
            figures["state_changes"] = changes
            async with asyncio.timeout(20):
                await asyncio.gather(*tasks)  # each stream ends with the window's end
            figures["events_per_client"] = sorted({len(mine) for mine in seen})
        await server.close()
        await raw.close()
    return figures


STATEMENTS = Statements()


async def store_reads(
    counts: list[int], rounds: int, attempts: int, idle: float, as_page: bool
) -> list[dict[str, Any]]:
    STATEMENTS.install()
    return [await _reads_with(clients, rounds, attempts, idle, as_page) for clients in counts]


def print_store_reads(results: list[dict[str, Any]], idle: float, as_page: bool) -> None:
    base = next(r for r in results if r["clients"] == 0)
    print(
        "event streams' store reads (SQLite trace: SELECTs the store ran, less those of"
        " the same writes with no client)"
        + (", each client fetching the page's live part on each event" if as_page else "")
    )
    for r in results:
        if r["clients"] == 0:
            continue
        changes = r["state_changes"]
        per_change = (r["changes"] - base["changes"]) / changes
        print(
            f"  {r['clients']:3d} clients: connect {r['connect'] - base['connect']:4d},"
            f" idle {idle:g}s {r['idle'] - base['idle']:4d},"
            f" rounds {r['rounds'] - base['rounds']:3d},"
            f" {changes} state changes {r['changes'] - base['changes']:4d}"
            f" ({per_change:.1f} a change); events per client {r['events_per_client']}"
        )


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

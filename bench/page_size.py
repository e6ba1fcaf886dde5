"""The deploy page of a big window: 50 checks, each with its rule (error rate and p95
latency, alternating), and 720 rounds stored (a 12 h window at 60 s). Prints the page's
size and time, its live part's (what every open page fetches again on each event), and
the stream's `round` event, per round.

    python bench/page_size.py [--checks 50] [--rounds 720] [--probes 40] [--json]

The rounds are real: a short window of the same environment is watched first by the
daemon's app against a local aiohttp target (2 rounds of 1 s), and its stored rounds
and verdict are copied, round after round, into a window of `--rounds` rounds, leased to
another replica (so this one only serves it). Then the daemon's app is started again on
that store and asked for the page as a browser would; one more round is stored (as the
replica watching it would) while an event stream is open. Its heap is the daemon's once
up (`agent.windows.heap.tune_collector`: what lives then frozen, the thresholds raised);
`POSTFLIGHT_GC_THRESHOLDS=off` for CPython's defaults and nothing frozen, `=700,10,10`
for CPython's thresholds with the freeze.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.api.runner import ApiRunner  # noqa: E402
from agent.app import api_runner, build_app  # noqa: E402
from agent.appkeys import METRICS, STORE  # noqa: E402
from agent.records import RoundRecord  # noqa: E402
from agent.settings_file import load_settings_text  # noqa: E402
from agent.windows.heap import tune_collector  # noqa: E402
from tests.e2e.crash import free_port  # noqa: E402

TOKEN = "bench-page-size-token-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
OTHER = "bench-other-replica"


def config(agent_port: int, target_port: int, db: Path, checks: int, probes: int) -> str:
    lines = [
        "server:",
        f"  listen: 127.0.0.1:{agent_port}",
        f"  api_tokens: [{TOKEN}]",
        "store:",
        f"  url: sqlite:///{db}",
        "environments:",
        "  big:",
        f"    base_url: http://127.0.0.1:{target_port}",
        "    window: 2s",
        "    interval: 1s",
        f"    probes_per_round: {probes}",
        "    checks:",
    ]
    lines += [
        f"      - {{name: c{i:02d}, type: http, path: /c/{i}, timeout: 2s}}" for i in range(checks)
    ]
    lines.append("    rules:")
    for i in range(checks):
        if i % 2:
            lines.append(
                f"      - {{name: r{i:02d}-latency, source: checks, check: c{i:02d},"
                " metric: latency_p95, max: 300ms, max_increase: 0.5}"
            )
        else:
            lines.append(
                f"      - {{name: r{i:02d}-errors, source: checks, check: c{i:02d},"
                " metric: error_rate, max: 0.05}"
            )
    return "\n".join(lines) + "\n"


async def start(text: str, port: int) -> tuple[web.Application, ApiRunner]:
    settings = load_settings_text(text, source="bench config")
    app = build_app(settings, poll_interval=0.1)
    runner = api_runner(app, app[METRICS], in_flight_s=2.0)  # the daemon's
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return app, runner


async def target() -> web.AppRunner:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/c/{n}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[float, int, bytes]:
    began = time.perf_counter()
    async with http.get(url, headers=BEARER) as r:
        body = await r.read()
        assert r.status == 200, (r.status, body[:300])
    return time.perf_counter() - began, len(body), body


async def wire_bytes(url: str, encoding: str) -> tuple[int, str]:
    """The page's bytes as they come over the wire asked with `Accept-Encoding: encoding`
    (not decoded), and the `Content-Encoding` it came in."""
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        headers = {**BEARER, "Accept-Encoding": encoding}
        async with raw.get(url, headers=headers) as r:
            body = await r.read()
            assert r.status == 200, r.status
            return len(body), r.headers.get("Content-Encoding", "identity")


async def heartbeat_gap(work: Any) -> tuple[float, Any]:
    """The longest gap of a 10 ms heartbeat on this loop (the agent's: its app is served
    here) while `work` is awaited, less the 10 ms: how long the loop was held."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def beat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(beat())
    await asyncio.sleep(0)
    try:
        result = await work
    finally:
        done.set()
        await task
    return round(max(gaps, default=0.0) - 0.01, 3), result


async def full_passes(work: Any) -> tuple[int, Any]:
    """How many full passes of the collector (generation 2) ran while `work` was awaited,
    in any thread: each holds the GIL, so the loop, for as long as it goes through every
    object it tracks (what the heartbeat's longest gap mostly is)."""
    passes = 0

    def counted(phase: str, info: dict[str, Any]) -> None:
        nonlocal passes
        if phase == "stop" and info["generation"] == 2:
            passes += 1

    gc.collect()  # this script's own set-up's debt (720 rounds written) paid before
    gc.callbacks.append(counted)
    try:
        result = await work
    finally:
        gc.callbacks.remove(counted)
    return passes, result


async def run(checks: int, rounds: int, probes: int, save: Path | None = None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="page-size-"))
    db = tmp / "postflight.db"
    tport, aport = free_port(), free_port()
    trunner = await target()
    await web.TCPSite(trunner, "127.0.0.1", tport).start()
    text = config(aport, tport, db, checks, probes)
    base = f"http://127.0.0.1:{aport}"

    # 1. a real short window of the environment: its rounds' and verdict's shapes
    app, runner = await start(text, aport)
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/v1/deploys", json={"environment": "big", "version": "v1"}, headers=BEARER
        ) as r:
            real = await r.json()
        for _ in range(600):
            async with http.get(f"{base}/v1/deploys/{real['id']}", headers=BEARER) as r:
                if (await r.json())["state"] not in ("watching", "scheduled"):
                    break
            await asyncio.sleep(0.1)
    store = app[STORE]
    ended = await store.get_window(real["id"])
    samples = await store.rounds(real["id"])
    assert ended is not None and samples, "the short window stored no round"
    await runner.cleanup()

    # 2. a window of `rounds` rounds, leased to another replica
    from agent.store import store_from_url

    big_store = store_from_url(f"sqlite:///{db}")
    await big_store.open()
    now = time.time()
    verdict = dict(ended.verdict or {}) | {"outcome": "pending"}
    big = dataclasses.replace(
        ended,
        id="dep_01JB1GPAGE0000000000000000",
        version="v2",
        state="watching",
        deployed_at=now - rounds * 60,
        ends_at=now + 120,
        created_at=now - rounds * 60,
        rounds=0,
        verdict=None,
        ended_at=None,
        lease_owner=None,
        lease_until=None,
        lease_epoch=0,
    )
    await big_store.create_window(big)
    claimed = await big_store.claim_windows(OTHER, now, 3600.0)
    fence = next(w.fence for w in claimed if w.id == big.id)
    for n in range(1, rounds + 1):
        summary = samples[(n - 1) % len(samples)].summary
        record = RoundRecord(big.id, n, big.deployed_at + (n - 1) * 60, summary)
        assert await big_store.record_round(record, verdict, fence)

    # 3. the daemon's app on that store, asked as a browser asks, its heap as `run` has it
    # once listening (start-up's objects frozen, the thresholds raised; none of it with
    # POSTFLIGHT_GC_THRESHOLDS=off, CPython's defaults)
    app, runner = await start(text, aport)
    tune_collector()
    out: dict[str, Any] = {"checks": checks, "rules": checks, "rounds": rounds, "probes": probes}
    gc.collect()
    out["gc_frozen"] = gc.get_freeze_count()  # never walked again
    out["gc_walked_by_a_full_pass"] = len(gc.get_objects())  # start-up's, unless frozen
    async with aiohttp.ClientSession() as http:
        page_url = f"{base}/deploys/{big.id}"
        first = heartbeat_gap(timed_get(http, page_url))
        out["gc_full_passes_first_page"], (out["loop_stall_first_page_s"], _) = await full_passes(
            first
        )
        times, size, body = [], 0, b""
        for _ in range(5):
            took, size, body = await timed_get(http, page_url)
            times.append(took)
        out["page_bytes"] = size
        if save is not None:
            await asyncio.to_thread(save.write_bytes, body)
        out["page_wire_bytes_identity"], _ = await wire_bytes(page_url, "identity")
        out["page_wire_bytes_gzip"], out["page_wire_encoding"] = await wire_bytes(
            page_url, "gzip, deflate, br"
        )
        out["page_s_median"] = round(statistics.median(times), 3)
        ftimes, fsize = [], 0
        for _ in range(5):
            took, fsize, fbody = await timed_get(http, f"{page_url}?fragment=1")
            ftimes.append(took)
        out["live_part_bytes"] = fsize
        # the same bytes gzipped whole (aiohttp's level): what the wire's size compares with
        out["live_part_gzipped_whole_bytes"] = len(gzip.compress(fbody, 6))
        out["live_part_wire_bytes_gzip"], _ = await wire_bytes(
            f"{page_url}?fragment=1", "gzip, deflate, br"
        )
        out["live_part_s_median"] = round(statistics.median(ftimes), 3)
        # a round stored, then every open page (10) fetches its live part at once
        n = len(await big_store.rounds(big.id))
        record = RoundRecord(big.id, n + 1, time.time(), samples[0].summary)
        assert await big_store.record_round(record, verdict, fence)
        batch = asyncio.gather(*(timed_get(http, f"{page_url}?fragment=1") for _ in range(10)))
        out["loop_stall_batch_of_10_s"], _ = await heartbeat_gap(batch)
        # the same round fetched again by the 10 (an alert's event): the CPU its answers
        # take, gzipped as a browser asks, this process's client unzipping them included
        cpu = time.process_time()
        await asyncio.gather(*(timed_get(http, f"{page_url}?fragment=1") for _ in range(10)))
        out["cpu_10_live_parts_same_round_s"] = round(time.process_time() - cpu, 3)
        out.update(await one_round(http, base, big.id, big_store, fence, samples, verdict))
        gap, took = await heartbeat_gap(reconnects(http, base, big.id, out.pop("last_id")))
        out["loop_stall_10_reconnects_s"], out["10_reconnects_s"] = gap, round(took, 3)
    await runner.cleanup()
    await big_store.close()
    await trunner.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)  # its store: 40 MB a run
    return out


async def one_round(
    http: aiohttp.ClientSession,
    base: str,
    window_id: str,
    store: Any,
    fence: Any,
    samples: list[RoundRecord],
    verdict: dict[str, Any],
) -> dict[str, Any]:
    """The stream's bytes for one more round stored, as the watching replica stores it."""
    url = f"{base}/v1/deploys/{window_id}/events"
    got: dict[str, Any] = {}
    last_id = ""
    async with http.get(url, headers=BEARER, timeout=aiohttp.ClientTimeout(total=60)) as r:
        event, data, stored = "", 0, False
        async for raw in r.content:
            line = raw.decode()
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                last_id = line[3:].strip()
            elif line.startswith("data:"):
                data += len(raw)
            elif line.strip() == "" and event:
                got[event] = got.get(event, 0) + data
                if event == "round":
                    got["last_id"] = last_id
                    break
                if not stored:  # the first `state` (a late joiner's): now one more round
                    stored = True
                    rounds = len(await store.rounds(window_id))
                    record = RoundRecord(window_id, rounds + 1, time.time(), samples[0].summary)
                    assert await store.record_round(record, verdict, fence)
                event, data = "", 0
    return {
        "stream_state_bytes": got.get("state", 0),
        "stream_round_bytes": got.get("round", 0),
        "last_id": got["last_id"],
    }


async def reconnects(http: aiohttp.ClientSession, base: str, window_id: str, last_id: str) -> float:
    """10 tabs reconnecting one after another (an EventSource's retry is spread), each
    with the id of the round before the last (`Last-Event-ID`), each kept open until all
    have their missing round: the seconds it took."""
    url = f"{base}/v1/deploys/{window_id}/events"
    rounds, rest = last_id.split(".", 1)
    resumed = {**BEARER, "Last-Event-ID": f"{int(rounds) - 1}.{rest}"}
    began = time.perf_counter()
    async with contextlib.AsyncExitStack() as tabs:
        for _ in range(10):
            r = await tabs.enter_async_context(http.get(url, headers=resumed))
            assert r.status == 200, r.status
            async for raw in r.content:
                if raw.startswith(b"event: round"):
                    break
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=720)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", type=Path, help="write the page's HTML there")
    args = parser.parse_args()
    out = asyncio.run(run(args.checks, args.rounds, args.probes, args.save))
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{out['checks']} checks and rules, {out['rounds']} rounds, {out['probes']} probes a round"
    )
    print(
        f"page: {out['page_bytes']:,} bytes; on the wire {out['page_wire_bytes_identity']:,}"
        f" asked as identity, {out['page_wire_bytes_gzip']:,} asked as a browser asks"
        f" ({out['page_wire_encoding']}); {out['page_s_median']} s (median of 5)"
    )
    print(
        f"live part (fetched again by every open page on each event): {out['live_part_bytes']:,}"
        f" bytes, {out['live_part_wire_bytes_gzip']:,} on the wire, {out['live_part_s_median']} s"
    )
    print(
        f"the agent's loop held (longest gap of a 10 ms heartbeat): the first page"
        f" {out['loop_stall_first_page_s']} s, 10 tabs' live parts after a round"
        f" {out['loop_stall_batch_of_10_s']} s, 10 tabs' streams reconnecting one round"
        f" behind {out['loop_stall_10_reconnects_s']} s (in {out['10_reconnects_s']} s)"
    )
    print(
        f"the collector's full passes (each holds the loop) while the first page was built:"
        f" {out['gc_full_passes_first_page']}; objects frozen at the start {out['gc_frozen']:,},"
        f" left for a full pass to walk {out['gc_walked_by_a_full_pass']:,}"
    )
    print(
        f"stream: the first state event {out['stream_state_bytes']:,} bytes,"
        f" a round event {out['stream_round_bytes']:,} bytes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

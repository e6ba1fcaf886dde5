"""Cyclic garbage per failure: what each failure path leaves for the collector.

Not a test; it prints figures. The daemon collects rarely (`agent/windows/heap.py`), so
what a failure leaves in reference cycles waits for a young collection, failure after
failure (a soak of 12 environments failing every way piled up hundreds of thousands of
objects, RSS +80 MB, a pause of seconds when the collection came). Each scenario runs
once to warm up, then N times with the collector off; then one collection with
`gc.DEBUG_SAVEALL` keeps what it found aside and names it: its types, the frames and
functions in it, its exceptions, and which frame holds which exception (the usual cycle:
an exception kept in a local of a frame its own traceback holds).

The failing peers run in their own process (their garbage is not counted): a server
answering 500 to everything (target, json:// sink, rollback receiver, New Relic), a slow
target (3 s), one resetting mid-body, a TCP port that accepts and never answers (target,
Sentry, SMTP), a refused port. Scenarios: alerts (json:// refused, answering 500,
hanging; mailto:// refused, hanging), rollback attempts (500, refused, hanging), checks
(http in a task and from callbacks, smoke, load; against each peer), providers (Sentry
hanging or refused, New Relic 500, Prometheus refused).

    python bench/cycles.py [--n 10] [--loop asyncio|uvloop] [SCENARIO...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Run = Callable[[], Awaitable[Any]]


# ------------------------------------------------------------------ peers


async def serve_peers(hold_s: float) -> None:
    """The failing peers; prints their ports as one JSON line."""
    from aiohttp import web

    async def fail(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text="boom")

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3)
        return web.json_response({"status": "ok"})

    async def site(handler: Callable[[web.Request], Awaitable[web.Response]]) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tcp = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp.start()
        return tcp.port

    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await asyncio.sleep(hold_s)

    class Reset(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if b"\r\n\r\n" in data:
                assert isinstance(self.transport, asyncio.Transport)
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                self.transport.abort()

    hanging = await asyncio.start_server(hold, "127.0.0.1", 0)
    reset = await asyncio.get_running_loop().create_server(Reset, "127.0.0.1", 0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = sock.getsockname()[1]
    ports = {
        "p500": await site(fail),
        "slow": await site(slow),
        "hang": hanging.sockets[0].getsockname()[1],
        "reset": reset.sockets[0].getsockname()[1],
        "refused": refused,
    }
    print(json.dumps(ports), flush=True)
    await asyncio.sleep(hold_s)


# ------------------------------------------------------------------ census


def describe(garbage: list[Any], top: int = 12) -> list[str]:
    lines = []
    kinds = collections.Counter(type(o).__qualname__ for o in garbage)
    lines.append("  types: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common(top)))
    excs = [o for o in garbage if isinstance(o, BaseException)]
    if excs:
        named = collections.Counter(type(e).__qualname__ for e in excs)
        lines.append("  exceptions: " + ", ".join(f"{k} {v}" for k, v in named.most_common()))
    where: collections.Counter[str] = collections.Counter()
    held: collections.Counter[str] = collections.Counter()
    ids = {id(e) for e in excs}
    for o in garbage:
        if isinstance(o, types.FrameType):
            code = o.f_code
            name = f"{code.co_qualname} ({Path(code.co_filename).name}:{o.f_lineno})"
            where[f"frame {name}"] += 1
            for r in gc.get_referents(o):
                if id(r) in ids:
                    held[f"{type(r).__name__} in a local of {code.co_qualname}"] += 1
        elif isinstance(o, types.FunctionType):
            where[f"function {o.__module__}.{o.__qualname__}"] += 1
    lines += [f"  {v:5d} {k}" for k, v in where.most_common(top)]
    lines += [f"  cycle {v:5d} {k}" for k, v in held.most_common(top)]
    return lines


async def census(name: str, run: Run, n: int, only: set[str]) -> None:
    if only and name not in only and not any(name.startswith(f"{o}-") for o in only):
        return
    await run()  # warm: what stays for good (pools, threads, caches)
    await asyncio.sleep(0.2)
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            await run()
        await asyncio.sleep(0.2)  # worker threads done
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
    finally:
        gc.enable()
    each = len(garbage) / n
    print(f"{name:32s} {len(garbage):6d} unreachable after {n} failures: {each:6.1f} each")
    if garbage:
        print("\n".join(describe(garbage)))
    del garbage
    gc.collect()


# ------------------------------------------------------------------ scenarios


async def scenarios(ports: dict[str, int], n: int, only: set[str]) -> None:
    from agent.metrics import Metrics
    from agent.settings import AlertChannel
    from alerting.events import Alert
    from alerting.notifier import Notifier
    from common.redaction import Redactor

    metrics = Metrics()
    host = "127.0.0.1"
    few = max(1, n // 3)  # for the scenarios that wait out a timeout each time

    def notifier(url: str) -> Notifier:
        channels = [AlertChannel(url=url, tags=[])]
        return Notifier(channels, timeout=2.0, redact=Redactor([url]), metrics=metrics)

    alert = Alert(
        event="rollback_requested",
        environment="production",
        version="v2",
        deploy_id="dep_01",
        reason="probe-errors: error_rate 0.31 > max 0.05",
        rules=[],
        previous_version="v1",
    )

    def send(channel: Notifier) -> Run:
        return lambda: channel.send(alert, [])

    mail = "?from=postflight@example.com&to=oncall@example.com"
    channels = {
        "alert-json-refused": (f"json://{host}:{ports['refused']}/a", n),
        "alert-json-500": (f"json://{host}:{ports['p500']}/a", n),
        "alert-json-hang": (f"json://{host}:{ports['hang']}/a", few),
        "alert-mail-refused": (f"mailto://{host}:{ports['refused']}{mail}", n),
        "alert-mail-hang": (f"mailto://{host}:{ports['hang']}{mail}", few),
    }
    await census("idle", lambda: asyncio.sleep(0.05), n, only)
    for name, (url, times) in channels.items():
        await census(name, send(notifier(url)), times, only)

    from agent.rollback.delivery import RollbackDelivery
    from agent.store.sqlite import SqliteStore
    from tests.rollback.support import FakeSleep, settings, stored_intent

    store = SqliteStore(Path(tempfile.mkdtemp()) / "cycles.db")
    await store.open()
    delivery = RollbackDelivery(store, metrics, sleep=FakeSleep(), random=lambda: 0.5)
    counter = iter(range(10**9))

    def rollback(port: int) -> Run:
        async def attempt() -> None:
            intent = await stored_intent(store, f"dep_{next(counter)}")
            url = f"http://{host}:{port}/rollback"
            await delivery.deliver(intent, settings(url, max_attempts=1), "production")

        return attempt

    await census("rollback-500", rollback(ports["p500"]), n, only)
    await census("rollback-refused", rollback(ports["refused"]), n, only)
    await census("rollback-hang", rollback(ports["hang"]), few, only)
    await delivery.aclose()
    await store.close()

    from checks.base import Check, CheckContext
    from checks.http import HttpCheck, HttpCheckConfig
    from checks.load import LoadCheck, LoadCheckConfig
    from checks.registry import run_check
    from checks.sessions import TargetSessions
    from tests.checks.check_target import run_started

    http = HttpCheck(
        HttpCheckConfig.model_validate(
            {"name": "h", "type": "http", "path": "/", "timeout": "500ms"}
        )
    )
    step = {"name": "login", "method": "POST", "path": "/login", "json": {"u": 1}}
    from checks.smoke import SmokeCheck, SmokeCheckConfig

    smoke = SmokeCheck(
        SmokeCheckConfig.model_validate(
            {"name": "s", "type": "smoke", "steps": [{**step, "timeout": "500ms"}]}
        )
    )
    load = LoadCheck(
        LoadCheckConfig.model_validate(
            {"name": "l", "type": "load", "warmup": 0, "path": "/", "rate": "20/s"}
            | {"duration": "500ms", "timeout": "300ms"}
        )
    )
    async with TargetSessions() as sessions:

        def ctx(port: int) -> CheckContext:
            base = f"http://{host}:{port}"
            return CheckContext(base_url=base, session=sessions.get(base, True), environment="t")

        def checking(check: Check, kind: str) -> Run:
            """One run of `check` on the `kind` target (bound here, not to the loop's last turn)."""
            return lambda: run_check(check, ctx(ports[kind]))

        def starting(kind: str) -> Run:
            """One run of the http check from its callbacks on the `kind` target."""
            return lambda: run_started(http, ctx(ports[kind]))

        for kind in ("refused", "hang", "p500", "reset", "slow"):
            times = few if kind in ("hang", "slow") else n
            for name, check in (("http", http), ("smoke", smoke), ("load", load)):
                await census(
                    f"check-{name}-{kind}",
                    checking(check, kind),
                    few if name == "load" else times,
                    only,
                )
            await census(
                f"check-http-callbacks-{kind}",
                starting(kind),
                times,
                only,
            )
    await load.aclose()

    from agent.analysis.types import Rule
    from agent.providers.client import HttpProvider
    from agent.providers.newrelic import NewRelicProvider
    from agent.providers.prometheus import PrometheusProvider
    from agent.providers.provider_settings import (
        NewRelicSettings,
        PrometheusSettings,
        SentrySettings,
    )
    from agent.providers.sentry import SentryProvider
    from tests.providers.support import AFTER, NEWRELIC_KEY, SENTRY_TOKEN, rule, scope

    fast = {"timeout": "1s", "request_timeout": "300ms", "max_attempts": 2}

    def sentry(port: int) -> SentryProvider:
        base = f"http://{host}:{port}"
        values = {"base_url": base, "org": "acme", "token": SENTRY_TOKEN, **fast}
        return SentryProvider(SentrySettings.model_validate(values), metrics=metrics)

    newrelic = NewRelicProvider(
        NewRelicSettings.model_validate(
            {"api_url": f"http://{host}:{ports['p500']}/graphql", "account_id": 1}
            | {"api_key": NEWRELIC_KEY, **fast}
        ),
        metrics=metrics,
    )
    prometheus = PrometheusProvider(
        PrometheusSettings.model_validate({"url": f"http://{host}:{ports['refused']}", **fast}),
        metrics=metrics,
    )

    def fetching(provider: HttpProvider, which: Rule) -> Run:
        """One fetch of `which` from `provider` (bound here, not to the loop's last turn)."""
        return lambda: provider.fetch(which, scope(), AFTER, "v1")

    providers: list[tuple[str, HttpProvider, dict[str, Any], int]] = [
        ("provider-sentry-hang", sentry(ports["hang"]), {"metric": "error_rate"}, few),
        ("provider-sentry-refused", sentry(ports["refused"]), {"metric": "error_rate"}, n),
        ("provider-newrelic-500", newrelic, {"nrql": "SELECT count(*) FROM Transaction"}, n),
        ("provider-prometheus-refused", prometheus, {"query": "up"}, n),
    ]
    for name, provider, fields, times in providers:
        source = name.split("-")[1]
        which = rule(source=source, max=1, **fields)
        await census(
            name,
            fetching(provider, which),
            times,
            only,
        )
        await provider.aclose()


def main(args: argparse.Namespace) -> None:
    """The peers in their own process, the scenarios on the daemon's loop (uvloop)."""
    peers = subprocess.Popen(
        [sys.executable, __file__, "--peers"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert peers.stdout is not None
        ports = json.loads(peers.stdout.readline())
        work = scenarios(ports, args.n, set(args.scenarios))
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(work)
        else:
            asyncio.run(work)
    finally:
        peers.terminate()
        peers.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="names or prefixes (alert, check-http…)")
    parser.add_argument("--n", type=int, default=10, help="failures per scenario")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peers:
        asyncio.run(serve_peers(3600))
        sys.exit(0)
    logging.basicConfig(level=logging.CRITICAL)
    main(args)

"""The lean probe client against aiohttp: the same bytes sent, the same samples recorded.

Every case runs the `http` check twice against the same real server, once through the
lean client (`checks.wire`, the default) and once through aiohttp alone
(`TargetSessions(lean=False)`), and compares what was recorded and what the target saw.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import os
import random
import re
import socket
import struct
import sys
import weakref
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from checks.base import CheckContext, CheckResult
from checks.http import HttpCheck, HttpCheckConfig
from checks.lag import UNANSWERED
from checks.registry import run_check, start_check
from checks.sessions import TargetSessions, lean_client
from checks.wire import Disconnected, _Conn
from common.tracebacks import drop_cancellation
from tests.checks.check_target import PROBE_PATHS, free_port, target_app


@pytest.fixture(autouse=True, params=sorted(PROBE_PATHS))
def probe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case runs both ways a probe runs (`PROBE_PATHS`), with the same outcome."""
    monkeypatch.setattr(sys.modules[__name__], "run_check", PROBE_PATHS[request.param])
    return str(request.param)


JSON = b'{"status":"ok"}'


def raw(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def chunked(body: bytes, size: int | None = None) -> bytes:
    """`body` in chunks of `size` bytes (None: two, split after its 5th byte)."""
    if size is None:
        parts = [body[:5], body[5:]]
    else:
        parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), as a crashed or restarted server's kernel does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


GZIPPED = gzip.compress(JSON)
NOISE = random.Random(1).randbytes(200_000)
"""Incompressible: its gzip is over 64 KiB too (the lean client reads 64 KiB at a time)."""
RESPONSES: dict[str, bytes] = {
    "/plain": raw(
        "HTTP/1.1 200 OK\nContent-Type: application/json\nX-Version: 2.4.1\n"
        f"Content-Length: {len(JSON)}",
        JSON,
    ),
    "/gzip": raw(
        f"HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: {len(GZIPPED)}", GZIPPED
    ),
    "/deflate": raw(
        f"HTTP/1.1 200 OK\nContent-Encoding: deflate\nContent-Length: {len(zlib.compress(JSON))}",
        zlib.compress(JSON),
    ),
    "/chunked": raw("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", chunked(JSON)),
    "/until-close": raw("HTTP/1.1 200 OK\nConnection: close", JSON),
    "/empty": raw("HTTP/1.1 204 No Content"),
    "/bad-gzip": raw("HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 4", b"nope"),
    "/short": raw("HTTP/1.1 200 OK\nContent-Length: 100", b"only a few bytes"),
    "/garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "/moved": raw("HTTP/1.1 302 Found\nLocation: /plain\nContent-Length: 0"),
    "/big-gzip-chunked": raw(
        "HTTP/1.1 200 OK\nContent-Encoding: gzip\nTransfer-Encoding: chunked",
        chunked(gzip.compress(NOISE), 7000),
    ),
    "/close-length": raw("HTTP/1.1 200 OK\nConnection: close\nContent-Length: 2", b"ok"),
}
"""Canned answers by path; `/until-close`, `/short`, `/garbage` and `/close-length` close
the connection. Not canned: `/slow-body` comes in 10 parts 20 ms apart, `/reset` resets
the connection after 70 of 100 kB, `/reset-now` as the request comes, `/reset-idle` 30 ms
after a whole answer, `/idle-close` closes it 30 ms after a whole answer."""
CLOSES = {"/until-close", "/short", "/garbage", "/close-length"}


@dataclass
class RawServer:
    """A server speaking bytes, so each case controls the exact response; it keeps every
    request it was sent. `/retry` answers the first request of a connection and closes the
    connection on the second without a word (a keep-alive connection the server dropped)."""

    url: str = ""
    requests: list[bytes] = field(default_factory=list)
    ended: int = 0
    """Connections it has closed or reset."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                self.requests.append(head + body)
                path = head.split(b" ")[1].decode().split("?")[0]
                if path == "/retry" and served:
                    break
                served += 1
                if path == "/reset-now":
                    reset(writer)
                    return
                if path in ("/slow-body", "/reset"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    for _ in range(7 if path == "/reset" else 10):
                        await writer.drain()
                        await asyncio.sleep(0.02)
                        writer.write(b"x" * 10000)
                    await writer.drain()
                    if path == "/reset":
                        await asyncio.sleep(0.02)
                        reset(writer)
                        return
                    continue
                writer.write(RESPONSES.get(path, RESPONSES["/plain"]))
                await writer.drain()
                if path in CLOSES:
                    break
                if path in ("/reset-idle", "/idle-close"):
                    await asyncio.sleep(0.03)
                    if path == "/reset-idle":
                        reset(writer)
                        self.ended += 1
                        return
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()
        self.ended += 1


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    state = RawServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield state
    server.close()
    await server.wait_closed()


Probe = Callable[..., Awaitable[tuple[CheckResult, CheckResult]]]


@pytest.fixture
def both() -> Probe:
    """Runs one check config through the lean client, then through aiohttp alone; returns
    both results and asserts the lean client sent (or declined) as told."""

    async def run(base: str, *, lean_sends: bool = True, **fields: Any) -> tuple[Any, Any]:
        check = HttpCheck(HttpCheckConfig.model_validate({"name": "p", "type": "http", **fields}))
        results = []
        for lean in (True, False):
            async with TargetSessions(lean=lean) as sessions:
                session = sessions.get(base)
                results.append(await run_check(check, CheckContext(base, session, "test")))
                client = lean_client(session)
                if lean:
                    assert client is not None and (client.sent > 0) is lean_sends
                else:
                    assert client is None
        return results[0], results[1]

    return run


def recorded(result: CheckResult) -> dict[str, Any]:
    """What a probe records, less the latency figures (the two runs differ there) and the
    target's silence only the lean client sees (`checks.lag.UNANSWERED`, in its socket)."""
    (sample,) = result.samples
    details = {k: v for k, v in result.details.items() if k not in ("latency_ms", UNANSWERED)}
    message = re.sub(r"[\d.]+ms", "Nms", result.message)
    return {
        "ok": result.ok,
        "status": sample.status,
        "error": sample.error,
        "bytes": sample.bytes,
        "latency_set": sample.latency_s is not None,
        "details": details,
        "message": message,
    }


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("/plain", {"status": 200, "json": {"status": "ok"}, "headers": {"x-version": "2.4.1"}}),
        ("/plain", {"headers": {"X-Version": "3.0"}, "json": {"status": "down"}}),
        ("/gzip", {"json": {"status": "ok"}}),
        ("/gzip", {}),
        ("/deflate", {"body_regex": '"ok"'}),
        ("/chunked", {"json": {"status": "ok"}}),
        ("/until-close", {"json": {"status": "ok"}}),
        ("/empty", {"status": 204}),
        ("/bad-gzip", {}),
        ("/short", {}),
        ("/garbage", {}),
        ("/big-gzip-chunked", {"body_regex": "."}),
        ("/close-length", {"status": 200}),
        ("/slow-body", {"status": 200}),
        ("/reset", {}),
        ("/reset-now", {}),
    ],
)
async def test_lean_and_aiohttp_record_the_same(
    both: Probe, raw_server: RawServer, path: str, expect: dict[str, Any]
) -> None:
    lean, plain = await both(raw_server.url, path=path, expect=expect)
    if path == "/garbage":
        # the one known difference: where in the bytes the parser stopped, which
        # aiohttp's message quotes and httptools does not tell
        assert lean.message.startswith("GET /garbage: malformed response: ")
        assert plain.message.startswith("GET /garbage: malformed response: ")
        lean, plain = replace(lean, message=""), replace(plain, message="")
    assert recorded(lean) == recorded(plain)


@pytest.mark.parametrize(
    "fields",
    [
        {"path": "/x?a=1&b=%20"},
        {"path": "/p", "method": "PUT", "body": "plain"},
        {"path": "/p", "method": "DELETE"},
        {"path": "/p", "method": "OPTIONS", "headers": {"X-One": "1", "x-one": "2"}},
        {"path": "/p", "method": "PUT", "json": {"a": [1, "é"]}, "headers": {"X-T": "y"}},
        {
            "path": "/h",
            "headers": {"host": "example.com", "accept": "text/plain", "User-Agent": "me"},
        },
        {"path": "/h", "headers": {"Content-Type": "text/plain"}, "method": "PUT", "body": "b"},
    ],
)
async def test_lean_sends_the_bytes_aiohttp_sends(
    both: Probe, raw_server: RawServer, fields: dict[str, Any]
) -> None:
    lean, plain = await both(raw_server.url, **fields)
    assert lean.ok and plain.ok
    sent_lean, sent_plain = raw_server.requests
    assert sent_lean == sent_plain


async def test_a_request_lean_does_not_take_goes_through_aiohttp(
    both: Probe, raw_server: RawServer
) -> None:
    # POST is not idempotent (a redirect or codec hand-back could not send it again): aiohttp
    lean, plain = await both(
        raw_server.url, lean_sends=False, path="/p", method="POST", json={"a": 1}
    )
    assert recorded(lean) == recorded(plain) and lean.ok
    assert raw_server.requests[0] == raw_server.requests[1]


async def test_a_redirect_is_followed_by_aiohttp_from_its_location(raw_server: RawServer) -> None:
    check = HttpCheck(HttpCheckConfig(name="p", path="/moved", expect={"status": 200}))
    async with TargetSessions() as sessions:
        ctx = CheckContext(raw_server.url, sessions.get(raw_server.url), "test")
        first = await run_check(check, ctx)
        second = await run_check(check, ctx)
        client = lean_client(ctx.session)
        assert client is not None and client.sent == 2  # each probe's first hop
    assert first.ok and second.ok and first.samples[0].status == 200
    paths = [r.split(b" ")[1] for r in raw_server.requests]
    # lean's /moved, then aiohttp's /plain from the Location: each hop once, twice
    assert paths == [b"/moved", b"/plain", b"/moved", b"/plain"]


async def test_a_dropped_keepalive_connection_is_retried_once(
    both: Probe, raw_server: RawServer
) -> None:
    check = HttpCheck(HttpCheckConfig(name="p", path="/retry"))
    for lean in (True, False):
        raw_server.requests.clear()
        async with TargetSessions(lean=lean) as sessions:
            ctx = CheckContext(raw_server.url, sessions.get(raw_server.url), "test")
            results = [await run_check(check, ctx) for _ in range(2)]
        assert all(r.ok for r in results), [r.message for r in results]
        assert len(raw_server.requests) == 3  # the second probe's first try was dropped


@pytest.mark.parametrize("path", ["/idle-close", "/reset-idle"])
async def test_a_connection_the_target_ends_while_idle_is_not_reused(
    raw_server: RawServer, path: str
) -> None:
    """A keep-alive connection the target closed or reset while idle (its idle timeout, a
    restart): the next probe goes on a new one, recorded as aiohttp records it; and every
    descriptor the lean client opened (on uvloop, a duplicate of each socket it reads
    itself, `checks.wire._Conn.read_own`) is closed with the pool."""
    check = HttpCheck(HttpCheckConfig(name="p", path=path, expect={"status": 200}))
    before = len(os.listdir("/proc/self/fd"))
    recorded_by = []
    for lean in (True, False):
        raw_server.requests.clear()
        async with TargetSessions(lean=lean) as sessions:
            ctx = CheckContext(raw_server.url, sessions.get(raw_server.url), "test")
            results = []
            ended = raw_server.ended
            for _ in range(3):
                results.append(await run_check(check, ctx))
                ended += 1
                for _ in range(200):  # until the target has ended it (30 ms, or later: load)
                    await asyncio.sleep(0.01)
                    if raw_server.ended >= ended:
                        break
                else:
                    raise AssertionError(f"the target never ended connection {ended}")
                await asyncio.sleep(0.02)  # the end's packet, to the client's socket
            client = lean_client(ctx.session)
            assert client is None or client.sent == 3  # each once: no retry needed
        recorded_by.append([recorded(r) for r in results])
        assert len(raw_server.requests) == 3 and all(r.ok for r in results)
    assert recorded_by[0] == recorded_by[1]
    await asyncio.sleep(0.05)
    assert len(os.listdir("/proc/self/fd")) <= before


@pytest.fixture
async def target(aiohttp_server: AiohttpServer) -> URL:
    server = await aiohttp_server(target_app())
    return server.make_url("")


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/slow?ms=3000", {"timeout": "200ms"}),
        ("/close", {}),
        ("/big", {"expect": {"body_regex": "^x+"}}),
        ("/text", {"expect": {"body_regex": "^goodbye"}}),
        ("/status/503", {"expect": {"status": 200}}),
        ("/loop", {"follow_redirects": False}),
    ],
)
async def test_lean_and_aiohttp_agree_on_the_check_target(
    both: Probe, target: URL, path: str, fields: dict[str, Any]
) -> None:
    lean, plain = await both(str(target), path=path, **fields)
    assert recorded(lean) == recorded(plain)


async def test_a_refused_connection_reads_the_same(both: Probe) -> None:
    lean, plain = await both(f"http://127.0.0.1:{free_port()}", path="/ok")
    assert recorded(lean) == recorded(plain)
    assert lean.samples[0].error == "connect"


async def slow_target(
    aiohttp_server: AiohttpServer, seen: Callable[[web.Request], Awaitable[None]]
) -> tuple[str, HttpCheck]:
    """A target answering `/` once `seen` has seen the request (and slept as it likes),
    and a check of it: its URL and the check."""

    async def slow(request: web.Request) -> web.Response:
        await seen(request)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    server = await aiohttp_server(app)
    return str(server.make_url("")), HttpCheck(HttpCheckConfig(name="p", path="/"))


async def test_the_pool_limit_bounds_connections_to_a_target(aiohttp_server: AiohttpServer) -> None:
    peers: set[Any] = set()
    in_flight = 0
    most = 0

    async def seen(request: web.Request) -> None:
        nonlocal in_flight, most
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1

    base, check = await slow_target(aiohttp_server, seen)
    async with TargetSessions(limit_per_target=2) as sessions:
        ctx = CheckContext(base, sessions.get(base), "test")
        results = await asyncio.gather(*(run_check(check, ctx) for _ in range(8)))
    assert all(r.ok for r in results)
    assert most == 2 and len(peers) == 2  # counted at the target: two connections, reused


async def test_idle_connections_close_after_the_keepalive_time_on_a_quiet_pool(
    aiohttp_server: AiohttpServer,
) -> None:
    """A quiet agent holds no connection past its keep-alive time, as aiohttp's connector
    closes them (its cleanup): the lean pool closed one only when a request next picked
    it, so a pool of 16 per target (and each connection's duplicated stamp socket) held
    its descriptors through every quiet period. Counted at the target."""
    transports: list[Any] = []

    async def seen(request: web.Request) -> None:
        if request.transport not in transports:
            transports.append(request.transport)
        await asyncio.sleep(0.05)

    base, check = await slow_target(aiohttp_server, seen)
    before = len(os.listdir("/proc/self/fd"))
    async with TargetSessions(limit_per_target=4, keepalive_timeout=0.3) as sessions:
        ctx = CheckContext(base, sessions.get(base), "test")
        results = await asyncio.gather(*(run_check(check, ctx) for _ in range(8)))
        assert all(r.ok for r in results) and len(transports) == 4
        for _ in range(200):  # quiet: aiohttp's cleanup takes up to twice the time
            await asyncio.sleep(0.01)
            if all(t.is_closing() for t in transports):
                break
        open_at_target = [t for t in transports if not t.is_closing()]
        assert open_at_target == []  # 4 before
        await asyncio.sleep(0.05)  # the agent's end closed too
        assert len(os.listdir("/proc/self/fd")) <= before


async def test_a_round_deadline_shortens_the_timeout(target: URL) -> None:
    check = HttpCheck(HttpCheckConfig(name="p", path="/slow?ms=3000", timeout=5))
    async with TargetSessions() as sessions:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.2
        ctx = CheckContext(str(target), sessions.get(str(target)), "test", deadline=deadline)
        result = await run_check(check, ctx)
    assert result.samples[0].error == "timeout" and not result.details.get("crashed")
    assert result.message.startswith("GET /slow?ms=3000: no response within ")


async def test_a_cancelled_send_gives_up_its_turn_or_its_connection(
    aiohttp_server: AiohttpServer,
) -> None:
    """`send_now` is `request` without a task, and its `cancel` what cancelling that task
    does: a queued request gives its turn in the pool on (never sent), one under way
    closes its connection (its answer could only arrive later, on a reused connection)."""
    seen: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        seen.append(request.query["n"])
        await asyncio.sleep(0.1)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    server = await aiohttp_server(app)
    base = server.make_url("")
    answers: dict[str, Any] = {}
    async with TargetSessions(limit_per_target=1) as sessions:
        client = lean_client(sessions.get(str(base)))
        assert client is not None

        def send(n: str) -> Any:
            url = base.with_query(n=n)
            request = client.head("GET", url, None, None)
            sending = client.send_now(
                request, url, 2.0, False, lambda p, _, e: answers.setdefault(n, p or e)
            )
            assert sending is not None
            return sending

        send("a")
        send("b").cancel()  # queued behind a: the pool holds one connection
        send("c")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "c" in answers:
                break
        else:
            raise AssertionError("c was never answered")
        under_way = send("d")
        await asyncio.sleep(0.05)
        under_way.cancel()
        send("e")
        await asyncio.sleep(0.3)
    assert seen == ["a", "c", "d", "e"]
    assert sorted(answers) == ["a", "c", "e"]
    assert all(answers[n].status == 200 for n in ("a", "c", "e"))


@pytest.mark.parametrize("path", ["/until-close", "/short", "/garbage"])
@pytest.mark.usefixtures("heap_set_aside")
async def test_a_closed_connection_is_freed_without_the_collector(
    raw_server: RawServer, path: str
) -> None:
    """A connection the target closed (after a whole answer, mid-body, on garbage) is freed
    as soon as nothing uses it, by reference counting alone: the agent's collections are
    rare, and every closed connection waiting for one grew its memory for as long as it ran
    (connections close all the time: idle ones past keep-alive, targets that close)."""
    # a failure awaited in a task keeps asyncio's traceback cycle (the task's frame holds
    # the future holding the exception): those are a round's probes' (callbacks) only
    run = run_check if path == "/until-close" else PROBE_PATHS["callbacks"]
    check = HttpCheck(HttpCheckConfig(name="p", path=path, timeout=0.2))
    opened: weakref.WeakSet[Any] = weakref.WeakSet()
    gc.collect()
    gc.disable()
    try:
        async with TargetSessions() as sessions:
            session = sessions.get(raw_server.url)
            client = lean_client(session)
            assert client is not None
            reserve = client._reserve

            def counted(key: tuple[str, int]) -> Any:
                conn = reserve(key)
                opened.add(conn)
                return conn

            client._reserve = counted  # type: ignore[method-assign]
            ctx = CheckContext(raw_server.url, session, "test")
            results = [await run(check, ctx) for _ in range(3)]
            assert len(opened) == 3  # the target closed each one
            for _ in range(100):  # past the requests' deadlines on the tick grid
                await asyncio.sleep(0.01)
                if not opened:
                    break
            assert not opened, f"{len(opened)} closed connections wait for the collector"
    finally:
        gc.enable()
    assert [r.ok for r in results] == [path == "/until-close"] * 3


async def test_a_pool_closed_while_it_connects_leaves_no_socket_open(raw_server: RawServer) -> None:
    """`LeanClient.close` during a connect: the connection, closed before it was made, is
    aborted as it is made (it sent its request, and then stayed open, out of the pool, until
    the target hung up), and the request reads as the connection's end before an answer."""
    before = len(os.listdir("/proc/self/fd"))
    answers: list[Any] = []
    url = URL(raw_server.url).with_path("/plain")
    async with TargetSessions() as sessions:
        client = lean_client(sessions.get(raw_server.url))
        assert client is not None
        request = client.head("GET", url, None, None)
        sending = client.send_now(request, url, 2.0, False, lambda p, _, e: answers.append(p or e))
        assert sending is not None and sending.conn is not None
        await asyncio.sleep(0)  # its connect under way
        assert sending.conn.transport is None, "connected in one loop turn"
        client.close()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if answers:
                break
        else:
            raise AssertionError("the closed pool's send never ended")
    await asyncio.sleep(0.05)  # the target's end of it closed too
    assert [type(a) for a in answers] == [Disconnected]
    assert raw_server.requests == []
    assert len(os.listdir("/proc/self/fd")) <= before


@pytest.mark.usefixtures("heap_set_aside")
async def test_probes_cut_at_a_rounds_end_leave_no_connection_for_the_collector(
    aiohttp_server: AiohttpServer, probe_path: str
) -> None:
    """An agent far behind cuts the probes still going at each round's end: a connect not
    yet begun (its task cancelled before it ran: no `connection_lost` will come), or one
    whose socket was made but not yet handed back (uvloop then keeps the protocol on its
    closed transport, and never calls it) each left a closed connection in a reference
    cycle for a rare collection (`agent.windows.heap`): bench/footprint.py's default 200
    windows at 1 s, at load 15-18, kept 3,082 more of the first kind and 1,456 of the
    second from its 2nd minute to its 6th, no collection meanwhile. Counted by the
    collector's own list, with it off: no more alive than the pool holds."""

    async def answer(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "late":
            await asyncio.sleep(0.15)  # past the probe's timeout
        return web.Response(text="ok", headers={"Connection": "close"} if kind == "close" else None)

    app = web.Application()
    app.router.add_get("/{kind}", answer)
    server = await aiohttp_server(app)
    base = str(server.make_url(""))
    checks = [
        HttpCheck(HttpCheckConfig(name=kind, path=f"/{kind}", timeout=0.1))
        for kind in ("ok", "late", "close")
    ]
    limit = 4
    waits = (None, 0.0, 0.001, 0.003, 0.03)  # None: cut in the same loop turn it started

    def start(check: HttpCheck, ctx: CheckContext) -> Callable[[], object]:
        if probe_path == "callbacks":
            run = start_check(check, ctx, lambda _: None)
            assert run is not None
            return run.cancel
        task = asyncio.ensure_future(run_check(check, ctx))
        task.add_done_callback(drop_cancellation)  # as a round's `_launch` does
        return task.cancel

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is _Conn)

    gc.collect()
    gc.disable()
    try:
        async with TargetSessions(limit_per_target=limit) as sessions:
            ctx = CheckContext(base, sessions.get(base), "test")
            for n in range(40):
                cuts = [start(checks[i % 3], ctx) for i in range(3 * limit)]
                if (wait := waits[n % len(waits)]) is not None:
                    await asyncio.sleep(wait)
                for cut in cuts:
                    cut()
            del cuts
            for _ in range(100):  # every connection's end reported, past every deadline
                await asyncio.sleep(0.02)
                if alive() <= limit:
                    break
            else:
                raise AssertionError(f"{alive()} connections alive, the pool holds {limit}")
            left = alive()
    finally:
        gc.enable()
    assert left <= limit, f"{left} connections alive, the pool holds {limit}"


def trickling_target() -> web.Application:
    """`/trickle`: its status line and headers at once, then 1,000 of the 10,000 bytes its
    Content-Length says, the rest 5 s later; `/trickle-chunked` the same in chunks, with
    no length said."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if request.path == "/trickle":
            response.content_length = 10_000
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * 1000)
        await asyncio.sleep(5)
        await response.write(b"x" * 9000)
        return response

    app = web.Application()
    app.router.add_get("/trickle", trickle)
    app.router.add_get("/trickle-chunked", trickle)
    return app


@pytest.mark.parametrize("path", ["/trickle", "/trickle-chunked"])
async def test_a_body_still_coming_at_the_deadline_is_a_timeout_saying_what_came(
    both: Probe, aiohttp_server: AiohttpServer, path: str
) -> None:
    """The status and the start of the body came, the rest not by the probe's deadline: a
    timeout (the target did not answer in time), said as "no response within 300ms",
    though a response came: it says how much of it did, both ways a probe is sent."""
    server = await aiohttp_server(trickling_target())
    lean, plain = await both(str(server.make_url("")), path=path, timeout="300ms")
    for result in (lean, plain):
        (sample,) = result.samples
        assert (result.ok, sample.error, sample.status) == (False, "timeout", None)
        assert sample.latency_s is not None and sample.latency_s >= 0.3
        said = "HTTP 200, then its body did not end within 300ms (1,000 bytes of it came)"
        assert result.message == f"GET {path}: {said}", result.message

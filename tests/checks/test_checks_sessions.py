"""Shared sessions: one keep-alive pool per target and TLS mode, no cookies shared, closed once."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from checks.exchange import ProbeFailed, exchange
from checks.request import Request
from checks.sessions import TargetSessions


async def test_one_session_per_origin_and_tls_mode() -> None:
    async with TargetSessions() as sessions:
        a = sessions.get("https://app.example.com")
        assert sessions.get("https://app.example.com/api/") is a
        assert sessions.get("https://app.example.com:443") is a
        assert sessions.get("https://app.example.com", verify_tls=False) is not a
        assert sessions.get("http://app.example.com") is not a
        assert sessions.get("https://staging.example.com") is not a
        assert len(sessions) == 4
    assert a.closed and len(sessions) == 0


async def test_pool_is_bounded() -> None:
    async with TargetSessions(limit_per_target=7) as sessions:
        connector = sessions.get("http://127.0.0.1:1").connector
        assert connector is not None and connector.limit == 7


async def test_get_after_close_raises() -> None:
    sessions = TargetSessions()
    sessions.get("http://127.0.0.1:1")
    await sessions.aclose()
    await sessions.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        sessions.get("http://127.0.0.1:1")


async def test_not_an_http_url() -> None:
    async with TargetSessions() as sessions:
        with pytest.raises(ValueError, match="not an http"):
            sessions.get("ftp://example.com")


async def test_cookies_do_not_stick_to_shared_sessions(
    sessions: TargetSessions, target: URL
) -> None:
    session = sessions.get(str(target))
    login = {"user": "smoke", "password": "pw-smoke"}
    async with session.post(target / "api" / "login", json=login) as resp:
        assert resp.status == 200 and resp.cookies["sid"].value == "session-42"
    async with session.get(target / "echo") as resp:
        assert (await resp.json())["cookies"] == {}


async def test_without_keepalive_every_request_opens_its_own_connection() -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    ports: list[int] = []

    async def peer(request: web.Request) -> web.Response:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", peer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        for keepalive in (True, False):
            ports.clear()
            async with TargetSessions(keepalive=keepalive) as sessions:
                session = sessions.get(str(server.make_url("/")))
                for _ in range(3):
                    async with session.get(server.make_url("/")) as resp:
                        assert resp.status == 200
            assert len(set(ports)) == (1 if keepalive else 3)
    finally:
        await server.close()


class Receiver:
    """One target server listening on many ports (a preview host per deploy: a new origin
    each), counting at its end the connections clients opened and those still open."""

    def __init__(self, close_each: bool = False) -> None:
        self.peers: dict[int, set[int]] = {}  # our port -> the client ports seen
        self.close_each = close_each  # `Connection: close` on every response

    async def start(self, ports: int) -> list[str]:
        from aiohttp import web

        async def peer(request: web.Request) -> web.Response:
            assert request.transport is not None
            ours = request.transport.get_extra_info("sockname")[1]
            self.peers.setdefault(ours, set()).add(request.transport.get_extra_info("peername")[1])
            return web.Response(
                text="ok", headers={"Connection": "close"} if self.close_each else None
            )

        app = web.Application()
        app.router.add_get("/", peer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        urls = []
        for _ in range(ports):
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            urls.append(f"http://127.0.0.1:{site.port}/")
        return urls

    def open_connections(self) -> int:
        server = self.runner.server
        assert server is not None
        return len(server.connections)


async def serve(handler: Any) -> tuple[Any, str]:
    """A target answering GET / with `handler` on a free port: its runner (to see its
    connections and clean it up) and its URL."""
    from aiohttp import web

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert runner.server is not None and runner.addresses
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


async def probe(session: aiohttp.ClientSession, url: str) -> None:
    """One request the way a check sends it (`checks.exchange`): the lean client where it
    takes it, else aiohttp."""
    reply = await exchange(session, Request("GET", {}, None), URL(url), client_timeout=5.0)
    assert reply.status == 200


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiohttp"])
async def test_a_preview_host_per_deploy_leaves_no_session_behind(lean: bool) -> None:
    """A deploy a minute for 40 minutes, each probed at its own preview host (a new origin)
    for its minute, and production, probed every 10 s throughout through a session kept
    (as `EnvironmentProbe` keeps it). Before, every preview's pool stayed open for good,
    with its lean client's idle socket: 41 sessions and 41 connections at the target."""
    receiver = Receiver()
    production, *previews = await receiver.start(41)
    clock = [0.0]
    sessions = TargetSessions(lean=lean, idle_s=300.0, clock=lambda: clock[0])
    handed: list[aiohttp.ClientSession] = []
    try:
        kept = sessions.get(production)
        for preview in previews:
            session = sessions.get(preview)
            handed.append(session)
            for _ in range(6):  # a round every 10 s for the deploy's minute
                await probe(session, preview)
                await probe(kept, production)
                clock[0] += 10.0
        await asyncio.gather(*sessions._closing)
        # production and the previews of the last `idle_s` and a sweep or two (one a
        # minute, at a `get`), however many deploys came before
        assert len(sessions) <= 9, len(sessions)
        assert sum(not s.closed for s in handed) <= 8
        assert sum(s.connector is not None and not s.connector.closed for s in handed) <= 8
        await asyncio.sleep(0.05)  # the target sees the closed sockets
        assert receiver.open_connections() <= 9, receiver.open_connections()
        # production's session and its one connection stayed the whole time
        assert sessions.get(production) is kept and not kept.closed
        production_port = int(URL(production).port or 0)
        assert len(receiver.peers[production_port]) == 1, receiver.peers[production_port]
        assert all(len(receiver.peers[int(URL(p).port or 0)]) == 1 for p in previews)
    finally:
        await sessions.aclose()
        await receiver.runner.cleanup()
    assert all(s.closed for s in handed)


async def test_a_session_in_flight_or_used_lately_is_not_closed() -> None:
    """A request in flight past `idle_s` keeps its session, and so does one used since
    the last sweep; it goes once unused for `idle_s`, and `get` opens a new one."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    clock = [0.0]
    url = str(server.make_url("/"))
    try:
        for lean in (True, False):
            sessions = TargetSessions(lean=lean, idle_s=300.0, clock=lambda: clock[0])
            session = sessions.get(url)
            flight = asyncio.create_task(probe(session, url))
            await asyncio.sleep(0.05)
            clock[0] += 1000.0
            assert sessions.close_idle() == 0 and not session.closed  # in flight
            release.set()
            await flight
            clock[0] += 1000.0
            await probe(session, url)  # used since: stays
            assert sessions.close_idle() == 0 and not session.closed
            clock[0] += 299.0
            assert sessions.close_idle() == 0 and not session.closed
            clock[0] += 2.0
            assert sessions.close_idle() == 1 and len(sessions) == 0  # forgotten at once
            await asyncio.gather(*sessions._closing)
            assert session.closed  # a holder asks `get` again
            assert sessions.get(url) is not session  # a new one, on demand
            await sessions.aclose()
            release.clear()
    finally:
        release.set()
        await server.close()


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiohttp"])
async def test_a_session_kept_stays_while_used_over_connections_not_kept_alive(
    lean: bool,
) -> None:
    """Production probed every 10 s for 20 minutes through a session kept, its target
    closing every connection after its response (`Connection: close`). Before, a session
    sent by aiohttp counted as used only when a connection went back to its pool: none
    did, so production's session was closed every 5 minutes while in use."""
    receiver = Receiver(close_each=True)
    production = (await receiver.start(1))[0]
    clock = [0.0]
    sessions = TargetSessions(lean=lean, idle_s=300.0, clock=lambda: clock[0])
    try:
        kept = sessions.get(production)
        for round_ in range(120):
            await probe(kept, production)
            clock[0] += 10.0
            if round_ % 6 == 5:  # a sweep a minute, as `get` does
                assert sessions.close_idle() == 0 and not kept.closed, clock[0]
        assert sessions.get(production) is kept
        # at the target: a connection per request, so none went back to a pool
        assert len(receiver.peers[int(URL(production).port or 0)]) == 120
    finally:
        await sessions.aclose()
        await receiver.runner.cleanup()


async def test_a_request_begun_as_the_sweep_closes_its_session_is_not_cut_off() -> None:
    """A holder (`EnvironmentProbe`) that took the session before the sweep found it idle
    sends one more request on it, started in the sweep's step: it gets its response, and
    then the pool closes and its socket goes (counted at the target). Before, the sweep
    closed the pool at once and that request failed ("Session is closed")."""
    from aiohttp import web

    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="ok")

    runner, url = await serve(slow)
    clock = [0.0]
    sessions = TargetSessions(idle_s=300.0, clock=lambda: clock[0])
    try:
        session = sessions.get(url)
        clock[0] += 1000.0
        assert sessions.close_idle() == 1
        flight = asyncio.create_task(probe(session, url))
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.05)
        assert not session.closed and len(runner.server.connections) == 1
        release.set()
        await flight  # answered, not cut off
        await asyncio.gather(*sessions._closing)
        assert session.closed
        await asyncio.sleep(0.05)  # the target sees the closed socket
        assert len(runner.server.connections) == 0
    finally:
        release.set()
        await sessions.aclose()
        await runner.cleanup()


def test_sessions_reads_no_private_aiohttp_field() -> None:
    """`checks/sessions.py` tells idle from used by its own counts and public aiohttp
    calls: a private field renamed in an aiohttp release would make no session idle,
    silently (`getattr` with a default) or close none (a method gone)."""
    import checks.sessions

    tree = ast.parse(Path(checks.sessions.__file__).read_text())
    private = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        )
        or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and any(isinstance(a, ast.Constant) and str(a.value).startswith("_") for a in node.args)
        )
    ]
    assert private == []


async def test_a_smoke_session_reading_a_body_over_the_shared_pool_keeps_it_open() -> None:
    """A smoke check sends from a session of its own over the shared pool's connector: its
    request, body still arriving past `idle_s`, keeps the pool open (counted by connector,
    until the body is read), and the target sees its connection stay to the end."""
    from aiohttp import web

    headers_sent, release = asyncio.Event(), asyncio.Event()

    async def slow_body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first half, ")
        headers_sent.set()
        await release.wait()
        await resp.write(b"second half")
        await resp.write_eof()
        return resp

    runner, url = await serve(slow_body)
    clock = [0.0]
    sessions = TargetSessions(idle_s=300.0, clock=lambda: clock[0])
    try:
        shared = sessions.get(url)
        async with aiohttp.ClientSession(
            connector=shared.connector, connector_owner=False, trust_env=False
        ) as own:
            flight = asyncio.create_task(
                exchange(own, Request("GET", {}, None, keep_body=True), URL(url), client_timeout=5)
            )
            await asyncio.wait_for(headers_sent.wait(), 5)
            await asyncio.sleep(0.05)
            clock[0] += 1000.0
            assert sessions.close_idle() == 0 and not shared.closed
            release.set()
            reply = await flight
            assert reply.status == 200 and reply.body == b"first half, second half"
        assert len(runner.server.connections) == 1  # kept alive in the pool, not cut
        clock[0] += 299.0
        assert sessions.close_idle() == 0  # found in use by the last sweep, 299 s ago
        clock[0] += 2.0
        assert sessions.close_idle() == 1
        await asyncio.gather(*sessions._closing)
        assert shared.closed
        await asyncio.sleep(0.05)
        assert len(runner.server.connections) == 0  # its socket released, at the target
    finally:
        release.set()
        await sessions.aclose()
        await runner.cleanup()


async def test_shutdown_does_not_wait_for_a_request_on_a_session_closing_as_idle() -> None:
    """A session swept as idle waits for a request begun on it before it closes; shutdown
    (`aclose`) does not: it closes that pool too, and the request ends at once."""
    from aiohttp import web

    arrived, release = asyncio.Event(), asyncio.Event()

    async def hung(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hung)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/"))
    clock = [0.0]
    sessions = TargetSessions(idle_s=300.0, clock=lambda: clock[0])
    try:
        session = sessions.get(url)
        clock[0] += 1000.0
        assert sessions.close_idle() == 1
        flight = asyncio.create_task(
            exchange(session, Request("GET", {}, None), URL(url), client_timeout=60.0)
        )
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.wait_for(sessions.aclose(), 5)  # not the request's 60 s
        assert session.closed and not release.is_set()
        with pytest.raises(ProbeFailed):
            await flight
    finally:
        release.set()
        await server.close()

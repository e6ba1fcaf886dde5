"""A request through aiohttp (a load check's, an https target's) cut in the loop turn its
answer came leaves no connection for the collector.

aiohttp queues the answer on the connection's protocol with its payload, which refers
back to the protocol: closed with the answer unread, the connection was a reference
cycle only a collection frees, and the agent's oldest generation is collected rarely
(`agent.windows.heap`). `bench/memory.py` (12 environments, 24 windows between quiet
snapshots) found 1,823 such objects, ~230 connections with their transports and
contexts, waiting for a collection that had not come. Counted by reference alone,
with the collector off."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from checks.exchange import exchange
from checks.load import LoadPool
from checks.request import Request
from checks.silence import Handler
from tests.checks.test_checks_sessions import serve

pytestmark = pytest.mark.timeout(30)

CUTS = 5


async def test_a_request_cut_as_its_answer_comes_leaves_no_connection_for_the_collector(
    aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/", answer)
    server = await aiohttp_server(app)
    url = URL(str(server.make_url("/")))
    made: weakref.WeakSet[Handler] = weakref.WeakSet()
    cut: list[asyncio.Task[Any]] = []
    received = Handler.data_received

    def arriving(self: Handler, data: bytes) -> None:
        """The answer is handed to aiohttp, and in the same turn the request is cut (a
        round's end, a stopping agent): its task never reads it."""
        made.add(self)
        received(self, data)
        if cut:
            cut.pop().cancel()

    monkeypatch.setattr(Handler, "data_received", arriving)
    pool = LoadPool()
    gc.collect()
    gc.disable()
    try:
        session = pool.session(False, None)
        for _ in range(CUTS):
            task = asyncio.ensure_future(
                exchange(session, Request("GET", {}, None), url, client_timeout=5.0)
            )
            cut.append(task)
            with pytest.raises(asyncio.CancelledError):
                await task
            del task
        await pool.aclose()
        for _ in range(100):  # each closed connection's end reported
            await asyncio.sleep(0.01)
            if not made:
                break
        alive = len(made)
    finally:
        gc.enable()
    assert alive == 0, f"{alive} of {CUTS} cut connections wait for the collector"


def test_a_connect_cut_on_uvloop_leaves_no_connection_for_the_collector() -> None:
    """uvloop closes the transport of a connection whose `create_connection` was cancelled
    just after it connected, and never calls its protocol's `connection_lost`: the
    protocol and its transport kept each other (with the request's context) for a rare
    collection. `bench/memory.py` found ~40 such connections every 48 windows once the
    queued answers were dropped. Cut at several points of the connect, with the collector
    off: none left once the pool is closed."""
    import uvloop  # a dev dependency; the Docker image's loop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        left = runner.run(_cut_connects())
    assert left == 0, f"{left} cut connections wait for the collector"


async def _cut_connects() -> int:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    server, address = await serve(answer)
    url = URL(address)
    pool = LoadPool()
    waits = (0.0, 0.0005, 0.001, 0.002, 0.003)
    gc.collect()
    gc.disable()
    try:
        session = pool.session(False, None)
        for n in range(40):
            tasks = [
                asyncio.ensure_future(
                    exchange(session, Request("GET", {}, None), url, client_timeout=5.0)
                )
                for _ in range(4)
            ]
            await asyncio.sleep(waits[n % len(waits)])
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            del tasks
        await pool.aclose()
        await asyncio.sleep(0.1)  # each closed connection's end reported
        left = sum(1 for o in gc.get_objects() if type(o) is Handler)
    finally:
        gc.enable()
        await server.cleanup()
    return left

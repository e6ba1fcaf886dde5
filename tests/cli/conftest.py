"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


@pytest.fixture
async def target() -> AsyncIterator[TestServer]:
    """A local target for `postflight check`: /health answers 200, /broken 503."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"status": "down"}, status=503)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/broken", broken)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()

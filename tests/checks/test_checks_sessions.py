"""Shared sessions: one keep-alive pool per target and TLS mode, no cookies shared, closed once."""

from __future__ import annotations

import pytest
from yarl import URL

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

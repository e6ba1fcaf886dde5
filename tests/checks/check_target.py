"""A local target for the check tests: one route per behaviour a check must judge."""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Callable
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from checks.base import Check, CheckContext, CheckResult
from checks.registry import config_models, run_check, start_check
from tests.ports import free_port as free_port

SECRET = "s3cr3t-t0ken-value"

MakeContext = Callable[..., CheckContext]


async def run_started(check: Check, ctx: CheckContext) -> CheckResult:
    """One run as a round's probe runs it: from callbacks (`start_check`) when the check can
    start that way, else through `run_check` (the path a round falls back to)."""
    answer: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()
    if not start_check(check, ctx, answer.set_result):
        return await run_check(check, ctx)
    return await answer


PROBE_PATHS = {"task": run_check, "callbacks": run_started}
"""The two ways a probe runs: `run_check` in a task (load and smoke checks, the CLI's
`check`), and from callbacks (`start_check`: a round's http probes)."""


def target_app() -> web.Application:
    """A target with one route per behaviour the checks must judge."""
    app = web.Application()
    hits: dict[str, int] = {}

    async def ok(_: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "version": "2.4.1", "data": {"items": [{"id": 1}, {"id": 2}]}},
            headers={"X-Version": "2.4.1"},
        )

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"status": "down"}, status=int(request.match_info["code"]))

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("ms", "100")) / 1000)
        return web.json_response({"status": "ok"})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def text(_: web.Request) -> web.Response:
        return web.Response(text=f"hello world, token={SECRET}")

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "headers": dict(request.headers),
                "body": body.decode(),
                "query": dict(request.query),
                "cookies": dict(request.cookies),
            }
        )

    async def close(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response()

    async def big(_: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(_)
        for _i in range(40):
            await resp.write(b"x" * 65536)
        await resp.write_eof()
        return resp

    async def count(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        hits[key] = hits.get(key, 0) + 1
        return web.json_response({"hits": hits[key]})

    async def hops(request: web.Request) -> web.Response:
        """`/hops/{key}?to=PATH&ms=N&status=S`: counted, then after N ms a redirect (S,
        default 302) to PATH, or to itself: a loop."""
        key = request.match_info["key"]
        hits[key] = hits.get(key, 0) + 1
        await asyncio.sleep(float(request.query.get("ms", "0")) / 1000)
        to = request.query.get("to", str(request.rel_url))
        return web.Response(
            status=int(request.query.get("status", "302")), headers={"Location": to}
        )

    async def seen(request: web.Request) -> web.Response:
        return web.json_response({"hits": hits.get(request.match_info["key"], 0)})

    async def notjson(_: web.Request) -> web.Response:
        return web.Response(text="<html>oops</html>", content_type="text/html")

    async def login(request: web.Request) -> web.Response:
        creds = await request.json()
        if creds.get("user") != "smoke" or creds.get("password") != "pw-smoke":
            return web.json_response({"error": f"bad password {creds.get('password')}"}, status=401)
        resp = web.json_response({"token": SECRET, "user": {"id": 7, "name": "smoke"}})
        resp.set_cookie("sid", "session-42")
        return resp

    async def me(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {SECRET}":
            return web.json_response({"error": "bad token", "token": SECRET}, status=401)
        if request.cookies.get("sid") != "session-42":
            return web.json_response({"error": "no session cookie"}, status=403)
        return web.json_response({"id": 7, "name": "smoke"})

    async def item(request: web.Request) -> web.Response:
        return web.json_response({"item": request.match_info["id"], "body": await request.text()})

    app.router.add_post("/api/login", login)
    app.router.add_get("/api/me", me)
    app.router.add_route("*", "/api/items/{id}", item)
    app.router.add_get("/ok", ok)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/text", text)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/close", close)
    app.router.add_get("/big", big)
    app.router.add_get("/count/{key}", count)
    app.router.add_route("*", "/hops/{key}", hops)
    app.router.add_get("/seen/{key}", seen)
    app.router.add_get("/notjson", notjson)
    return app


def check_config_union() -> Any:
    """What the settings build from the registry: one model per check type, chosen by `type`."""
    return Annotated[functools.reduce(operator.or_, config_models()), Field(discriminator="type")]

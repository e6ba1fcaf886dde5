"""`agent.integrations.clients.call`, the retried call behind GitHub statuses, gate
answers, Rolling Releases approvals and `rollback.then` follow-ups."""

from __future__ import annotations

import email.utils
import time

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.integrations.clients import call


async def test_a_retry_after_http_date_is_waited_out_as_given_not_as_max_backoff() -> None:
    """`Retry-After: <HTTP-date>` was read against the epoch (now = 0), so a date 2 s
    ahead meant 56 years and the call waited `max_backoff` (30 s by default)."""
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            return web.Response(status=503, headers={"Retry-After": when})
        return web.json_response({"id": 1}, status=201)

    app = web.Application()
    app.router.add_post("/statuses", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        result = await call(
            session,
            "POST",
            str(server.make_url("/statuses")),
            headers={},
            body=b"{}",
            max_backoff=8.0,
        )
    assert result.ok and result.attempts == 2
    waited = seen[1] - seen[0]
    assert 0.5 < waited < 4.0, waited

"""What the fake provider servers share: lifecycle, failure modes, a request log.

A fake listens on 127.0.0.1 (port 0 by default) and can be told, in-process or over
its control routes, to misbehave the way real providers do:

- `fail("500")`, `fail("503")`, any status: an error answer;
- `fail("429", reset_in=1.0)`: rate limited (the fake adds its own rate-limit headers);
- `fail("401")`: the credentials are rejected with the provider's documented body;
- `fail("html:522")`: a gateway's own error page (HTML, not the provider's JSON), as a
  CDN or proxy in front of the provider answers when the provider is down;
- `fail("unavailable", reset_in=30)`: 503 with `Retry-After: 30`, as a provider in
  maintenance or a proxy in front of one says how long it expects to be down;
- `fail("moved")`: 301 to the same path on https://, as a load balancer redirects http://;
- `fail("hang")`: the request is held until the fake stops (a timeout for the client);
- `fail("malformed")`: a truncated JSON body with a JSON content type;
- `fail("bad_shape")`: valid JSON of the wrong shape;
- `fail("undecodable")`: the request is acted on, and its answer's body says
  `Content-Encoding: gzip` and is not gzip (a proxy's mangling); `fail("undecodable:503",
  reset_in=2)`: that status, not acted on, with `Retry-After`;
- `fail("unanswered")`: the request is acted on, and its answer held until the client
  has let go of the connection (`let_go` lists it) or the fake stops: a timeout for the
  client however late its loop runs, where an answer after a fixed delay beat a timeout
  that woke late (`agent.rollback.delivery.answered_within`'s look);
- `fail("cut_short")`: the request is acted on, and its answer's connection closes
  halfway through the body (fewer bytes than its Content-Length); `"cut_short:chunked"`:
  chunked, without its last chunk;
- plus provider-specific kinds (New Relic: `too_many_requests`, `timeout`).

`times=n` limits a failure to the next n matching requests (default: until `heal()`),
`match=` (a substring of the path and query, or a predicate) limits it to some
requests. Control routes, for a fake running in another process:
`POST /_fake/fail {"kind": "429", "times": 1, "reset_in": 1, "match": "cursor"}`,
`POST /_fake/heal`, `GET /_fake/requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

HOST = "127.0.0.1"
HANG_S = 600.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY: web.RequestKey[Any] = web.RequestKey("body", object)
"""The request's JSON body (or text), read once by the middleware."""


@dataclass
class Failure:
    kind: str
    times: int | None = None
    reset_in: float = 1.0
    match: str | Callable[[web.Request], bool] | None = None

    def applies(self, request: web.Request) -> bool:
        if self.match is None:
            return True
        if callable(self.match):
            return self.match(request)
        return self.match in request.path_qs


@dataclass
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.time)
    status: int | None = None
    """The fake's answer: its status and JSON body (None until answered, or not JSON)."""
    answer: Any = None

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def param(self, name: str) -> str | None:
        values = self.params(name)
        return values[0] if values else None


class FakeServer:
    """Base of the fakes: override `routes()` and `failure_response()`."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.failures: list[Failure] = []
        self.delay = 0.0
        """Seconds added to every answer (latency for benchmarks and concurrency tests)."""
        self.before_answer: Callable[[web.Request], None] | None = None
        """Called with each request as its answer is about to be given (after `delay`)."""
        self.in_flight = 0
        self.peak_in_flight = 0
        self.let_go: list[Seen] = []
        """Requests of `fail("unanswered")` whose client let go before any answer."""
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self, port: int = 0) -> Self:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/_fake/fail", self._control_fail)
        app.router.add_post("/_fake/heal", self._control_heal)
        app.router.add_get("/_fake/requests", self._control_requests)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting ----------------------------------------------------------------------

    def fail(
        self,
        kind: str,
        *,
        times: int | None = None,
        reset_in: float = 1.0,
        match: str | Callable[[web.Request], bool] | None = None,
    ) -> None:
        self.failures.append(Failure(kind, times, reset_in, match))

    def heal(self) -> None:
        self.failures.clear()

    def seen(self, path_contains: str = "") -> list[Seen]:
        return [r for r in self.requests if path_contains in r.path]

    # -- for subclasses -----------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_answer(self, status: int, message: str) -> web.Response:
        """An error answer in the provider's own shape (a subclass's), here a generic one."""
        return web.json_response({"detail": message}, status=status)

    def unrouted(self, request: web.Request, refused: web.HTTPException) -> web.StreamResponse:
        """The answer to a path or method no route takes: aiohttp's own (plain text), unless
        the provider answers these its own way (a subclass's)."""
        raise refused

    def failure_response(self, failure: Failure, request: web.Request) -> web.StreamResponse:
        kind = failure.kind
        if kind.startswith("html:"):
            status = int(kind.removeprefix("html:"))
            page = f"<html><body><h1>Error {status}</h1><p>origin unreachable</p></body></html>"
            return web.Response(text=page, status=status, content_type="text/html")
        if kind == "unavailable":
            response = self.error_answer(503, "service unavailable")
            response.headers["Retry-After"] = str(math.ceil(failure.reset_in))
            return response
        if kind == "moved":
            location = f"https://{request.host}{request.path_qs}"
            return web.Response(status=301, headers={"Location": location})
        if kind.isdigit():
            return self.error_answer(int(kind), f"fake failure {kind}")
        if kind == "malformed":
            return web.Response(text='{"data": [{"count', content_type="application/json")
        if kind == "bad_shape":
            return web.json_response({"unexpected": ["shape"]})
        raise ValueError(f"unknown failure kind {kind!r}")

    # -- internals ----------------------------------------------------------------------

    def _next_failure(self, request: web.Request) -> Failure | None:
        for failure in self.failures:
            if failure.applies(request):
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        self.failures.remove(failure)
                return failure
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        seen = Seen(
            request.method,
            request.path,
            list(request.query.items()),
            dict(request.headers),
            body,
        )
        self.requests.append(seen)
        request[BODY] = body
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.before_answer is not None:
                self.before_answer(request)
            failure = self._next_failure(request)
            if failure is not None and failure.kind == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), HANG_S)
                raise web.HTTPServiceUnavailable()
            if failure is not None and failure.kind == "unanswered":
                return await self._unanswered(seen, request, handler)
            if failure is not None and failure.kind.startswith("undecodable"):
                return await self._undecodable(failure, request, handler)
            if failure is not None and failure.kind.startswith("cut_short"):
                return await self._cut_short(failure, request, handler)
            if failure is not None:
                return self.failure_response(failure, request)
            try:
                response = await handler(request)
            except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as refused:
                response = self.unrouted(request, refused)
            seen.status = response.status
            if isinstance(response, web.Response) and response.content_type == "application/json":
                with contextlib.suppress(ValueError, TypeError):
                    seen.answer = json.loads(response.body)  # type: ignore[arg-type]
            return response
        finally:
            self.in_flight -= 1

    async def _unanswered(
        self, seen: Seen, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """`handler`'s answer, given once the client has let go of the connection (to no
        one, `let_go`) or the fake stops: the request acted on, its client never answered."""
        answer = await handler(request)
        loop = asyncio.get_running_loop()
        until = loop.time() + HANG_S
        while request.transport is not None and not self._closing.is_set():
            if loop.time() > until:
                break
            await asyncio.sleep(0.01)  # polled: aiohttp no longer cancels the handler
        if request.transport is None:
            self.let_go.append(seen)
        return answer

    async def _undecodable(
        self, failure: Failure, request: web.Request, handler: Handler
    ) -> web.Response:
        """`handler`'s status (it acts) or the kind's (it does not), with a body that says
        gzip and is not."""
        _, _, code = failure.kind.partition(":")
        status = int(code) if code else (await handler(request)).status
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        if code:
            headers["Retry-After"] = str(math.ceil(failure.reset_in))
        return web.Response(status=status, body=b"not gzip!!", headers=headers)

    async def _cut_short(
        self, failure: Failure, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """`handler`'s answer, its connection closed halfway through its body."""
        answer = await handler(request)
        body = answer.body if isinstance(answer, web.Response) else b""
        assert isinstance(body, bytes), "cut_short needs an answer with a bytes body"
        response = web.StreamResponse(
            status=answer.status, headers={"Content-Type": answer.content_type}
        )
        if failure.kind.endswith(":chunked"):
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        assert request.transport is not None
        request.transport.close()  # the body's rest never comes
        return response

    async def _control_fail(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.fail(
            str(spec["kind"]),
            times=spec.get("times"),
            reset_in=float(spec.get("reset_in", 1.0)),
            match=spec.get("match"),
        )
        return web.json_response({"ok": True})

    async def _control_heal(self, request: web.Request) -> web.Response:
        self.heal()
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"method": r.method, "path": r.path, "query": r.query, "body": r.body, "at": r.at}
                for r in self.requests
            ]
        )


def serve_main(factory: Callable[[argparse.Namespace], FakeServer], argv: list[str]) -> None:
    """`python -m tests.fakes.<name> [--port P]`: prints one JSON line when ready."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="test-token")
    args = parser.parse_args(argv)

    async def run() -> None:
        fake = factory(args)
        await fake.start(args.port)
        print(
            json.dumps({"kind": type(fake).__name__, "port": fake.port, "url": fake.url}),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await fake.stop()

    asyncio.run(run())
    sys.exit(0)

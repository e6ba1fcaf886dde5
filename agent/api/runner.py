"""The daemon's HTTP runner: requests the parser refuses answered as problem+json.

aiohttp answers a request it cannot parse (a header over its size limit, a bad
request line, broken chunked framing, TLS bytes on the plain port) itself, before
any application or middleware sees it: a `text/plain` 400 whose body quotes up to
100 bytes of the offending line (an `Authorization` value included), logged at ERROR
with a traceback. `RequestHandler.handle_error` is where it does so, and it is
public, documented ("Handle errors. Returns HTTP response with specific status
code"), with the same signature since aiohttp 1.x; it is the one place that sees
every such failure with its exception. `ApiRunner` wires a subclass in: aiohttp
offers no setting for the protocol class, so the runner's `_make_server` (the
extension point `BaseRunner` declares for its subclasses, stable since 3.0) hands the
`web.Server` aiohttp built to a subclass whose `__call__` (the protocol factory) makes
`ProblemRequestHandler`s with that server's own arguments, as `Server.__call__` does
(its `_loop` and `_kwargs`: private names relied on, unchanged since 3.0, as is the
connection's `_parser`, the parser it feeds, which `RequestFraming` wraps).
Neither replacing aiohttp's code nor patching it: a middleware cannot do this (no
application is involved), nor can the `logger` (it logs; it does not answer).
tests/api/test_edges.py pins the answers, so an aiohttp that moved these hooks fails
there rather than silently answering text again.

The answers: a header line over `MAX_FIELD_BYTES`, or more than `MAX_HEADERS` of
them, is a 431; a request line over `MAX_LINE_BYTES` a 414; a request head not in
within `HEAD_TIMEOUT_S` a 408; anything else a 400. The parser is fed through
`agent.api.framing.RequestFraming`, so that requests pipelined before a malformed one
are answered, a chunked body broken in a later read is the route's 400 at once, and
HTTP/0.9 is refused; the same subclass keeps the head's time limit, which aiohttp
does not have. The `detail` says what to fix in our words and never quotes the request. Each is one
WARNING line from `ServerLog` (DEBUG for bytes that are not HTTP at all: TLS, port
scanners), counted in `postflight_malformed_requests_total`. The server's handler is
the application's wrapped so that an HTTP error raised before the middlewares (the
router's `Expect` check) is a problem too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentEncodingError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.http_parser import HttpRequestParserPy

from agent.api.framing import HeadTimeout, LowerCaseMethod, NoHttpVersion, RequestFraming
from agent.api.problems import (
    CHUNKED_DETAIL,
    ApiProblem,
    from_http_exception,
    status_title,
    undecoded_coding,
)
from agent.api.server_log import ServerLog

MAX_LINE_BYTES = 8190
"""The request line (method, target, version): aiohttp's default, kept. The API's
longest URL, a list query with a cursor, is a few hundred bytes."""
MAX_FIELD_BYTES = 16 * 1024
"""One header line, name and value (aiohttp's default is 8190). Browsers on the deploy
pages send the host's cookies, and single sign-on cookies or a proxy's identity
token (an OIDC JWT) pass 8 KiB in real deployments; 16 KiB is what AWS ALB and
Cloudflare take per header, so a request a proxy in front lets through is not
refused here. With 128 lines at most, a request's header block stays under 2 MiB."""
MAX_HEADERS = 128
"""aiohttp's default."""
HEAD_TIMEOUT_S = 20.0
"""From a connection's opening, or the first byte of a request after the last one,
to the blank line that ends its headers. A client slower than this (a stalled one, or
a "slowloris" trickling a byte at a time to hold the connection) is answered 408 and
dropped; one that opened a connection and sent nothing is dropped without a word.
Real clients send a head in one go (a few KiB at most); 20 s is what Apache's
mod_reqtimeout gives the first byte to the headers, longer than a slow mobile link
needs. aiohttp has no such limit: its only one is the idle timeout below."""
IDLE_TIMEOUT_S = 3630.0
"""A keep-alive connection idle between requests is closed (without a word) after
this: aiohttp's default, kept on purpose. A proxy in front keeps its own idle
connections to us (nginx 60-75 s, an AWS ALB up to 4000 s, Google's 600 s); closing one
first races the proxy's next request on it into a 502 (aio-libs/aiohttp#9138), so
this outlasts theirs."""

_HEADERS = "headers-too-large"
_MALFORMED = "malformed-http"
_REQUEST_LINE = "request line must be `METHOD /path HTTP/1.1` (or HTTP/1.0) ending in CRLF"


def parser_problem(
    exc: HttpProcessingError, *, max_line: int, max_field: int, max_headers: int
) -> tuple[ApiProblem, bool]:
    """What to answer a request the parser refused, and whether it is not HTTP at all
    (noise: logged at DEBUG). The exception's text is never copied: aiohttp's quotes
    the request's bytes (up to 100 of a header's value); the checks below read only
    its type and, for the parser's own reasons, a few fixed words."""
    if isinstance(exc, HeadTimeout):
        return ApiProblem(
            408,
            f"the request line and headers did not all arrive within {HEAD_TIMEOUT_S:g} s "
            "of the connection opening (or of the request's first byte); send them at once",
        ), False
    if isinstance(exc, NoHttpVersion):
        return ApiProblem(
            400,
            "HTTP/0.9 is not served: end the request line with HTTP/1.1, "
            "as in `GET /healthz HTTP/1.1`, and follow it with headers and a blank line",
            slug=_MALFORMED,
        ), False
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == max_line and max_line != max_field:
            return ApiProblem(
                414,
                f"the request line (method, path and query) is over {max_line} bytes; "
                "send a shorter URL",
                slug="request-line-too-long",
            ), False
        return ApiProblem(
            431,
            f"a request header is over {max_field} bytes (name and value together); "
            "send it shorter or leave it out: large cookies or tokens are the usual cause",
            slug=_HEADERS,
        ), False
    if isinstance(exc, ContentEncodingError):  # raised with the headers: br or zstd
        # without their libraries (a body that does not decode is the route's 400)
        return undecoded_coding(), False
    reason = (exc.message or "").partition("\n")[0].lower()
    if isinstance(exc, LowerCaseMethod):
        return ApiProblem(
            400,
            "the method is case-sensitive: send it in capitals, such as GET or POST",
            slug=_MALFORMED,
        ), False
    if isinstance(exc, BadHttpMethod):
        if "https" in reason:
            detail = "this port speaks plain HTTP, not TLS: use http:// (or put TLS in a proxy)"
        else:
            detail = "the request does not begin with an HTTP method such as GET or POST"
        return ApiProblem(400, detail, slug=_MALFORMED), True
    if "too many headers" in reason or "too many trailers" in reason:
        return ApiProblem(
            431,
            f"the request has more than {max_headers} header lines; send fewer",
            slug=_HEADERS,
        ), False
    return ApiProblem(400, _malformed_detail(exc, reason), slug=_MALFORMED), False


def _malformed_detail(exc: HttpProcessingError, reason: str) -> str:
    # the types first: their messages quote the request (the parser's reasons do not)
    if isinstance(exc, BadStatusLine):
        return f"the {_REQUEST_LINE}"
    if isinstance(exc, InvalidURLError):
        return _TARGET
    if isinstance(exc, InvalidHeader):
        # the pure-Python parser names Content-Length so (the C one words it)
        return _CONTENT_LENGTH if exc.hdr.lower() == "content-length" else _HEADER_LINE
    if isinstance(exc, TransferEncodingError):
        return _CHUNKED
    if "transfer-encoding" in reason and "content-length" in reason:
        return "send either Content-Length or Transfer-Encoding: chunked, not both"
    if "content-length" in reason:
        return _CONTENT_LENGTH
    if "transfer-encoding" in reason or "chunk" in reason:
        return _CHUNKED
    if "'host'" in reason:
        return "an HTTP/1.1 request needs exactly one Host header"
    if "duplicate" in reason:  # named from aiohttp's list, not copied from the request
        given = [name for name in _ONE_VALUE_HEADERS if f"'{name}'" in reason]
        named = f"the {given[0].title()} header" if given else "a header that takes one value"
        return f"send {named} once: this request gives it more than once"
    if "header" in reason:
        return _HEADER_LINE
    if "url" in reason:
        return _TARGET
    if "method" in reason or "version" in reason or "status" in reason:
        return f"the {_REQUEST_LINE}"
    return "the request is not valid HTTP/1.1: check its request line, headers and body framing"


_ONE_VALUE_HEADERS = (
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "etag",
    "max-forwards",
    "server",
    "transfer-encoding",
    "user-agent",
)
"""The headers aiohttp's parser refuses twice (RFC 9110's singletons; Host is said apart)."""
_TARGET = (
    "the request target must be a path such as /v1/deploys, "
    "with spaces and control characters percent-encoded"
)
_CONTENT_LENGTH = "Content-Length must be one decimal number of bytes, sent once"
_HEADER_LINE = (
    "every header line must be `Name: value` ending in CRLF: a name without spaces "
    "or separators, a value without control characters (such as NUL), no folded lines"
)
_CHUNKED = CHUNKED_DETAIL


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering its own errors as problem+json, its
    parser fed through `RequestFraming`, and a request head given `HEAD_TIMEOUT_S`."""

    __slots__ = ("_auto_decompress", "_framing", "_head_timer")

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._auto_decompress: bool = kwargs.get("auto_decompress", True)
        self._framing = RequestFraming(self._parser, self._body_broke, self._any_method_parser)
        self._parser = cast(Any, self._framing)  # BaseProtocol's one parser slot
        self._head_timer: asyncio.TimerHandle | None = None

    def _any_method_parser(self) -> HttpRequestParserPy:
        """aiohttp's pure-Python parser, as aiohttp makes its C one for a connection: it
        takes any method token, where the C one refuses those it does not know."""
        return HttpRequestParserPy(
            self,
            self._loop,
            self._read_bufsize,
            max_line_size=self.max_line_size,
            max_field_size=self.max_field_size,
            max_headers=self.max_headers,
            payload_exception=web.RequestPayloadError,
            auto_decompress=self._auto_decompress,
            max_msg_queue_size=self._max_msg_queue_size,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer = self._loop.call_later(HEAD_TIMEOUT_S, self._head_late)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)  # drops aiohttp's own references to the parser
        self._framing.release()

    def data_received(self, data: bytes) -> None:
        framing = self._framing
        super().data_received(data)
        if framing.pending is not None:  # a bad request after good ones in this read
            super().data_received(b"")  # queued after them: aiohttp answers it in turn
        if framing.in_head:
            if self._head_timer is None:
                self._head_timer = self._loop.call_later(HEAD_TIMEOUT_S, self._head_late)
        elif framing.messages or framing.failed:
            self._stop_head_timer()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        framing = self._framing
        if framing.in_head:  # answered 408 after any request still being served
            framing.pending = HeadTimeout()
            self.data_received(b"")
        elif not framing.messages and not framing.failed:  # opened, and not a byte since
            self.force_close()

    def _body_broke(self, exc: HttpProcessingError) -> None:
        """The route reading the body answers it; the log line and count are the
        parser's, as for a request it refused whole."""
        problem, noise = parser_problem(
            exc,
            max_line=self.max_line_size,
            max_field=self.max_field_size,
            max_headers=self.max_headers,
        )
        peer = self.transport.get_extra_info("peername") if self.transport else None
        self._log_malformed(peer[0] if peer else None, problem, noise)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            problem, noise = parser_problem(
                exc,
                max_line=self.max_line_size,
                max_field=self.max_field_size,
                max_headers=self.max_headers,
            )
            self._log_malformed(request.remote, problem, noise)
            if request.writer.output_size > 0:  # as aiohttp: too late to answer
                raise ConnectionError("response already started; cannot answer the error")
        else:
            # a bug past the middlewares (or a handler timeout): aiohttp logs it, with
            # its traceback, and refuses if a response was under way; the answer is ours
            super().handle_error(request, status, exc, message)
            if status == 504:  # a handler timed out (the API sets no such timeout)
                problem = ApiProblem(504, "the request took too long to serve; retry it")
            else:
                problem = ApiProblem(
                    status,
                    "an unexpected error occurred; it has been logged",
                    title=status_title(status),
                    slug="internal-error",
                )
        response = problem.response()
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A body the parser refused after its request reached the API (broken chunks,
        bad gzip) was answered 400 by the route that read it; aiohttp then reads the rest
        of it to keep the connection (its "lingering close"), meets the same error and
        logs it as an unhandled exception with a traceback. It is one line at DEBUG, or
        none when it is broken chunked framing (`_body_broke` logged it)."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, web.RequestPayloadError):
            if exc is self._framing.broken_body:
                return
            self.logger.debug(
                "dropped the rest of a malformed request body: %s", type(exc).__name__
            )
            return
        super().log_exception(*args, **kwargs)

    def _log_malformed(self, remote: str | None, problem: ApiProblem, noise: bool) -> None:
        if isinstance(self.logger, ServerLog):
            self.logger.malformed(remote, problem.status, problem.detail, noise=noise)
        else:  # a runner given another logger: the same line, uncounted
            level = logging.DEBUG if noise else logging.WARNING
            self.logger.log(
                level,
                "malformed HTTP request from %s: %d %s",
                remote or "?",
                problem.status,
                problem.detail,
            )


def _problems_for_http_errors(
    handle: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The application's handler, with an HTTP error it raises outside its middlewares
    as problem+json: the router runs a route's `Expect` handler before them, so an
    `Expect` other than 100-continue was aiohttp's text/plain 417 echoing the header."""

    async def handle_request(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handle(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return from_http_exception(exc)

    return handle_request


class ProblemServer(web.Server):
    """`web.Server` whose connections are `ProblemRequestHandler`s."""

    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """`web.AppRunner` for the API: parser errors as problem+json, the limits above
    (any given in `kwargs` win)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_FIELD_BYTES)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        kwargs.setdefault("keepalive_timeout", IDLE_TIMEOUT_S)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # starts the application, as AppRunner does
        return ProblemServer(
            _problems_for_http_errors(server.request_handler),
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )

"""Quiet, safe edges of the daemon's HTTP server, as `postflight run` serves it.

A request the HTTP parser refuses never reaches a route, so aiohttp answered it
itself: a text/plain 400 quoting up to 100 bytes of the offending line (a bearer
token included), whatever the failure. Now it is problem+json like every other API
error, with the status that names it (431 for headers, 414 for the request line),
a detail that says what to fix and quotes nothing of the request; one log line
without a traceback (WARNING; DEBUG for bytes that are not HTTP at all), counted.
No response names the Python or aiohttp version in `Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParserPy

from agent.api import routes, runner
from agent.api.problems import CHUNKED_DETAIL
from agent.api.runner import MAX_FIELD_BYTES, MAX_HEADERS, MAX_LINE_BYTES, parser_problem
from agent.app import api_runner, serve
from agent.metrics import Metrics
from tests.api.harness import AUTH, make_settings
from tests.e2e.crash import free_port

SECRET = "pf-SENTINEL-token-7Qx9"
"""Stands for a bearer token: it must never come back in an answer or reach a log."""
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n"


def request(
    line: bytes = b"GET /healthz HTTP/1.1", headers: list[bytes] | None = None, body: bytes = b""
) -> bytes:
    return b"\r\n".join([line, b"Host: x", *(headers or [])]) + b"\r\n\r\n" + body


def post(*headers: bytes, body: bytes = b"") -> bytes:
    auth = b"Authorization: " + AUTH["Authorization"].encode()
    kind = b"Content-Type: application/json"
    return request(b"POST /v1/deploys HTTP/1.1", [auth, kind, *headers], body)


# id, the request, the status, words its detail has, the log level (DEBUG: not HTTP at all)
REFUSED: list[tuple[str, bytes, int, str, int]] = [
    (
        "token-over-16-KiB",
        request(headers=[b"Authorization: Bearer " + SECRET.encode() * 1000]),
        431,
        f"over {MAX_FIELD_BYTES} bytes",
        logging.WARNING,
    ),
    (
        "cookie-over-16-KiB",
        request(headers=[b"Cookie: sso=" + b"c" * MAX_FIELD_BYTES]),
        431,
        "header",
        logging.WARNING,
    ),
    (
        "too-many-headers",
        request(headers=[b"X-H%d: v" % i for i in range(MAX_HEADERS + 1)]),
        431,
        f"more than {MAX_HEADERS} header",
        logging.WARNING,
    ),
    (
        "request-line-over-8190",
        request(b"GET /v1/deploys?limit=" + b"9" * MAX_LINE_BYTES + b" HTTP/1.1"),
        414,
        "shorter URL",
        logging.WARNING,
    ),
    (
        "nul-in-a-token",
        request(headers=[b"Authorization: Bearer " + SECRET.encode() + b"\x00"]),
        400,
        "control characters",
        logging.WARNING,
    ),
    ("space-in-a-name", request(headers=[b"Bad Header: y"]), 400, "Name: value", logging.WARNING),
    ("folded-line", request(headers=[b"X-A: a", b" b"]), 400, "Name: value", logging.WARNING),
    (
        "ctl-in-the-path",
        request(b"GET /he\x01lthz HTTP/1.1"),
        400,
        "percent-encoded",
        logging.WARNING,
    ),
    ("bad-version", request(b"GET /healthz HTTP/9.9"), 400, "HTTP/1.1", logging.WARNING),
    ("two-hosts", request(headers=[b"Host: y"]), 400, "one Host header", logging.WARNING),
    (
        "two-content-types",
        post(b"Content-Type: text/plain", body=b"{}"),
        400,
        "send the Content-Type header once",
        logging.WARNING,
    ),
    ("bad-content-length", post(b"Content-Length: 1x"), 400, "Content-Length", logging.WARNING),
    (
        "length-and-chunked",
        post(b"Content-Length: 2", b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"),
        400,
        "not both",
        logging.WARNING,
    ),
    (
        "bad-chunk-size",
        post(b"Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n"),
        400,
        "chunk",
        logging.WARNING,
    ),
    # HTTP/0.9: the parser waited for headers that never come, or answered `HTTP/0.9 200`
    ("http-0.9", b"GET /healthz\r\n", 400, "HTTP/0.9", logging.WARNING),
    ("http-0.9-with-headers", request(b"GET /healthz"), 400, "HTTP/0.9", logging.WARNING),
    ("bad-method", request(b"G(T /healthz HTTP/1.1"), 400, "HTTP method", logging.DEBUG),
    ("tls-hello", TLS_HELLO, 400, "not TLS", logging.DEBUG),
    ("ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n", 400, "HTTP method", logging.DEBUG),
]


async def raw(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the server answers before it
    closes (or 5 s pass)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                answer += chunk
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return answer


def problem(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The status, headers (lower-case names) and JSON body of a raw answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path) -> AsyncIterator[tuple[int, Metrics]]:
    """`postflight run`'s `serve`, on a free port, until the block ends."""
    port = free_port()
    settings = make_settings()
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"listen": f"127.0.0.1:{port}"}),
            "store": settings.store.model_copy(update={"url": f"sqlite:///{tmp_path}/e.db"}),
        }
    )
    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, metrics=metrics, background_probing=False))
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the daemon never answered /healthz")
    try:
        yield port, metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[int, Metrics]]:
    async with running_daemon(tmp_path) as running:
        yield running


@pytest.mark.parametrize(
    ("data", "status", "words", "level"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
async def test_a_request_the_parser_refuses_is_a_problem_logged_once_without_secrets(
    daemon: tuple[int, Metrics],
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    status: int,
    words: str,
    level: int,
) -> None:
    port, metrics = daemon
    caplog.set_level(logging.DEBUG)
    answer = await raw(port, data)
    code, headers, body = problem(answer)
    assert code == status, answer[:300]
    assert headers["content-type"].startswith("application/problem+json"), headers
    assert body["status"] == status and body["type"].startswith("urn:postflight:problem:")
    assert body["title"] and words in body["detail"], body
    assert set(body) == {"type", "title", "status", "detail"}, body
    assert SECRET.encode() not in answer
    server_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.levelno for r in server_records] == [level], server_records
    [record] = server_records
    assert record.exc_info is None and "Traceback" not in caplog.text
    assert (
        record.getMessage() == f"malformed HTTP request from 127.0.0.1: {status} {body['detail']}"
    )
    assert SECRET not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert metrics.registry.get_sample_value("postflight_malformed_requests_total") == 1


@pytest.mark.parametrize("path", [b"/v1/deploys", b"/nowhere"])
async def test_an_expectation_other_than_100_continue_is_a_417_problem(
    daemon: tuple[int, Metrics], path: bytes
) -> None:
    """The router answers `Expect` before any middleware: it was a text/plain 417
    quoting the header."""
    port, _ = daemon
    answer = await raw(
        port,
        request(
            b"POST " + path + b" HTTP/1.1", [b"Expect: " + SECRET.encode(), b"Connection: close"]
        ),
    )
    code, headers, body = problem(answer)
    assert code == 417 and headers["content-type"].startswith("application/problem+json")
    assert body["type"] == "urn:postflight:problem:expectation-failed", body
    assert "100-continue" in body["detail"] and SECRET.encode() not in answer


async def test_headers_up_to_16_kib_are_served(daemon: tuple[int, Metrics]) -> None:
    """A proxy's identity token and a single-sign-on cookie, each past aiohttp's 8190
    bytes (a 400 before) and within the 16 KiB a header may have."""
    port, _ = daemon
    big = {"X-Amzn-Oidc-Data": "j" * 12_000, "Cookie": "sso=" + "c" * (MAX_FIELD_BYTES - 100)}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{port}/v1/deploys"
        async with http.get(url, headers={**AUTH, **big}) as response:
            assert response.status == 200, await response.text()
        body = {"environment": "production", "version": "v1"}
        async with http.post(url, headers={**AUTH, **big}, json=body) as response:
            assert response.status == 201, await response.text()


async def test_a_body_that_does_not_decode_is_a_400_and_no_error_log(
    daemon: tuple[int, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    """The route answers 400; aiohttp then reads the rest of the body, meets the same
    error and logged it at ERROR with a traceback ("Unhandled exception")."""
    port, _ = daemon
    caplog.set_level(logging.DEBUG)
    answer = await raw(port, post(b"Content-Encoding: gzip", b"Content-Length: 10", body=b"0" * 10))
    code, headers, body = problem(answer)
    assert code == 400 and headers["content-type"].startswith("application/problem+json")
    assert "Content-Encoding" in body["detail"], body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip"])
async def test_a_content_encoding_the_agent_does_not_decode_is_a_415_naming_it(
    daemon: tuple[int, Metrics], monkeypatch: pytest.MonkeyPatch, coding: str
) -> None:
    """RFC 9110 §15.5.16: a content coding the server cannot decode is a 415. One aiohttp
    knows but cannot decode here (br, zstd without their libraries: refused as the
    headers are parsed) was a 400 'not valid HTTP/1.1: check its request line, headers
    and body framing'; one it does not know (`compress`, two codings) reached the route
    as if not encoded, and a plain body under it was registered (live audit)."""
    from aiohttp import http_parser

    monkeypatch.setattr(http_parser, "HAS_BROTLI", False)
    monkeypatch.setattr(http_parser, "HAS_ZSTD", False)
    port, _ = daemon
    document = json.dumps({"environment": "production", "version": "v1"}).encode()
    answer = await raw(
        port,
        request(
            b"POST /v1/deploys HTTP/1.1",
            [
                f"Authorization: {AUTH['Authorization']}".encode(),
                b"Content-Type: application/json",
                b"Content-Encoding: " + coding.encode(),
                b"Content-Length: %d" % len(document),
                b"Connection: close",
            ],
            document,
        ),
    )
    code, headers, body = problem(answer)
    assert code == 415 and headers["content-type"].startswith("application/problem+json"), body
    assert "Content-Encoding" in body["detail"] and "gzip" in body["detail"], body
    url = f"http://127.0.0.1:{port}/v1/deploys"
    async with aiohttp.ClientSession() as http, http.get(url, headers=AUTH) as listed:
        assert (await listed.json())["items"] == []


async def test_a_bug_past_the_middlewares_is_a_500_problem_and_still_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the client's mistakes are quiet: an exception no middleware caught keeps
    aiohttp's ERROR with its traceback, and its answer is a problem too."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application()
    app.router.add_get("/broken", broken)
    runner = api_runner(app, Metrics(), in_flight_s=2.0)  # the daemon's, its ServerLog
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        code, headers, body = problem(await raw(port, request(b"GET /broken HTTP/1.1")))
    finally:
        await runner.cleanup()
    assert code == 500 and headers["content-type"].startswith("application/problem+json")
    assert body["type"] == "urn:postflight:problem:internal-error", body
    assert "a bug" not in json.dumps(body)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


PYTHON_PARSER_TAKES = {
    "bad-version": "HTTP/9.9 is a version to it",
    "bad-chunk-size": "the body is the payload parser's, not fed here",
    "ssh-banner": "it waits for the blank line that ends the headers",
    "http-0.9": "it waits for headers: the runner's RequestFraming reads the line",
    "http-0.9-with-headers": "a 400 too, in its words: a bad method (noise, at DEBUG)",
}


def _python_parser_error(data: bytes) -> HttpProcessingError:
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParserPy(
            None,  # no body is parsed: no protocol needed
            loop,
            2**16,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
        )
        with pytest.raises(HttpProcessingError) as raised:
            parser.feed_data(data)
        return raised.value
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("data", "status", "words", "level"),
    [case[1:] for case in REFUSED if case[0] not in PYTHON_PARSER_TAKES],
    ids=[case[0] for case in REFUSED if case[0] not in PYTHON_PARSER_TAKES],
)
def test_the_pure_python_parser_gets_the_same_answers(
    data: bytes, status: int, words: str, level: int
) -> None:
    """aiohttp without its C extension (`AIOHTTP_NO_EXTENSIONS`, a platform without a
    wheel) raises other exceptions with other words; the answers are the same."""
    exc = _python_parser_error(data)
    answer, noise = parser_problem(
        exc, max_line=MAX_LINE_BYTES, max_field=MAX_FIELD_BYTES, max_headers=MAX_HEADERS
    )
    assert (answer.status, noise) == (status, level == logging.DEBUG), exc
    assert words in answer.detail and SECRET not in answer.detail


async def test_no_response_names_the_server_software_version(
    daemon: tuple[int, Metrics],
) -> None:
    port, _ = daemon
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/v1/deploys", "/nowhere", "/metrics"):
            async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                assert response.headers["Server"] == "postflight", path
    answer = await raw(port, request(headers=[b"X-Bad: a\x00b"]))
    headers = answer.split(b"\r\n\r\n")[0].lower()
    assert b"\r\nserver: postflight\r\n" in headers + b"\r\n", answer
    assert b"python" not in headers and b"aiohttp" not in headers


# --- time limits, pipelining and bodies broken in a later read ---------------------

GOOD = request(b"GET /healthz HTTP/1.1")
GOOD_THEN_CLOSE = request(b"GET /healthz HTTP/1.1", [b"Connection: close"])
"""GOOD, asking the server to close after it: a read to the close (`raw`) ends at its answer."""


async def until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it closed the connection within 5 s."""
    answer = b""
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                answer += chunk
            return answer, True
    except (TimeoutError, ConnectionError):
        return answer, False
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def answers(data: bytes) -> list[tuple[int, str, bytes]]:
    """The responses in a raw answer, in order: status, content type, body."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers, _ = problem(head + b"\r\n\r\n{}")
        length = int(headers["content-length"])
        out.append((status, headers["content-type"], rest[:length]))
        data = rest[length:]
    return out


@pytest.fixture
def head_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    """`HEAD_TIMEOUT_S` at 0.3 s (20 s as shipped): read at each connection."""
    monkeypatch.setattr(runner, "HEAD_TIMEOUT_S", 0.3)
    return 0.3


async def trickled_until_closed(port: int, head: bytes) -> tuple[bytes, bool]:
    """A slowloris on a plain socket: `head`, then a byte of it every 0.1 s, until the
    server closes the connection (within 5 s); everything it sent, and whether it closed.

    Not `until_closed`'s stream: a byte sent after the server's answer and close meets a
    closed socket and the server's side resets the connection. The kernel still hands
    over the answer before the reset, but `StreamReader.read` raises a reset it has heard
    of before the bytes it holds: on a busy machine, whose test loop came late to the
    answer, it was lost and the close taken for no close. A reset is the server's close."""
    loop = asyncio.get_running_loop()
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setblocking(False)
        try:
            await loop.sock_sendall(sock, head)
            async with asyncio.timeout(5):
                while True:
                    try:
                        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 0.1)
                    except TimeoutError:
                        await loop.sock_sendall(sock, head[-1:])
                        continue
                    if not chunk:
                        return answer, True
                    answer += chunk
        except ConnectionError:
            return answer, True
        except TimeoutError:
            return answer, False


async def test_a_request_head_trickled_past_the_limit_is_a_408_problem_and_closed(
    daemon: tuple[int, Metrics], head_timeout: float, caplog: pytest.LogCaptureFixture
) -> None:
    """A slowloris: a byte of its headers every 0.1 s holds the connection as long as
    it likes without a limit on the whole head (aiohttp's is its idle timeout, an
    hour, and it closes without a word). The bytes keep coming; the answer is a 408."""
    port, metrics = daemon
    answer, closed = await trickled_until_closed(port, b"GET /healthz HTTP/1.1\r\nX-Slow: a")
    assert closed, answer
    [(status, kind, body)] = answers(answer)
    assert status == 408 and kind.startswith("application/problem+json"), answer
    detail = json.loads(body)["detail"]
    assert "did not all arrive within 0.3 s" in detail and "send them at once" in detail
    assert metrics.registry.get_sample_value("postflight_malformed_requests_total") == 1
    assert f"malformed HTTP request from 127.0.0.1: 408 {detail}" in caplog.messages


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    daemon: tuple[int, Metrics], head_timeout: float
) -> None:
    port, metrics = daemon
    answer, closed = await until_closed(*await asyncio.open_connection("127.0.0.1", port))
    assert (answer, closed) == (b"", True)
    assert metrics.registry.get_sample_value("postflight_malformed_requests_total") == 0


async def test_a_slow_body_is_not_held_to_the_head_limit(
    daemon: tuple[int, Metrics], head_timeout: float
) -> None:
    """The limit ends at the blank line after the headers: the body has the routes'
    own (`BODY_READ_TIMEOUT_S`), and a keep-alive connection waiting for its next
    request is idle, not late."""
    port, _ = daemon
    body = json.dumps({"environment": "production", "version": "v1"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(b"Content-Length: %d" % len(body)))
    for part in (body[:5], body[5:10], body[10:]):
        await asyncio.sleep(head_timeout / 2)
        writer.write(part)
    await asyncio.sleep(head_timeout * 2)  # idle on a keep-alive connection
    writer.write(GOOD_THEN_CLOSE)
    answer, closed = await until_closed(reader, writer)
    assert closed and [(s, k.split(";")[0]) for s, k, _ in answers(answer)] == [
        (201, "application/json"),
        (200, "application/json"),
    ], answer


async def test_a_keep_alive_connection_idle_past_the_limit_is_closed_without_a_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, head_timeout: float
) -> None:
    """`IDLE_TIMEOUT_S` (aiohttp's hour, kept so a proxy in front closes first)."""
    monkeypatch.setattr(runner, "IDLE_TIMEOUT_S", 0.5)
    async with running_daemon(tmp_path) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GOOD)
        answer, closed = await until_closed(reader, writer)
    assert closed and [status for status, _, _ in answers(answer)] == [200], answer


BROKEN_CHUNKS = [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2 \r\n{}\r\n0\r\n\r\n"]


@pytest.mark.parametrize("chunks", BROKEN_CHUNKS, ids=["size", "no-crlf-after-data", "space"])
async def test_chunked_framing_broken_in_a_later_read_than_the_headers_is_a_400_at_once(
    daemon: tuple[int, Metrics],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    chunks: bytes,
) -> None:
    """aiohttp's C parser raised the error out of the read without telling the body, so
    the route waited for its body until its timeout (a 408 after 10 s, the error never
    answered). The body timeout is an hour here: the answer cannot be it."""
    monkeypatch.setattr(routes, "BODY_READ_TIMEOUT_S", 3600.0)
    port, metrics = daemon
    caplog.set_level(logging.DEBUG)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post(b"Transfer-Encoding: chunked"))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(chunks)
    answer, closed = await until_closed(reader, writer)
    assert closed, answer
    [(status, kind, body)] = answers(answer)
    assert status == 400 and kind.startswith("application/problem+json"), answer
    assert json.loads(body)["detail"] == CHUNKED_DETAIL
    server_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.getMessage() for r in server_records] == [
        f"malformed HTTP request from 127.0.0.1: 400 {CHUNKED_DETAIL}"
    ]
    assert metrics.registry.get_sample_value("postflight_malformed_requests_total") == 1


PIPELINED_BAD = [
    request(b"GET /he\x01lthz HTTP/1.1"),
    request(headers=[b"Bad Header: y"]),
    b"GET /healthz\r\n",
    post(b"Transfer-Encoding: chunked", body=BROKEN_CHUNKS[0]),
]


@pytest.mark.parametrize("bad", PIPELINED_BAD, ids=["ctl-in-path", "bad-header", "0.9", "chunks"])
async def test_a_good_request_pipelined_before_a_malformed_one_is_answered_first(
    daemon: tuple[int, Metrics], bad: bytes
) -> None:
    """Both in one read: aiohttp's parser raised at the second and dropped the first,
    parsed already; only the 400 came back."""
    port, _ = daemon
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GOOD + GOOD + bad)
    answer, closed = await until_closed(reader, writer)
    assert closed
    got = [(status, kind.split(";")[0]) for status, kind, _ in answers(answer)]
    assert got == [
        (200, "application/json"),
        (200, "application/json"),
        (400, "application/problem+json"),
    ], answer


# --- a method the HTTP parser does not know ----------------------------------------

AUTH_LINE = b"Authorization: " + AUTH["Authorization"].encode()
UNKNOWN_METHOD_ANSWERS = [
    (b"/healthz", [], 405, "GET,HEAD"),
    (b"/v1/deploys", [], 401, None),
    (b"/v1/deploys", [AUTH_LINE], 405, "GET,HEAD,POST"),
    (b"/nowhere", [], 404, None),
]


@pytest.mark.parametrize("method", [b"FOO", b"BREW", b"X_CUSTOM.1"])
async def test_a_method_the_parser_does_not_know_is_answered_as_any_other_method(
    daemon: tuple[int, Metrics], method: bytes
) -> None:
    """`FOO /healthz HTTP/1.1` is well-formed HTTP (a method is any token): aiohttp's C
    parser knows a fixed list of methods and refused the rest, so it was a 400 saying
    "the request does not begin with an HTTP method", where `PROPFIND` or `PURGE` were
    the router's 405 with `Allow` (and every method aiohttp's pure-Python parser's).
    Now any method is routed alike: the token first on /v1, 405 with `Allow` on a route,
    404 elsewhere; the connection is kept and serves the next request."""
    port, metrics = daemon
    # the good request after it asks to close: a connection kept alive held each of the
    # 12 reads (`raw`, to the close) to its 5 s, 60 s of the three cases
    for path, carried, status, allow in UNKNOWN_METHOD_ANSWERS:
        answer = await raw(
            port, request(method + b" " + path + b" HTTP/1.1", carried) + GOOD_THEN_CLOSE
        )
        got = answers(answer)
        assert [code for code, _, _ in got] == [status, 200], answer[:300]
        head, _, _ = answer.partition(b"\r\n\r\n")
        _, headers, body = problem(head + b"\r\n\r\n" + got[0][2])
        assert headers["content-type"].startswith("application/problem+json"), headers
        assert body["status"] == status and "HTTP method" not in body["detail"], body
        assert headers.get("allow") == allow, headers
    assert not metrics.registry.get_sample_value("postflight_malformed_requests_total")


async def test_a_method_in_lower_case_is_not_taken_for_the_upper_case_one(
    daemon: tuple[int, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    """A method is case-sensitive (RFC 9110 §9.1): `get` is not GET, nor `post` POST. The
    400 says so (it said the request "does not begin with an HTTP method"), logged as a
    client's mistake, not as noise that is not HTTP at all."""
    port, _ = daemon
    for line in (b"get /healthz HTTP/1.1", b"post /v1/deploys HTTP/1.1", b"Post /x HTTP/1.1"):
        code, _, body = problem(
            await raw(port, post(body=b"{}").replace(b"POST /v1/deploys HTTP/1.1", line))
        )
        assert code == 400 and body["type"] == "urn:postflight:problem:malformed-http", body
        assert "case-sensitive" in body["detail"], body
    server_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.levelno for r in server_records] == [logging.WARNING] * 3, server_records
    # nor once a method the C parser does not know handed the connection to the
    # pure-Python parser, which upper-cases what it reads
    second = post(body=b"{}").replace(b"POST /v1/deploys HTTP/1.1", b"post /v1/deploys HTTP/1.1")
    answer = await raw(port, request(b"FOO /healthz HTTP/1.1") + second)
    assert [code for code, _, _ in answers(answer)] == [405, 400], answer[:400]


@pytest.mark.parametrize(
    ("key", "status"),
    [(b"k" * 255, 201), (b"k" * 256, 422), ("r\u00e9try-1".encode(), 422), (b"\t", 422)],
    ids=["255-taken", "256", "non-ascii", "blank"],
)
async def test_an_idempotency_key_is_1_to_255_printable_ascii_through_the_daemon(
    daemon: tuple[int, Metrics], key: bytes, status: int
) -> None:
    """The README's "`Idempotency-Key` (1–255 printable ASCII)", as `run` serves it: the
    bytes as a client sends them, through aiohttp's parser (which strips a blank value to
    nothing), the longest taken and one past it, or a non-ASCII one, a 422 naming it."""
    port, _ = daemon
    body = json.dumps({"environment": "production", "version": "v2"}).encode()
    length = f"Content-Length: {len(body)}".encode()
    answer = await raw(
        port, post(b"Idempotency-Key: " + key, length, b"Connection: close", body=body)
    )
    got, _, document = problem(answer)
    assert got == status, document
    if status == 422:
        assert [e["loc"] for e in document["errors"]] == [["header", "Idempotency-Key"]]

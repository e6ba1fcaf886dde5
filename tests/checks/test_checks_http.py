"""The `http` check on real local servers: one probe, one sample, failures say expected vs got."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from yarl import URL

from checks.base import CheckResult
from checks.expect import Body, Expect, Expectation
from checks.http import HttpCheck, HttpCheckConfig
from checks.registry import run_check
from checks.sessions import USER_AGENT, TargetSessions
from common.durations import format_duration
from common.redaction import Redactor
from tests.checks.check_target import PROBE_PATHS, SECRET, MakeContext, free_port, target_app


@pytest.fixture(autouse=True, params=sorted(PROBE_PATHS))
def probe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case runs both ways a probe runs (`PROBE_PATHS`), with the same outcome."""
    monkeypatch.setattr(sys.modules[__name__], "run_check", PROBE_PATHS[request.param])
    return str(request.param)


def http_check(**fields: Any) -> HttpCheck:
    return HttpCheck(HttpCheckConfig.model_validate({"name": "probe", "type": "http", **fields}))


async def probe(make_ctx: MakeContext, base: URL | str, **fields: Any) -> CheckResult:
    return await run_check(http_check(**fields), make_ctx(base))


async def test_healthy_target_passes_with_one_sample(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(
        make_ctx,
        target,
        path="/ok",
        expect={"status": 200, "max_latency": "5s", "json": {"status": "ok"}},
    )
    assert result.ok, result.message
    assert result.result == "pass"
    (sample,) = result.samples
    assert sample.ok and sample.status == 200 and sample.error is None
    assert sample.latency_s is not None and sample.latency_s > 0
    assert sample.bytes > 0 and sample.target == "deploy" and sample.check == "probe"
    assert result.details["status"] == 200
    assert result.duration_s >= sample.latency_s


@pytest.mark.parametrize(
    ("status", "path", "ok"),
    [
        (200, "/ok", True),
        ([200, 204], "/status/204", True),
        ("2xx", "/status/503", False),
        ("5xx", "/status/503", True),
        (["2xx", 404], "/status/404", True),
        (["2xx", 404], "/status/410", False),
        ("503", "/status/503", True),
    ],
)
async def test_status_as_code_list_or_class(
    make_ctx: MakeContext, target: URL, status: Any, path: str, ok: bool
) -> None:
    result = await probe(make_ctx, target, path=path, expect={"status": status})
    assert result.ok is ok, result.message
    assert result.samples[0].error == (None if ok else "status")


async def test_default_expectation_is_any_2xx(make_ctx: MakeContext, target: URL) -> None:
    assert (await probe(make_ctx, target, path="/status/204")).ok
    failed = await probe(make_ctx, target, path="/status/500")
    assert not failed.ok
    assert "status: expected 2xx, got 500" in failed.message


async def test_status_failure_says_expected_and_got(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, target, path="/status/503", expect={"status": 200})
    assert not result.ok and result.result == "fail"
    assert result.message == "GET /status/503: status: expected 200, got 503"
    assert result.samples[0].status == 503
    assert result.samples[0].latency_s is not None


async def test_json_values_by_key_and_jsonpath(make_ctx: MakeContext, target: URL) -> None:
    passing = await probe(
        make_ctx,
        target,
        path="/ok",
        expect={
            "json": {
                "status": "ok",
                "$.data.items[0].id": 1,
                "$.data.items[?(@.id > 1)].id": 2,
                "$.version": "2.4.1",
            }
        },
    )
    assert passing.ok, passing.message

    failing = await probe(
        make_ctx,
        target,
        path="/ok",
        expect={"json": {"$.version": "2.4.2", "$.data.items[*].id": 1, "missing": True}},
    )
    assert not failing.ok
    assert failing.samples[0].error == "assertion"
    assert '$.version: expected "2.4.2", got "2.4.1"' in failing.message
    assert "$.data.items[*].id: expected 1, got 2" in failing.message
    assert "missing: expected true, got no such field" in failing.message


async def test_json_assertion_on_a_body_that_is_not_json(
    make_ctx: MakeContext, target: URL
) -> None:
    result = await probe(make_ctx, target, path="/notjson", expect={"json": {"status": "ok"}})
    assert not result.ok
    assert "body: expected JSON, got '<html>oops</html>'" in result.message


async def test_a_body_nested_past_pythons_stack_is_the_targets_failure_not_a_check_bug(
    make_ctx: MakeContext, aiohttp_server: AiohttpServer
) -> None:
    """A target answering JSON nested 100,000 deep (a serializer looping on a recursive
    structure) made `json.loads` overflow the stack: the run was said to be the check's own
    bug, "not evidence about the target", left out of the evidence, so such a release
    could never fail (rules inconclusive, never rolled back). It is a body that is not the
    JSON expected: a failed probe, as any unreadable body is; for a smoke step's capture
    too."""
    deep = b'{"status": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=deep, content_type="application/json")

    app = web.Application()
    app.router.add_get("/deep", answer)
    base = (await aiohttp_server(app)).make_url("")
    result = await probe(make_ctx, base, path="/deep", expect={"json": {"status": "ok"}})
    assert not result.ok and result.samples[0].error == "assertion", result.message
    assert 'body: expected JSON, got \'{"status": [[[[' in result.message, result.message
    with pytest.raises(ValueError, match="nested too deeply"):
        Body(deep).json()


async def test_json_true_is_not_one(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(
        make_ctx, target, path="/ok", expect={"json": {"$.data.items[0].id": True}}
    )
    assert not result.ok
    assert "expected true, got 1" in result.message


async def test_body_regex_with_secrets_redacted(make_ctx: MakeContext, target: URL) -> None:
    assert (await probe(make_ctx, target, path="/text", expect={"body_regex": r"hello \w+"})).ok
    check = http_check(path="/text", expect={"body_regex": "^goodbye"})
    result = await run_check(check, make_ctx(target, secrets=(SECRET,)))
    assert not result.ok
    assert "body: expected to match /^goodbye/" in result.message
    assert "hello world, token=***" in result.message
    assert SECRET not in result.message


async def test_header_assertions_exact_or_regex(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(
        make_ctx,
        target,
        path="/ok",
        expect={"headers": {"X-Version": "2.4.1", "content-type": r"application/json.*"}},
    )
    assert result.ok, result.message
    regex = await probe(
        make_ctx, target, path="/ok", expect={"headers": {"x-version": r"2\.4\.\d+"}}
    )
    assert regex.ok, regex.message

    failed = await probe(
        make_ctx,
        target,
        path="/ok",
        expect={"headers": {"X-Version": "3.0.0", "X-Missing": "x"}},
    )
    assert not failed.ok
    assert "header X-Version: expected '3.0.0', got '2.4.1'" in failed.message
    assert "header X-Missing: expected 'x', got no such header" in failed.message


async def test_redirects_followed_or_judged(make_ctx: MakeContext, target: URL) -> None:
    followed = await probe(make_ctx, target, path="/redirect", expect={"json": {"status": "ok"}})
    assert followed.ok, followed.message

    not_followed = await probe(make_ctx, target, path="/redirect", follow_redirects=False)
    assert not not_followed.ok
    assert "expected 2xx, got 302" in not_followed.message
    assert (
        await probe(
            make_ctx, target, path="/redirect", follow_redirects=False, expect={"status": 302}
        )
    ).ok

    looping = await probe(make_ctx, target, path="/loop", max_redirects=3)
    assert not looping.ok
    assert looping.samples[0].error == "status"
    assert "too many redirects" in looping.message


async def hits(base: URL, key: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(base / "seen" / key) as resp:
        return int((await resp.json())["hits"])


async def test_a_followed_redirect_sends_each_hop_once_and_times_them_all(
    make_ctx: MakeContext, target: URL
) -> None:
    result = await probe(make_ctx, target, path="/hops/first?ms=100&to=/count/second")
    assert result.ok, result.message
    # counted at the target: the redirecting request once, then its Location once
    assert await hits(target, "first") == 1 and await hits(target, "second") == 1
    (sample,) = result.samples
    assert sample.latency_s is not None and sample.latency_s >= 0.1  # the first hop's too


async def test_a_redirect_loop_is_cut_at_max_redirects_counted_at_the_target(
    make_ctx: MakeContext, target: URL
) -> None:
    looping = await probe(make_ctx, target, path="/hops/loop", max_redirects=3)
    assert not looping.ok and looping.samples[0].error == "status"
    assert "too many redirects (more than 3)" in looping.message
    assert await hits(target, "loop") == 4  # the request, then the three redirects followed


@pytest.mark.parametrize("method", ["GET", "HEAD"])  # the lean client, and aiohttp alone
async def test_max_redirects_is_how_many_are_followed_whichever_client_sends(
    make_ctx: MakeContext, target: URL, method: str
) -> None:
    """aiohttp reads 0 as no limit, and fails at the redirect that reaches its limit: a
    HEAD probe with `max_redirects: 0` once sent a looping target 1,237 requests."""
    none = await probe(
        make_ctx, target, path=f"/hops/zero-{method}", method=method, max_redirects=0
    )
    assert "too many redirects (more than 0)" in none.message
    assert await hits(target, f"zero-{method}") == 1
    one = await probe(
        make_ctx,
        target,
        path=f"/hops/one-{method}?to=/hops/end-{method}%3Fto%3D/ok",
        method=method,
        max_redirects=1,
    )
    assert "too many redirects (more than 1)" in one.message
    assert await hits(target, f"one-{method}") == 1 and await hits(target, f"end-{method}") == 1
    two = await probe(
        make_ctx,
        target,
        path=f"/hops/two-{method}?to=/hops/last-{method}%3Fto%3D/ok",
        method=method,
        max_redirects=2,
        expect={"status": 200},
    )
    assert two.ok, two.message


@pytest.mark.parametrize(
    ("location", "followed"),
    [
        ("ftp://127.0.0.1/x", False),
        ("http://[::1/x", False),
        ("http:/count/bare", True),
        ("https:/count/bare", False),  # another scheme, no host: aiohttp refuses it too
    ],
)
async def test_a_location_the_client_cannot_take_is_judged_with_the_first_hop_sent_once(
    make_ctx: MakeContext, target: URL, location: str, followed: bool
) -> None:
    key = f"odd-{abs(hash(location))}"
    result = await probe(make_ctx, target, path=f"/hops/{key}?to={quote(location)}")
    assert await hits(target, key) == 1
    if followed:  # `http:/path` is this origin's /path, as browsers and aiohttp read it
        assert result.ok, result.message
    else:
        assert not result.ok and result.samples[0].error == "status"
        assert "redirected (302) to a" in result.message


@pytest.mark.parametrize(
    ("status", "method", "body"), [(303, "GET", ""), (307, "PUT", "v=2"), (302, "PUT", "v=2")]
)
async def test_a_redirected_put_is_sent_on_as_aiohttp_would(
    make_ctx: MakeContext, target: URL, status: int, method: str, body: str
) -> None:
    """303 turns the request into a GET without its body; 307 (and 302, but for a POST)
    keep the method and the body."""
    result = await probe(
        make_ctx,
        target,
        path=f"/hops/put-{status}?status={status}&to=/echo",
        method="PUT",
        body="v=2",
        expect={"json": {"method": method, "body": body}},
    )
    assert result.ok, result.message
    assert await hits(target, f"put-{status}") == 1


async def test_slow_target_times_out(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, target, path="/slow?ms=3000", timeout="200ms")
    assert not result.ok
    assert result.samples[0].error == "timeout"
    assert result.message == "GET /slow?ms=3000: no response within 200ms"
    assert not result.details.get("crashed")
    # a timeout is a latency too, the wait's lower bound: latency rules see a hung target
    latency = result.samples[0].latency_s
    assert latency is not None and 0.2 <= latency < 3.0


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_timed_out_probe_leaves_no_exceptions_for_the_collector(
    make_ctx: MakeContext, target: URL
) -> None:
    """A timed-out probe's exceptions are freed with its result, without a collection: the
    lean client's waiter future keeps the TimeoutError in the frame that awaited it, which
    its traceback holds (`common.tracebacks`); the daemon collects rarely
    (`agent.windows.heap`), and a hung target times out every round."""
    import gc

    await probe(make_ctx, target, path="/slow?ms=2000", timeout="100ms")  # warm
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        for _ in range(3):
            result = await probe(make_ctx, target, path="/slow?ms=2000", timeout="100ms")
            assert result.samples[0].error == "timeout"
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
    assert alive == 0


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listener's accept queue is full: a connection to it is never made,
    the connect itself times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_probe_whose_connect_times_out_leaves_no_exceptions_for_the_collector(
    make_ctx: MakeContext, unanswered_port: int
) -> None:
    """The lean client's connect ran out of time: its task kept the TimeoutError, whose
    traceback holds the frame (asyncio's `Timeout.__aexit__`) that holds it, and the
    dialling frame with the connection (a loaded soak's census: 33 in 18 minutes)."""
    import gc

    base = f"http://127.0.0.1:{unanswered_port}"
    await probe(make_ctx, base, path="/", timeout="100ms")  # warm
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        for _ in range(3):
            result = await probe(make_ctx, base, path="/", timeout="100ms")
            assert result.samples[0].error == "timeout", result.message
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
    assert alive == 0


async def test_a_refused_connection_is_an_error_with_no_latency(
    make_ctx: MakeContext, unused_tcp_port: int
) -> None:
    result = await probe(make_ctx, URL(f"http://127.0.0.1:{unused_tcp_port}"), path="/")
    assert result.samples[0].error == "connect"
    assert result.samples[0].latency_s is None  # it says nothing of the target's speed


async def test_slow_response_fails_max_latency(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, target, path="/slow?ms=300", expect={"max_latency": "50ms"})
    assert not result.ok
    assert result.samples[0].error == "latency"
    assert "latency: expected ≤ 50ms, got" in result.message


async def test_a_probes_latency_is_said_as_every_latency_is(
    make_ctx: MakeContext, target: URL
) -> None:
    """A probe's words (its message; an unmet `max_latency`'s mismatch, which a breached
    rule's detail quotes in the alert) give its latency as `format_duration` does, where
    they rounded it to whole ms: `expected ≤ 3ms, got 3ms` for 3.4 ms, `200 in 0ms`."""
    limit = Expectation(Expect.model_validate({"max_latency": "3ms"}))
    (late,) = limit.check(200, {}, Body(b""), 0.0034, Redactor(()))
    assert str(late) == "latency: expected ≤ 3ms, got 3.4ms", str(late)
    fast = await probe(make_ctx, target, path="/ok")
    # the sample's own latency: `latency_ms` is rounded to the µs, and 7.57496 ms reads
    # 7.57ms where its rounded 7.575 would read 7.58ms
    latency = fast.samples[0].latency_s
    assert latency is not None
    shown = format_duration(latency)
    assert fast.message == f"GET /ok: 200 in {shown}", fast.message


async def test_refused_connection_is_a_connect_error(make_ctx: MakeContext) -> None:
    result = await probe(make_ctx, f"http://127.0.0.1:{free_port()}", path="/ok")
    assert not result.ok and not result.details.get("crashed")
    assert result.samples[0].error == "connect"
    assert "cannot connect to 127.0.0.1" in result.message


async def test_a_host_name_that_does_not_resolve_says_so(
    make_ctx: MakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in `base_url` (`postflight check` with a new config) read `cannot connect to
    app.example.invalid:8080: Unknown error -2`, the system's words for an errno, which a
    resolver's error code is not. The resolver is made to fail: no DNS here, nor in CI."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "app.example.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    result = await probe(make_ctx, "http://app.example.invalid:8080", path="/ok")
    assert result.samples[0].error == "connect"
    assert result.message == (
        "GET /ok: cannot connect to app.example.invalid:8080: the name app.example.invalid"
        " did not resolve (DNS: Name or service not known)"
    ), result.message


async def test_connection_closed_without_response(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, target, path="/close")
    assert result.samples[0].error == "connect"
    assert "closed the connection" in result.message


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def test_malformed_response_is_a_protocol_error(
    make_ctx: MakeContext, garbage_server: str
) -> None:
    result = await probe(make_ctx, garbage_server, path="/")
    assert result.samples[0].error == "protocol"
    assert "malformed response" in result.message and "\n" not in result.message


async def test_request_method_headers_and_json_body_are_sent(
    make_ctx: MakeContext, target: URL
) -> None:
    result = await probe(
        make_ctx,
        target,
        path="/echo?x=1",
        method="post",
        headers={"X-Test": "yes"},
        json={"a": 1},
        expect={
            "json": {
                "method": "POST",
                "body": '{"a":1}',
                "$.headers.X-Test": "yes",
                "$.headers.Content-Type": "application/json",
                "$.headers.User-Agent": USER_AGENT,
                "$.query.x": "1",
            }
        },
    )
    assert result.ok, result.message


@pytest.mark.parametrize(
    ("headers", "sent"),
    [
        ({}, "Basic Ym9iOnB3"),  # bob:pw
        ({"authorization": "Bearer own-token"}, "Bearer own-token"),
    ],
)
async def test_a_checks_own_authorization_header_wins_over_the_base_urls_user(
    make_ctx: MakeContext, target: URL, headers: dict[str, str], sent: str
) -> None:
    """A base_url's user:password is basic auth for the checks that send none of their
    own, as curl's -H over -u; the check crashed (aiohttp refuses both) at every probe."""
    result = await probe(
        make_ctx,
        target.with_user("bob").with_password("pw"),
        path="/echo",
        headers=headers,
        expect={"json": {"$.headers.Authorization": sent}},
    )
    assert result.ok, result.message


async def test_raw_body_is_sent(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(
        make_ctx,
        target,
        path="/echo",
        method="PUT",
        body="plain",
        expect={"json": {"body": "plain"}},
    )
    assert result.ok, result.message


async def test_large_body_is_counted_in_full(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, target, path="/big", expect={"body_regex": "^x+"})
    assert result.ok, result.message
    assert result.samples[0].bytes == 40 * 65536


async def test_absolute_url_ignores_base_url(make_ctx: MakeContext, target: URL) -> None:
    check = http_check(url=str(target / "ok"))
    result = await run_check(check, make_ctx(f"http://127.0.0.1:{free_port()}"))
    assert result.ok, result.message


async def test_base_url_path_prefix_is_kept(make_ctx: MakeContext, target: URL) -> None:
    result = await probe(make_ctx, str(target / "status") + "/", path="/204")
    assert result.ok and result.samples[0].status == 204


async def test_baseline_target_is_marked_on_samples(make_ctx: MakeContext, target: URL) -> None:
    result = await run_check(http_check(path="/ok"), make_ctx(target, target="baseline"))
    assert result.samples[0].target == "baseline"


# TLS


@pytest.fixture
async def tls_target(aiohttp_server: AiohttpServer, tls_cert: tuple[Path, Path]) -> URL:
    cert, key = tls_cert
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = await aiohttp_server(target_app(), ssl=server_ctx)
    url: URL = server.make_url("")
    assert url.scheme == "https"
    return url


async def test_tls_expiry_warning_with_verified_certificate(
    tls_target: URL, tls_cert: tuple[Path, Path]
) -> None:
    client_ctx = ssl.create_default_context(cafile=str(tls_cert[0]))
    async with TargetSessions(ssl_context=client_ctx) as sessions:
        from checks.base import CheckContext

        ctx = CheckContext(str(tls_target), sessions.get(str(tls_target)), "test")
        result = await run_check(http_check(path="/ok"), ctx)
    assert result.ok, result.message
    assert 4 <= result.details["tls_days_left"] <= 5
    (warning,) = result.details["warnings"]
    assert warning.startswith("TLS certificate expires in")
    assert result.message.endswith(f"(warning: {warning})")

    quiet = http_check(path="/ok", tls_expiry_warning_days=3)
    async with TargetSessions(ssl_context=client_ctx) as sessions:
        ctx = CheckContext(str(tls_target), sessions.get(str(tls_target)), "test")
        result = await run_check(quiet, ctx)
    assert result.ok and "warnings" not in result.details and "warning" not in result.message


async def test_untrusted_certificate_is_a_tls_error(make_ctx: MakeContext, tls_target: URL) -> None:
    result = await probe(make_ctx, tls_target, path="/ok")
    assert not result.ok
    assert result.samples[0].error == "tls"
    assert "certificate" in result.message.lower()


async def test_a_probes_tls_failure_says_which_tls_problem(
    make_ctx: MakeContext, tls_target: URL, target: URL
) -> None:
    """As a provider's does (`common.tls_words`): the message was aiohttp's raw error,
    'TLS failed: Cannot connect to host 127.0.0.1:PORT ssl:True [SSLCertVerificationError:
    (1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed
    certificate (_ssl.c:1006)')]', naming neither the problem nor its fix."""
    result = await probe(make_ctx, tls_target, path="/ok")
    assert result.samples[0].error == "tls"
    assert result.message == (
        "GET /ok: TLS failed: its certificate was not verified (self-signed certificate);"
        " $SSL_CERT_FILE names the CA bundle to verify it with"
    ), result.message
    plain = await probe(make_ctx, str(target).replace("http://", "https://"), path="/ok")
    assert plain.samples[0].error == "tls"
    assert plain.message == (
        "GET /ok: TLS failed: it did not answer in TLS (does it serve http://, not https://?)"
    ), plain.message


async def test_verify_tls_false_still_reads_expiry(make_ctx: MakeContext, tls_target: URL) -> None:
    check = http_check(path="/ok", verify_tls=False)
    result = await run_check(check, make_ctx(tls_target, verify_tls=False))
    assert result.ok, result.message
    assert 4 <= result.details["tls_days_left"] <= 5


async def test_verify_tls_false_works_on_a_verifying_session(
    make_ctx: MakeContext, tls_target: URL
) -> None:
    """The check's own setting wins over the session it was lent."""
    result = await run_check(http_check(path="/ok", verify_tls=False), make_ctx(tls_target))
    assert result.ok, result.message


# Configuration


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"expect": {"status": "6xx"}}, "not a status"),
        ({"expect": {"status": 99}}, "not an HTTP status"),
        ({"expect": {"status": []}}, "at least one status"),
        ({"expect": {"body_regex": "("}}, "not a valid regular expression"),
        ({"expect": {"json": {"$.[[": 1}}}, "not a valid JSONPath"),
        ({"expect": {"max_latency": "fast"}}, "not a duration"),
        ({"expect": {"unknown": 1}}, "Extra inputs are not permitted"),
        ({"path": "api/health"}, "a path starts with /"),
        ({"url": "ftp://x/y"}, "absolute http"),
        ({"url": "http://x/y", "path": "/z"}, "either `path` or `url`"),
        ({"body": "x", "json": {"a": 1}}, "either `body` or `json`"),
        ({"method": "GET POST"}, "not an HTTP method"),
        ({"headers": {"Bad Name": "x"}}, "not a valid header name"),
        ({"timeout": "-1s"}, "duration"),
        ({"type": "smoke"}, "type"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        HttpCheckConfig.model_validate({"name": "probe", "type": "http", **fields})
    assert fragment in str(err.value)


def test_example_config_checks_validate() -> None:
    config = HttpCheckConfig.model_validate(
        {
            "name": "api-health",
            "type": "http",
            "path": "/api/health",
            "timeout": "2s",
            "expect": {"status": 200, "max_latency": "500ms", "json": {"status": "ok"}},
        }
    )
    assert config.timeout == 2.0
    assert config.expect.max_latency == 0.5
    assert config.expect.json_fields == {"status": "ok"}
    assert config.verify_tls and config.follow_redirects and config.method == "GET"
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["expect"]["json"] == {"status": "ok"} and dumped["timeout"] == "2s"
    assert HttpCheckConfig.model_validate(dumped) == config


async def test_repeated_probes_reuse_one_connection(
    aiohttp_server: AiohttpServer, sessions: TargetSessions, make_ctx: MakeContext
) -> None:
    peers: set[object] = set()

    async def handler(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app)
    check = http_check(path="/")
    ctx = make_ctx(server.make_url(""))
    for _ in range(5):
        assert (await run_check(check, ctx)).ok
    assert len(peers) == 1

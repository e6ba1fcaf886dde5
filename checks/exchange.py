"""One HTTP exchange, measured: the probe that http, smoke and load checks are made of.

I/O edge: this is where aiohttp's exceptions become the error classes samples
carry (`timeout`, `connect`, `tls`, `protocol`, `status`), so no check parses
them itself. Kept lean on purpose: it runs once per probe, thousands of times
a second under a load check.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import httptools
from multidict import CIMultiDictProxy
from yarl import URL

from checks.request import Request
from checks.sessions import in_use, lean_client
from checks.silence import HOP, Deadline
from checks.ticks import ticks
from checks.wire import (
    Disconnected,
    LeanClient,
    Parsed,
    PayloadIncomplete,
    Sending,
    Unanswered,
    Unfinished,
    Unsupported,
)
from checks.written import Written
from common.durations import format_duration
from common.os_words import os_reason
from common.samples import Sample, Target
from common.tls_words import tls_reason
from common.tracebacks import without_tracebacks
from common.words import counted

ErrorKind = Literal["timeout", "connect", "tls", "protocol", "status"]

KEEP_BODY_BYTES = 1 << 20
"""The most of a body kept for assertions and captures; the rest is counted, not stored."""
_READ_WHOLE_BYTES = 1 << 20


@dataclass(slots=True)
class Reply:
    """What came back from one exchange."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    """The first `KEEP_BODY_BYTES` of the body when asked to keep it, else empty."""
    size: int
    """Body bytes received (after decompression)."""
    latency_s: float
    """From just before the request was sent to the last byte of the body: as the kernel
    stamped its arrival where the lean client kept the stamp (`checks.wire.Parsed.done_at`),
    else as it was read."""
    url: URL
    agent_delay_s: float | None = None
    """The most of `latency_s` the agent's own loop can have added reading the answer, as
    it measured (`checks.lag.LoopLag.read_delay`); None: not measured (through aiohttp)."""
    agent_kernel_delay_s: float | None = None
    """How long the answer really waited for the agent, from the kernel's receive stamp
    (`checks.stamps`); None: not measured."""
    agent_held_s: float = 0.0
    """How long the agent's stalled loop held the request back before it went out (a new
    connection's connect waiting for the loop), all of it in `latency_s`: the lean client's
    `checks.wire.Parsed.held` (also in `agent_delay_s`), aiohttp's `checks.written.Written`
    (each hop's, of a redirected request)."""
    agent_resumed_s: float = 0.0
    """The agent's stall the answer landed just after, all of it in `latency_s` whatever
    the stamp says (`checks.lag.AGENT_RESUMED`); 0.0: none."""

    def sample(self, check: str, error: str | None, target: Target) -> Sample:
        """The answer as evidence: passed unless `error` (an expectation it failed)."""
        return Sample(
            check=check,
            ok=error is None,
            latency_s=self.latency_s,
            status=self.status,
            error=error,
            bytes=self.size,
            target=target,
        )


class ProbeFailed(Exception):
    """No usable response: the error class for the sample and a message for a human."""

    def __init__(self, kind: ErrorKind, message: str, latency_s: float) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.latency_s = latency_s
        self.silent_s: float | None = None
        """A timeout's: how long the target had the request with no byte of an answer
        when the agent looked, at least the timeout (`checks.wire.Unanswered`); the
        target's, however the agent's loop stalled. None: not known."""

    @classmethod
    def timed(
        cls,
        kind: ErrorKind,
        message: str,
        elapsed: float,
        timeout_s: float | None,
        silent_s: float | None = None,
    ) -> ProbeFailed:
        """A failure after `elapsed` seconds; a timeout's latency is at least the timeout
        it waited out (a loop's timer may fire a few microseconds early: uvloop rounds to
        the millisecond, and a 200 ms timeout was read as 0.19995 s)."""
        if kind == "timeout" and timeout_s is not None:
            elapsed = max(elapsed, timeout_s)
        failed = cls(kind, message, elapsed)
        failed.silent_s = silent_s
        return failed

    def sample(self, check: str, target: Target) -> Sample:
        """The failure as evidence. A timeout is also a latency: the time it waited, a lower
        bound on the target's. Left out, latency rules would judge only the requests that
        got through, and a target that stopped answering would keep its last good figure."""
        latency = self.latency_s if self.kind == "timeout" else None
        return Sample(check=check, ok=False, latency_s=latency, error=self.kind, target=target)


def classify(exc: BaseException, timeout_s: float | None) -> tuple[ErrorKind, str]:
    """The error class and a short human message for an exception raised by a request."""
    if isinstance(exc, TimeoutError):
        limit = f" within {format_duration(timeout_s)}" if timeout_s else ""
        if isinstance(exc, Unfinished):  # a timeout all the same: saying what came
            came = f"{counted(exc.received, 'byte')} of it came"
            return "timeout", f"HTTP {exc.status}, then its body did not end{limit} ({came})"
        return "timeout", f"no response{limit}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | aiohttp.ServerFingerprintMismatch):
        return "tls", tls_reason(exc)  # which TLS problem, as a provider's says it
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "status", f"too many redirects ({len(exc.history)})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol", "malformed response: " + " ".join(str(exc.message).split())[:200]
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "protocol", "malformed response body: " + " ".join(str(exc).split())[:200]
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", cannot_connect(exc.host, exc.port, exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connect", "the server closed the connection without a response"
    return "connect", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def cannot_connect(host: str | None, port: int | None, exc: OSError) -> str:
    """`cannot connect to host:port: why`; a name that did not resolve said so: a resolver's
    code is no errno (`os.strerror(-2)` is "Unknown error -2", a typo in `base_url`)."""
    if isinstance(exc, socket.gaierror):
        why = f"the name {host} did not resolve (DNS: {exc.strerror or exc})"
    else:
        why = os_reason(exc)
    return f"cannot connect to {host}:{port}: {why}"


async def exchange(
    session: aiohttp.ClientSession,
    request: Request,
    url: URL,
    *,
    client_timeout: aiohttp.ClientTimeout | float,
    started: float | None = None,
) -> Reply:
    """Send `request` to `url` and read the whole response; raises `ProbeFailed` when none
    came.

    `client_timeout` in seconds is a total (a probe fitted to its round's end: no
    `ClientTimeout` built per probe unless aiohttp needs one). `started` (a
    `time.perf_counter()` value) lets an open-model load check count latency from
    when the request was due, not from when it got going.
    """
    t0 = time.perf_counter() if started is None else started
    if url.raw_user is not None and _authorizes(request.headers):
        # the check's own Authorization wins over base_url's user:password (curl's -H
        # over -u): aiohttp refuses both, and the check crashed at every probe
        url = url.with_user(None)
    if isinstance(client_timeout, int | float):
        total: float | None = client_timeout
    else:
        total = client_timeout.total if _total_only(client_timeout) else -1.0
    lean = lean_client(session)
    if lean is not None and total != -1.0 and lean.supports(request.method, url, request.headers):
        try:
            return await _lean_exchange(lean, request, url, total, t0, started)
        except _Redirect as redirect:
            return await _follow(session, request, url, redirect, total, t0)
        except _BadRedirect as bad:
            raise ProbeFailed("status", str(bad), time.perf_counter() - t0) from None
        except Unsupported:
            # Nothing was recorded yet: this request goes through aiohttp, now and from now on.
            lean.decline(request.method, url)
            t0 = time.perf_counter() if started is None else started
    if isinstance(client_timeout, int | float):
        client_timeout = aiohttp.ClientTimeout(total=client_timeout)
    return await _through_aiohttp(
        session,
        request,
        request.method,
        url,
        headers=request.headers,
        data=request.data,
        client_timeout=client_timeout,
        redirects=request.max_redirects,
        t0=t0,
        stated=client_timeout.total,
    )


def _authorizes(headers: dict[str, str]) -> bool:
    return any(name.lower() == "authorization" for name in headers)


async def _through_aiohttp(
    session: aiohttp.ClientSession,
    request: Request,
    method: str,
    url: URL,
    *,
    headers: dict[str, str],
    data: bytes | None,
    client_timeout: aiohttp.ClientTimeout,
    redirects: int,
    t0: float,
    stated: float | None,
    held: float = 0.0,
) -> Reply:
    """One exchange by aiohttp, following up to `redirects` redirects when the request
    follows any; its latency from `t0`; a timeout said as `stated` seconds. Its
    `agent_held_s`: each hop's stall before it was written (`checks.written`, on a pool
    with its trace), after `held` (the lean client's first hop's)."""
    written = Written(held)
    answered: aiohttp.ClientResponse | None = None
    """The response whose status and headers came, its body being read."""
    hop = HOP.set(written)  # the connector tells it each hop's connection
    total = client_timeout.total
    if total is not None:  # kept by `Deadline`, which looks for the target's silence at it
        client_timeout = aiohttp.ClientTimeout(
            connect=client_timeout.connect,
            sock_read=client_timeout.sock_read,
            sock_connect=client_timeout.sock_connect,
            ceil_threshold=client_timeout.ceil_threshold,
        )
    with in_use(session):  # the pool stays open until the body is read
        try:
            with Deadline(written, total):
                async with session.request(
                    method,
                    url,
                    headers=headers or None,  # an empty dict still costs aiohttp a header merge
                    data=data,
                    timeout=client_timeout,
                    allow_redirects=request.allow_redirects,
                    max_redirects=_aiohttp_limit(redirects),
                    ssl=request.verify_tls,
                    trace_request_ctx=written,
                ) as resp:
                    answered = resp
                    length = resp.content_length
                    if length is not None and length <= _READ_WHOLE_BYTES:
                        raw = await resp.read()
                        size = len(raw)
                        body = raw if request.keep_body else b""
                    else:
                        body, size = await _stream(
                            resp, KEEP_BODY_BYTES if request.keep_body else 0
                        )
                    end = time.perf_counter()
                    latency = end - t0
                    return Reply(
                        resp.status,
                        resp.headers,
                        body,
                        size,
                        latency,
                        resp.url,
                        agent_held_s=written.held(),
                        agent_resumed_s=ticks().lag.resumed(end, t0, latency),
                    )
        except aiohttp.TooManyRedirects as exc:
            raise ProbeFailed("status", _too_many(request), time.perf_counter() - t0) from (
                without_tracebacks(exc)
            )
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
            if isinstance(exc, TimeoutError) and answered is not None:  # its body cut short
                exc = Unfinished(answered.status, answered.content.total_bytes)
            kind, message = classify(exc, stated)
            silent = written.silent_s if kind == "timeout" else None
            raise ProbeFailed.timed(kind, message, time.perf_counter() - t0, stated, silent) from (
                without_tracebacks(exc)
            )
        finally:
            HOP.reset(hop)
            written.over()


def _aiohttp_limit(max_redirects: int) -> int:
    """aiohttp's `max_redirects` for ours. Ours is how many redirects are followed before
    the probe fails; aiohttp fails at the redirect that reaches its limit, and takes 0
    for no limit at all (a HEAD probe of a looping target once sent 1,237 requests in
    2 s). So: one more."""
    return max_redirects + 1


def _too_many(request: Request) -> str:
    return f"too many redirects (more than {request.max_redirects})"


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LEAN_FAILURES = (TimeoutError, OSError, Disconnected, PayloadIncomplete)


def _total_only(timeout: aiohttp.ClientTimeout) -> bool:
    return timeout.connect is None and timeout.sock_connect is None and timeout.sock_read is None


async def _lean_exchange(
    lean: LeanClient,
    request: Request,
    url: URL,
    timeout_s: float | None,
    t0: float,
    started: float | None,
) -> Reply:
    """`exchange` on the lean client: the same `Reply`, or the same `ProbeFailed`."""
    head = lean.head(request.method, url, request.headers, request.data)
    try:
        parsed, sent = await lean.request(head, url, timeout_s, request.keep_body)
    except (*_LEAN_FAILURES, httptools.HttpParserError) as exc:
        kind, message = _lean_failure(exc, url, timeout_s)
        # the waiter future a timed-out or cut-off exchange awaited holds its exception in
        # `LeanClient.request`'s frame, which that exception's traceback holds: a cycle
        elapsed = time.perf_counter() - t0
        raise ProbeFailed.timed(kind, message, elapsed, timeout_s, _silence(exc)) from (
            without_tracebacks(exc)
        )
    return _lean_reply(parsed, url, request.allow_redirects, t0 if started is not None else sent)


class _BadRedirect(Exception):
    """A redirect to a Location no client can follow (not http(s), malformed)."""


class _Redirect(Exception):
    """A lean answer that redirects to an http(s) `location`: aiohttp follows the rest of
    the way (`_follow`)."""

    def __init__(self, status: int, location: URL) -> None:
        super().__init__(f"{status} to {location}")
        self.status = status
        self.location = location
        self.held = 0.0
        """The lean hop's stall before it was written (`checks.wire.Parsed.held`)."""


def _lean_reply(parsed: Parsed, url: URL, allow_redirects: bool, since: float) -> Reply:
    """The `Reply` of a lean exchange; raises `_Redirect` for a redirect to follow, and
    `_BadRedirect` for one to a Location no client can follow."""
    if allow_redirects and parsed.status in _REDIRECTS:
        raw = parsed.headers.get("Location") or parsed.headers.get("URI")
        if raw is not None:
            redirect = _redirect(parsed.status, url, raw)
            if isinstance(redirect, _Redirect):
                redirect.held = parsed.held  # the first hop's: `_follow` adds the rest's
            raise redirect
    # from when the request could go out (a wait for the pool's own limit is not the
    # target's) to when its last byte came (`Parsed.done_at`: not when this task got the
    # loop back, nor, where the kernel stamped it, when the loop got to it)
    latency = parsed.done_at - since
    return Reply(
        parsed.status,
        parsed.headers,
        parsed.body,
        parsed.size,
        latency,
        url,
        parsed.agent_delay,
        parsed.kernel_delay,
        parsed.held,
        parsed.resumed,
    )


def _redirect(status: int, url: URL, raw: str) -> Exception:
    """What following `raw` takes, judged as aiohttp judges it, so that the request is
    never sent again from the start (the target would see its first hop twice)."""
    try:
        location = URL(raw, encoded=False)
    except ValueError:
        return _BadRedirect(f"redirected ({status}) to a Location that is not a URL")
    if location.scheme and location.scheme not in ("http", "https"):
        return _BadRedirect(f"redirected ({status}) to a {location.scheme}: URL, not http(s)")
    if location.scheme and not location.host and location.scheme != url.scheme:
        return _BadRedirect(f"redirected ({status}) to a {location.scheme}: URL with no host")
    if not location.host:  # `/next`, and `http:/next` as browsers (and aiohttp) read it
        location = url.join(URL(location.path_qs if location.scheme else raw, encoded=False))
    return _Redirect(status, location)


async def _follow(
    session: aiohttp.ClientSession,
    request: Request,
    url: URL,
    redirect: _Redirect,
    timeout_s: float | None,
    t0: float,
) -> Reply:
    """The rest of a redirect the lean client was answered: aiohttp goes on from the
    Location as it would have from the first hop (the method a 303 turns to GET,
    credentials kept to their origin, the same limit on hops), so the target sees the
    first request once and the latency counts from it."""
    if request.max_redirects < 1:  # this redirect was one too many
        raise ProbeFailed("status", _too_many(request), time.perf_counter() - t0)
    method, data, headers = request.method, request.data, dict(request.headers)
    if redirect.status == 303 and method != "HEAD":
        method, data = "GET", None
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    if redirect.location.origin() != url.origin():
        private = ("authorization", "cookie", "proxy-authorization")
        headers = {k: v for k, v in headers.items() if k.lower() not in private}
    left = None if timeout_s is None else max(timeout_s - (time.perf_counter() - t0), 0.001)
    return await _through_aiohttp(
        session,
        request,
        method,
        redirect.location,
        headers=headers,
        data=data,
        client_timeout=aiohttp.ClientTimeout(total=left),
        redirects=request.max_redirects - 1,
        t0=t0,
        stated=timeout_s,
        held=redirect.held,
    )


Outcome = Callable[["Reply | BaseException"], None]
"""`exchange_now`'s callback: the `Reply`, or what `exchange` would have raised."""


def exchange_now(
    session: aiohttp.ClientSession,
    request: Request,
    url: URL,
    *,
    timeout_s: float,
    outcome: Outcome,
) -> Sending | None:
    """`exchange` without a task or a coroutine, when the lean client can send the request
    (`LeanClient.send_now`): `outcome` gets what `exchange` would return or raise, from the
    pool's and the connection's callbacks. None, and nothing sent: await `exchange` instead.
    What the lean path hands back (a redirect to follow, a codec it lacks) goes through
    `exchange` in a task, as there."""
    lean = lean_client(session)
    if lean is None or not lean.supports(request.method, url, request.headers):
        return None
    now = _Now(session, lean, request, url, timeout_s, outcome)
    head = lean.head(request.method, url, request.headers, request.data)
    return lean.send_now(head, url, timeout_s, request.keep_body, now.answered)


class _Now:
    """One `exchange_now` under way: what its answer needs (an object with slots, not a
    closure: a cell per captured name costs more than the probe's other objects)."""

    __slots__ = ("lean", "outcome", "request", "session", "t0", "timeout_s", "url")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        lean: LeanClient,
        request: Request,
        url: URL,
        timeout_s: float,
        outcome: Outcome,
    ) -> None:
        self.session = session
        self.lean = lean
        self.request = request
        self.url = url
        self.timeout_s = timeout_s
        self.outcome = outcome
        self.t0 = time.perf_counter()

    def answered(self, parsed: Parsed | None, sent: float, exc: BaseException | None) -> None:
        if parsed is not None:
            try:
                self.outcome(_lean_reply(parsed, self.url, self.request.allow_redirects, sent))
                return
            except _Redirect as redirect:
                self._later(
                    _follow(self.session, self.request, self.url, redirect, self.timeout_s, sent)
                )
                return
            except _BadRedirect as bad:
                self.outcome(ProbeFailed("status", str(bad), time.perf_counter() - sent))
                return
            except Unsupported as unsupported:
                exc = unsupported
        if isinstance(exc, Unsupported):
            # nothing was recorded yet: through aiohttp, now and from now on (as `exchange`)
            self.lean.decline(self.request.method, self.url)
            self._later(
                exchange(self.session, self.request, self.url, client_timeout=self.timeout_s)
            )
        elif isinstance(exc, (*_LEAN_FAILURES, httptools.HttpParserError)):
            kind, message = _lean_failure(exc, self.url, self.timeout_s)
            elapsed = time.perf_counter() - self.t0
            failed = ProbeFailed.timed(kind, message, elapsed, self.timeout_s, _silence(exc))
            failed.__cause__ = exc
            self.outcome(failed)
        else:
            assert exc is not None
            self.outcome(exc)

    def _later(self, work: Coroutine[Any, Any, Reply]) -> None:
        """The rest of the exchange in a task (aiohttp's part): `outcome` gets its end."""
        later = asyncio.get_running_loop().create_task(work)
        _LATER.add(later)
        later.add_done_callback(functools.partial(_later_done, self.outcome))


_LATER: set[asyncio.Task[Reply]] = set()
"""`exchange_now`'s requests handed to aiohttp, in flight (the loop keeps weak references)."""


def _later_done(outcome: Outcome, task: asyncio.Task[Reply]) -> None:
    _LATER.discard(task)
    if task.cancelled():
        outcome(asyncio.CancelledError())
    else:
        exc = task.exception()
        outcome(exc if exc is not None else task.result())


def _silence(exc: BaseException) -> float | None:
    """A lean timeout's proof of the target's silence (`checks.wire.Unanswered`), if any."""
    return exc.silent_s if isinstance(exc, Unanswered) else None


def _lean_failure(exc: BaseException, url: URL, timeout_s: float | None) -> tuple[ErrorKind, str]:
    """The error class and message `classify` gives for what aiohttp raises in the same case."""
    if isinstance(exc, TimeoutError):
        return classify(exc, timeout_s)
    if isinstance(exc, Disconnected):
        if exc.args and isinstance(exc.args[0], OSError):  # aiohttp's ClientOSError, reworded
            return "connect", f"ClientOSError: {exc.args[0]}"
        return "connect", "the server closed the connection without a response"
    if isinstance(exc, PayloadIncomplete):
        return "protocol", "malformed response body: " + " ".join(str(exc).split())[:200]
    if isinstance(exc, httptools.HttpParserError):
        return "protocol", "malformed response: " + " ".join(str(exc).split())[:200]
    assert isinstance(exc, OSError)
    return "connect", cannot_connect(url.host, url.port, exc)


async def _stream(resp: aiohttp.ClientResponse, keep: int) -> tuple[bytes, int]:
    kept = bytearray()
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if len(kept) < keep:
            kept += chunk[: keep - len(kept)]
    return bytes(kept), size


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    """One context for reading certificates, made once and without the system's CA store:
    `ssl.create_default_context()` loads that store, 30-150 ms on the event loop for each
    TLS check's first probe, long enough for the agent to drop its own probes as stalled."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def peer_certificate(host: str, port: int, timeout_s: float) -> bytes | None:
    """The certificate a TLS server presents (DER), from a handshake of its own.

    The request's connection is usually back in the pool before its response is
    handed over, so the certificate is read over a separate connection, which
    callers cache: expiry is a matter of days, not of probes. Not verified here;
    the probe itself verifies. None when the handshake fails (the probe says why).
    """
    context = _unverified_context()
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    try:
        ssl_object: Any = writer.get_extra_info("ssl_object")
        der: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return der
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def cert_not_after(der: bytes) -> datetime | None:
    """The expiry (`notAfter`) of a DER certificate, or None if it cannot be read.

    A few lines of DER walking instead of a dependency: the standard library only
    decodes certificates it has verified, and the expiry warning must also work
    with `verify_tls: false`.
    """
    try:
        _, cert, _ = _tlv(der, 0)
        _, tbs, _ = _tlv(der, cert)  # tbsCertificate
        pos = tbs
        tag, start, end = _tlv(der, pos)
        if tag == 0xA0:  # [0] version
            pos = end
        for _ in range(3):  # serialNumber, signature, issuer
            _, _, pos = _tlv(der, pos)
        _, validity, _ = _tlv(der, pos)
        _, _, after_not_before = _tlv(der, validity)
        tag, start, end = _tlv(der, after_not_before)
        text = der[start:end].decode("ascii")
        if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950–2049
            year = int(text[:2])
            text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
        elif tag != 0x18:  # GeneralizedTime
            return None
        return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `pos`."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise IndexError("truncated DER")
    return tag, pos, pos + length

"""A lean HTTP/1.1 client for probes: keep-alive pools on asyncio Protocols, parsed by httptools.

I/O edge under `checks.exchange`, which uses it for the requests it supports
(`LeanClient.supports`) and aiohttp for the rest. It must send the bytes aiohttp
would send and report what aiohttp would report (status, headers, decompressed
body and size, error classes), only cheaper: no request/response objects, no
stream reader, no task or timeout context per request. What it does not do —
TLS, HEAD, non-idempotent methods, following redirects, brotli/zstd bodies,
1xx responses — it declines (`supports`) or hands back (`Unsupported`) before
the probe is recorded, and `exchange` sends that request through aiohttp.
`LeanClient.send_now` is `request` without even a task: the same steps, driven by
the pool's and the connection's callbacks (a round's probes, thousands a second).

Why httptools: it is llhttp (Node's parser, the one aiohttp's C parser is built
on) behind a small callback API, kept by the uvloop authors and used by
uvicorn; parsing HTTP by hand is where clients get smuggling bugs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import httptools
from aiohttp import ClientRequest, hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from checks.lag import SLACK_S
from checks.stamps import (
    StampedSocket,
    connect_stamped,
    own_stamps_on,
    stamps_on,
    stepped_since,
)
from checks.ticks import ticks
from common.tracebacks import drop_cancellation, without_tracebacks

KEEP_BODY_BYTES = 1 << 20
"""The most of a body kept for assertions (as `checks.exchange` keeps)."""

LEAN_METHODS = frozenset({"GET", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Idempotent methods with a response body: these may be sent again through aiohttp
when the lean path hands a request back, as aiohttp itself retries them."""

_SKIP_USER_HEADERS = frozenset(
    {"connection", "transfer-encoding", "content-length", "expect", "upgrade", "te"}
)
_CACHE_LIMIT = 4096


class Unsupported(Exception):
    """The response needs something the lean path does not do; send it through aiohttp."""


class Unanswered(TimeoutError):
    """A timeout the target's silence proves, however late the agent's loop looked: its
    request was in the kernel's hands `silent_s` seconds (at least the timeout) before
    the agent found no byte of an answer in the socket (`_expire`)."""

    def __init__(self, silent_s: float) -> None:
        super().__init__()
        self.silent_s = silent_s


class Unfinished(TimeoutError):
    """A timeout after the response's status and headers came, its body still coming:
    the target did not answer in time all the same, and what came is said (`status`, the
    body's `received` bytes), where it was said "no response"."""

    def __init__(self, status: int, received: int) -> None:
        super().__init__()
        self.status = status
        self.received = received


class Disconnected(Exception):
    """The connection closed before any byte of a response; its argument, if any, the
    `OSError` that ended it (a reset: aiohttp's `ClientOSError`, else its
    `ServerDisconnectedError`)."""


class PayloadIncomplete(Exception):
    """The connection closed, or the body could not be decoded, before the response ended."""


class Parsed:
    """One response as it was parsed: what `checks.exchange.Reply` is built from."""

    __slots__ = (
        "agent_delay",
        "body",
        "done_at",
        "headers",
        "held",
        "kernel_delay",
        "read_at",
        "resumed",
        "size",
        "status",
    )

    def __init__(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        size: int,
        done_at: float,
        agent_delay: float | None = None,
        kernel_delay: float | None = None,
        read_at: float | None = None,
        held: float = 0.0,
        resumed: float = 0.0,
    ):
        self.status = status
        self.headers = headers
        self.body = body
        self.size = size
        self.done_at = done_at
        """`time.perf_counter()` where a latency ends: when the last byte reached the
        machine, as the kernel stamped it (the latest it can have been), on a kept-alive
        connection where stamps are kept (`checks.stamps`); else when it was parsed. Not
        when the agent's loop got to it, nor when the waiting task next gets the loop."""
        self.agent_delay = agent_delay
        """The most the agent's loop can have added to the latency ending at `done_at`:
        the clocks' reading where it is the kernel's stamp, else the most the last byte
        can have waited for the loop before it was parsed (`checks.lag.LoopLag.read_delay`,
        measured then); None: not measured (the heartbeat is not beating)."""
        self.kernel_delay = kernel_delay
        """The agent's part of that latency by the kernel's receive stamp (`checks.stamps`):
        the clocks' reading where `done_at` is the stamp, else how long the last bytes
        waited for the loop; None: not measured (a new connection's first answer, whose
        connect no stamp sees, or no stamps here)."""
        self.read_at = done_at if read_at is None else read_at
        """`time.perf_counter()` when the last byte was parsed."""
        self.held = held
        """How long the agent's stalled loop held the request back before it was written
        (`_Conn.held`), all of it in the latency; in `agent_delay` too."""
        self.resumed = resumed
        """The agent's stall the answer landed just after (`checks.lag.AGENT_RESUMED`),
        all of it in the latency whatever the stamp says; 0.0: none."""


class Waiter(Protocol):
    """What a connection hands its response to: an `asyncio.Future`, or a `Sending` (no task)."""

    def done(self) -> bool: ...

    def set_result(self, parsed: Parsed, /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


Answered = Callable[[Parsed | None, float, BaseException | None], None]
"""`LeanClient.send_now`'s callback: (the response, or None; when the request was sent
(`time.perf_counter()`); None, or what `LeanClient.request` would have raised)."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, its response parsed as it comes."""

    def __init__(self, client: LeanClient, key: tuple[str, int]) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        """Holds this connection's callbacks (a reference cycle): dropped once the connection
        is over (`_over`), so a closed connection is freed at once, not by the collector."""
        self.waiter: Waiter | None = None
        self.stamped: StampedSocket | None = None
        """The socket, when its reads keep kernel receive stamps (`checks.stamps`)."""
        self.connect_delay: float | None = None
        """Until its first answer: the most the agent's loop can have delayed this connection's
        connect (`checks.lag.LoopLag.read_delay` as it was made), which the first latency
        includes and no receive stamp sees."""
        self.own_reader = False
        """`stamped` is a duplicate of the transport's socket, read here (`read_stamped`)
        while the transport's own reading is paused: on a loop that reads the descriptor
        itself (uvloop), the only way to see the stamps."""
        self.reset: OSError | None = None
        """What ended the connection, when `read_stamped` read it (the transport, whose
        reading is paused, hands `connection_lost` none)."""
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.first = True
        """No answer came on this connection yet (its first latency counts its connect)."""
        self.sent_at = 0.0
        """`time.perf_counter()` just before the request in flight was handed to the
        transport: an answer's kernel stamp before it is not this answer's (a clock step)."""
        self.written_at = 0.0
        """`time.monotonic()` when the request in flight was all handed to the kernel (0.0:
        not known, part of it still in the transport's buffer): what a timeout's silence
        counts from (`_expire`), not when the probe meant to start."""
        self.held = 0.0
        """How long the agent's loop was stalled between the request's start and its write
        (`checks.lag.LoopLag.total` grown from the start's `mark`): a new connection's
        connect waiting for a stalled loop. The latency counts from the start, so all of it
        is the agent's, though the answer was read on time (no read delay, no stamp, sees
        it: the request itself went out late)."""
        self._reset(False)

    def _reset(self, keep: bool) -> None:
        self.keep = keep
        self.raw_headers: list[tuple[str, str]] = []
        self.status = 0
        self.kept: list[bytes] = []
        self.kept_len = 0
        self.size = 0
        self.raw_size = 0
        self.length: int | None = None
        self.got_bytes = False
        self.headers_done = False
        self.until_eof = False
        self.decoder: Any = None
        self.encoding = ""
        self.wbits = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a cast, not an isinstance check: uvloop's transports do not derive from asyncio's
        self.transport = cast(asyncio.Transport, transport)
        self.connect_delay = self.client._ticks.lag.read_delay()
        if self.closed:  # closed while it was connecting (`LeanClient.close`): no use now
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if self.waiter is None or self.waiter.done() or parser is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.got_bytes = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Unsupported("upgrade"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc.__context__, Exception) else None
            self._fail(cause if isinstance(cause, Unsupported | PayloadIncomplete) else exc)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        self._stop_reading()
        waiter = self.waiter
        try:
            if waiter is None or waiter.done():
                return
            if self.headers_done and self.until_eof:
                self.on_message_complete()  # a body delimited by the connection's end
                return
            reset = exc if exc is not None else self.reset
            if not self.got_bytes:
                waiter.set_exception(Disconnected(reset) if reset is not None else Disconnected())
            else:
                text = self._incomplete()
                if reset is not None:  # as aiohttp words a connection that did not end cleanly
                    text = f"{text}. {reset!r}"
                waiter.set_exception(PayloadIncomplete(text))
        finally:
            self._over()

    def _over(self) -> None:
        """The transport's last word came (or it never will): drop the parser, which holds
        this connection's bound callbacks, and the transport, which may hold this connection
        (uvloop keeps the protocol of a connection whose `create_connection` was cancelled
        after `connection_made`, and never calls its `connection_lost`). Else every closed
        connection is a reference cycle that only a collection frees; the agent's
        collections are rare (`agent.windows.heap`) and connections close all the time
        (idle ones past `keepalive_s`, timeouts, and an agent far behind cutting its
        rounds' probes mid-connect), so their memory grew for as long as the agent ran."""
        self.parser = None
        self.transport = None

    def _incomplete(self) -> str:
        """Why the body is short, worded as aiohttp's ClientPayloadError reads."""
        text = "Response payload is not completed"
        if not self.headers_done:
            return text
        if self.length is not None:
            return (
                f"{text}: <ContentLengthError: 400, message='Not enough data to satisfy content "
                f"length header (received {self.raw_size} of {self.length} bytes).'>"
            )
        return (
            f"{text}: <TransferEncodingError: 400, message='Not enough data to satisfy "
            "transfer length header.'>"
        )

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append(
            (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
        )

    def on_headers_complete(self) -> None:
        assert self.parser is not None  # (called by the parser)
        status = self.parser.get_status_code()
        if status < 200:
            raise Unsupported("informational response")
        self.status = status
        self.headers_done = True
        length = False
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == "content-length":
                length = True
                self.length = int(value) if value.strip().isdigit() else None
            elif lowered == "transfer-encoding" and "chunked" in value.lower():
                length = True
            elif lowered == "content-encoding":
                self.encoding = value.strip().lower()
        if self.encoding in ("br", "zstd"):
            raise Unsupported(f"content-encoding {self.encoding}")
        if self.encoding in ("gzip", "deflate"):
            self.decoder = True  # chosen on the first body byte, as aiohttp does
        self.until_eof = not length and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.raw_size += len(body)
        if self.decoder is not None:
            body = self._decode(body)
        self._count(body)

    def _count(self, body: bytes) -> None:
        self.size += len(body)
        if self.keep and self.kept_len < KEEP_BODY_BYTES:
            part = body[: KEEP_BODY_BYTES - self.kept_len]
            self.kept.append(part)
            self.kept_len += len(part)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.decoder is not None and self.decoder is not True:
            self._count(self.decoder.flush())
        parser = self.parser
        keep_alive = (
            parser is not None
            and not self.until_eof
            and not self.client.force_close
            and parser.should_keep_alive()
        )
        if not keep_alive:
            self.close(graceful=True)
        headers = CIMultiDictProxy(CIMultiDict(self.raw_headers))
        body = b"".join(self.kept) if self.keep else b""
        read_at = done_at = time.perf_counter()
        delay = self.client._ticks.lag.read_delay()  # None: the agent is not probing
        held = self.held
        stamped, connected, self.connect_delay = self.stamped, self.connect_delay, None
        first, self.first = self.first, False
        kernel = None
        if stamped is not None and stamped.landed and not first:
            # the latency ends when the answer's last bytes reached the machine, as the
            # kernel stamped them (the latest that can have been: never short), not when
            # the agent's loop got to them: the agent's part left in it is the clocks'
            # reading (`checks.stamps.PAD_S`). Not on a new connection's first answer,
            # whose connect, counted in its latency, no stamp sees (the read time, and the
            # heartbeat's bound, stand there); nor where the system clock stepped since the
            # write, or the stamp's bounds hold no moment between the write and the read
            # (the read time) (the read is a bound too: the bytes were there). An answer
            # that came within `PAD_S` of the write has its earliest bound before the
            # write: it came after, so the wait is from the write (its stamp refused, a fast
            # target read late kept the agent's delay: nginx at -10, 72% of its answers)
            landed, arrived = min(stamped.landed, read_at), stamped.arrived
            if self.sent_at <= landed and arrived <= landed and not stepped_since(self.sent_at):
                done_at = landed
                kernel = landed - max(arrived, self.sent_at)
                delay = kernel if delay is not None else None
        elif delay is not None and stamped is not None and stamped.arrived and connected is None:
            # an answer whose last read came with no stamp: an earlier read's still bounds
            # its wait (it only makes the wait longer)
            kernel = read_at - stamped.arrived
            if not 0.0 <= kernel <= delay or stepped_since(read_at - delay):
                # the stamp is on the system clock: one stepped since (forward: too long;
                # back: short, or under 0) leaves the heartbeat's bound, never short (the
                # answer came at most `delay` ago, so a step seen since then may be in it)
                kernel = delay
        if held and delay is not None:
            delay += held  # the request went out late: the agent's too
        resumed = self.client._ticks.lag.resumed(done_at, self.sent_at, done_at - self.sent_at)
        parsed = Parsed(
            self.status, headers, body, self.size, done_at, delay, kernel, read_at, held, resumed
        )
        waiter.set_result(parsed)

    def _decode(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self.decoder is True:
            if self.encoding == "gzip":
                wbits = 16 + zlib.MAX_WBITS
            else:  # deflate: zlib-wrapped, or raw when the first byte says so (aiohttp's rule)
                wbits = zlib.MAX_WBITS if chunk[0] & 0xF == 8 else -zlib.MAX_WBITS
            self.decoder = zlib.decompressobj(wbits)
            self.wbits = wbits
        try:
            out: bytes = self.decoder.decompress(chunk)
            while self.decoder.eof and self.decoder.unused_data:  # concatenated gzip members
                rest = self.decoder.unused_data
                self.decoder = zlib.decompressobj(self.wbits)
                out += self.decoder.decompress(rest)
        except zlib.error:
            # worded as aiohttp's ContentEncodingError reads
            raise PayloadIncomplete(
                f"400, message: Can not decode content-encoding: {self.encoding}"
            ) from None
        return out

    # used by LeanClient

    def send(self, request: bytes, keep: bool, waiter: Waiter, mark: float | None) -> None:
        """Write `request`; `mark`: `LoopLag.beating()` as the request started (None: no
        heartbeat), against which the stall before this write is measured (`held`)."""
        if self.closed or self.transport is None:
            # closed between its connect and this write (the pool closed, or the target
            # hung up at once): what the target's hanging up before answering reads as
            self.waiter = waiter
            waiter.set_exception(Disconnected())
            return
        now = self.client._ticks.lag.beating() if mark is not None else None
        self.held = now - mark if now is not None and mark is not None and now > mark else 0.0
        self._reset(keep)  # the parser itself is ready for the next message once one completes
        self.waiter = waiter
        if self.stamped is not None:
            self.stamped.forget()
        self.sent_at = time.perf_counter()
        self.transport.write(request)
        # (the loop's clock is the same one, but uvloop's is cached per turn: it can be early)
        self.written_at = time.monotonic() if not self.transport.get_write_buffer_size() else 0.0

    def drain(self) -> int | None:
        """Parse whatever the kernel holds for this connection now, ahead of the loop; the
        bytes read until the socket had none left (0: it held none), or None when it could
        not be read to its end (no socket, the stream's end, a reset)."""
        if self.transport is None or self.closed:
            return None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return None
        stamped = self.stamped
        read = 0
        try:
            while self.waiter is not None and not self.waiter.done():
                data = stamped.recv(1 << 16) if stamped else os.read(sock.fileno(), 1 << 16)
                if not data:
                    return None  # the end of the stream: the transport reports it
                read += len(data)
                self.data_received(data)
        except (BlockingIOError, InterruptedError):
            return read
        except OSError:
            return None  # a reset: the transport reports it
        return read

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def read_stamped(self) -> None:
        """The loop's reader of `stamped` (`own_reader`): what the transport would do."""
        assert self.stamped is not None
        try:
            data = self.stamped.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.reset = exc
            self.close()  # a reset: the connection is over, its waiter fails in connection_lost
            return
        if data:
            self.data_received(data)
        elif not self.closed:
            self.eof_received()
            self.close(graceful=True)

    def read_own(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read this connection's answers here, with their kernel stamps (`own_reader`),
        on a loop whose transports read the descriptor themselves; on any failure the
        transport goes on reading (the heartbeat's bound)."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            fd = os.dup(sock.fileno())
        except OSError:
            return
        try:
            stamped = StampedSocket(sock.family, sock.type, sock.proto, fd)
        except OSError:
            os.close(fd)
            return
        try:
            loop.add_reader(fd, self.read_stamped)
        except (OSError, RuntimeError):
            stamped.close()
            return
        self.transport.pause_reading()
        self.stamped = stamped
        self.own_reader = True

    def _stop_reading(self) -> None:
        if self.own_reader and self.stamped is not None:
            self.own_reader = False
            with contextlib.suppress(RuntimeError, OSError, ValueError):  # a closed loop
                self.client.loop.remove_reader(self.stamped.fileno())
            self.stamped.close()  # the duplicate: the transport closes its own

    def close(self, graceful: bool = False) -> None:
        """Close now: gracefully after a whole response, else abort (nothing left to read)."""
        if not self.closed:
            self.closed = True
            self.client._forget(self)
            self._stop_reading()
            if self.transport is None:
                self._over()  # not connected (yet): no `connection_lost` will come to say so
            elif graceful:
                self.transport.close()
            else:
                self.transport.abort()


_SWEEP_SLACK_S = 0.01
"""How late past its keep-alive time an idle connection's timer fires (`_close_stale`)."""


class LeanClient:
    """Keep-alive connections per origin for one `TargetSessions` pool.

    Holds at most `limit` connections in all (aiohttp's `limit` for the same pool);
    a request beyond it waits for one to be released. Idle connections older than
    `keepalive_s` are closed when next picked, or by a timer on a quiet pool (as
    aiohttp's connector cleans up); `force_close` opens one per request and says
    `Connection: close`, as aiohttp's `force_close` does.
    """

    def __init__(
        self,
        *,
        limit: int,
        keepalive_s: float,
        force_close: bool,
        default_headers: Mapping[str, str],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._ticks = ticks()
        self._stamps = stamps_on(self.loop)
        self._own_reads = not self._stamps and own_stamps_on(self.loop)
        self.limit = limit
        self.keepalive_s = keepalive_s
        self.force_close = force_close
        self._default_headers = CIMultiDict(default_headers)
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._waiters: deque[asyncio.Future[None] | _Turn] = deque()
        self._heads: dict[tuple[Any, ...], bytes] = {}
        self._declined: set[tuple[str, URL]] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False
        self.sent = 0
        """Requests sent (a retry counts again): which path a probe took (tests), and
        whether the pool was used since `TargetSessions` last looked."""

    def busy(self) -> bool:
        """Whether a connection is in use, or a request waits for one (`TargetSessions`
        closes no pool that is)."""
        idle = sum(len(conns) for conns in self._idle.values())
        return len(self._open) > idle or any(not w.done() for w in self._waiters)

    def supports(self, method: str, url: URL, headers: Mapping[str, str] | None) -> bool:
        """Whether this request may take the lean path (else: aiohttp)."""
        if (
            self.closed
            or method not in LEAN_METHODS
            or url.scheme != "http"
            or not url.raw_host
            or url.raw_user is not None
            or (method, url) in self._declined
        ):
            return False
        return not headers or not any(k.lower() in _SKIP_USER_HEADERS for k in headers)

    def decline(self, method: str, url: URL) -> None:
        """Send this request through aiohttp from now on (it redirected, or needs a codec)."""
        if len(self._declined) >= _CACHE_LIMIT:
            self._declined.clear()
        self._declined.add((method, url))

    def head(
        self, method: str, url: URL, headers: Mapping[str, str] | None, data: bytes | None
    ) -> bytes:
        """The request's bytes, built by aiohttp's rules (`ClientSession._prepare_headers`,
        `ClientRequest.update_headers`/`update_auto_headers`/`update_body_from_data`), so
        the target sees the request aiohttp would send."""
        key = (method, url, tuple(headers.items()) if headers else (), data)
        cached = self._heads.get(key)
        if cached is not None:
            return cached
        merged = CIMultiDict(self._default_headers)
        if headers:
            added: set[str] = set()
            for name, value in CIMultiDict(headers).items():
                if name in added:
                    merged.add(name, value)
                else:
                    merged[name] = value
                    added.add(name)
        out: CIMultiDict[str] = CIMultiDict()
        out[hdrs.HOST] = url.host_port_subcomponent or ""
        for name, value in merged.items():
            if name in hdrs.HOST_ALL:
                out[name] = value
            else:
                out.add(name, value)
        for name, value in ClientRequest.DEFAULT_HEADERS.items():
            if name not in out:
                out[name] = value
        if data is not None:
            out[hdrs.CONTENT_LENGTH] = str(len(data))
            if hdrs.CONTENT_TYPE not in out:
                out[hdrs.CONTENT_TYPE] = "application/octet-stream"
        elif method not in ClientRequest.GET_METHODS:
            out[hdrs.CONTENT_LENGTH] = "0"
        if self.force_close:
            out[hdrs.CONNECTION] = "close"
        lines = [f"{method} {url.raw_path_qs} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in out.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + (data or b"")
        if len(self._heads) >= _CACHE_LIMIT:
            self._heads.clear()
        self._heads[key] = request
        return request

    async def request(
        self, request: bytes, url: URL, timeout_s: float | None, keep_body: bool
    ) -> tuple[Parsed, float]:
        """Send `request` to `url`'s origin and parse the answer; returns it and when it was
        sent (`time.perf_counter()`).

        `timeout_s` (connecting, sending, receiving) counts from when the pool has a
        connection for the request: a wait for the pool's own limit (after a busy loop
        let probes pile up) is the agent's, neither the target's timeout nor its latency.
        Raises TimeoutError, OSError (connecting), `Disconnected`, `PayloadIncomplete`,
        `httptools.HttpParserError` or `Unsupported`. A reused connection that closes
        before answering is retried once on a new one, within the same timeout, as aiohttp
        retries idempotent requests (every lean method is one).
        """
        key = (url.raw_host or "", url.port or 80)
        started = 0.0
        deadline = 0.0
        mark: float | None = None
        retried = False
        while True:
            self.sent += 1
            conn = self._idle_conn(key)
            if conn is None and len(self._open) >= self.limit:
                conn = await self._slot(key)
            if not started:
                started = time.perf_counter()
                deadline = self.loop.time() + (timeout_s if timeout_s else 86400.0)
                mark = self._ticks.lag.beating()
            if conn is None:
                conn = await self._connect(key, deadline)
            waiter: asyncio.Future[Parsed] = self.loop.create_future()
            conn.send(request, keep_body, waiter, mark)
            if timeout_s:
                # no timer to cancel after
                self._ticks.at(deadline, _expire, (conn, waiter, timeout_s, mark))
            try:
                parsed = await waiter
            except Disconnected:
                if conn.reused and not retried:
                    retried = True
                    continue
                raise
            except BaseException:
                conn.close()  # a cancelled or failed exchange leaves the connection unusable
                raise
            finally:
                conn.waiter = None
                self._release(conn)
            return parsed, started

    def send_now(
        self,
        request: bytes,
        url: URL,
        timeout_s: float,
        keep_body: bool,
        answered: Answered,
    ) -> Sending | None:
        """`request` without a task: the answer (or the error `request` would raise) goes to
        `answered`, once, from the connection's callbacks. None, and nothing done, without a
        `timeout_s` (only a task and the registry's limit would end it): await `request`.

        The same exchange as `request`'s, step for step: an idle connection, else a new
        one if the pool has room (in a task: connecting is rare), else a turn in the pool's
        queue; the same deadline on the tick grid from when the request could go, the same
        late read of an answer a stalled loop left in the kernel, the same one retry of a
        reused connection the target dropped. `Sending.cancel` is a cancelled `request`.
        """
        if not timeout_s:
            return None
        sending = Sending(self, request, url, timeout_s, keep_body, answered)
        sending.acquire()
        return sending

    def _idle_conn(self, key: tuple[str, int]) -> _Conn | None:
        """The most recently used idle connection to `key` still fit to reuse, if any."""
        idle = self._idle.get(key)
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_s:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def _slot(self, key: tuple[str, int]) -> _Conn | None:
        """Wait while the pool is full: an idle connection to `key` when one is released,
        else None once there is room for a new one (an idle one elsewhere is closed)."""
        while len(self._open) >= self.limit:
            if self._close_one_idle():
                break
            slot: asyncio.Future[None] = self.loop.create_future()
            self._waiters.append(slot)  # a cancelled one is skipped by `_wake`: no O(n) remove
            try:
                await slot
            except BaseException:
                if slot.done() and not slot.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
            conn = self._idle_conn(key)
            if conn is not None:
                return conn
        return None

    async def _connect(self, key: tuple[str, int], deadline: float) -> _Conn:
        return await self._dial(self._reserve(key), deadline)

    def _reserve(self, key: tuple[str, int]) -> _Conn:
        """A new connection, counted against the pool's limit from now on (not from when
        a task gets round to connecting it)."""
        conn = _Conn(self, key)
        self._open.add(conn)
        return conn

    async def _dial(self, conn: _Conn, deadline: float) -> _Conn:
        try:
            async with asyncio.timeout_at(deadline):
                if self._stamps:
                    await self._dial_stamped(conn)
                else:
                    await self.loop.create_connection(lambda: conn, conn.key[0], conn.key[1])
                    if self._own_reads and not conn.closed:
                        conn.read_own(self.loop)
        except BaseException:
            conn.close()
            # no `connection_lost` will come: never connected, or (uvloop) connected just
            # before the cancel, which closes the transport without a word to its protocol
            conn._over()
            raise
        return conn

    async def _dial_stamped(self, conn: _Conn) -> None:
        """Connect `conn` on a socket that keeps kernel receive stamps (`checks.stamps`)."""
        sock = await connect_stamped(self.loop, conn.key[0], conn.key[1])
        try:
            await self.loop.create_connection(lambda: conn, sock=sock)
        except BaseException:
            sock.close()
            raise
        conn.stamped = sock

    def _close_one_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    def _release(self, conn: _Conn) -> None:
        if not conn.closed:
            conn.idle_since = self.loop.time()
            self._idle.setdefault(conn.key, []).append(conn)
            if self._sweep is None:
                self._sweep_at(conn.idle_since)
        self._wake()

    def _sweep_at(self, idle_since: float) -> None:
        # a little after it is due: a loop's timer may fire early (uvloop rounds to the ms)
        when = idle_since + self.keepalive_s + _SWEEP_SLACK_S
        self._sweep = self.loop.call_at(when, self._close_stale)

    def _close_stale(self) -> None:
        """Close the idle connections past `keepalive_s`: a quiet agent held every one it
        had opened (16 per target, each with its duplicated stamp socket: about 400 of a
        default `ulimit -n` of 1024 at 12 environments) until a request next picked it."""
        self._sweep = None
        now = self.loop.time()
        oldest: float | None = None
        for idle in self._idle.values():  # oldest first: released at the end, taken from it
            while idle and now - idle[0].idle_since >= self.keepalive_s:
                idle.pop(0).close()
            if idle and (oldest is None or idle[0].idle_since < oldest):
                oldest = idle[0].idle_since
        if oldest is not None and not self.closed:
            self._sweep_at(oldest)

    def _forget(self, conn: _Conn) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    def close(self) -> None:
        """Close every connection; later requests are declined (`supports` is false)."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


class Sending:
    """A request `LeanClient.send_now` is sending: `LeanClient.request`'s steps, driven by
    the pool's and the connection's callbacks instead of a task awaiting each (a `Future`
    would only schedule that task)."""

    __slots__ = (
        "answered",
        "client",
        "conn",
        "connecting",
        "deadline",
        "keep",
        "key",
        "mark",
        "over",
        "request",
        "retried",
        "started",
        "timeout_s",
        "turn",
        "url",
    )

    def __init__(
        self,
        client: LeanClient,
        request: bytes,
        url: URL,
        timeout_s: float,
        keep: bool,
        answered: Answered,
    ) -> None:
        self.client = client
        self.request = request
        self.url = url
        self.key = (url.raw_host or "", url.port or 80)
        self.timeout_s = timeout_s
        self.keep = keep
        self.answered = answered
        self.over = False
        self.retried = False
        self.started = 0.0
        self.deadline = 0.0
        self.mark: float | None = None
        self.conn: _Conn | None = None
        self.turn: _Turn | None = None
        self.connecting: asyncio.Task[_Conn] | None = None

    def acquire(self) -> None:
        """A connection for the request (`request`'s `_idle_conn`, `_slot`, `_connect`)."""
        client = self.client
        client.sent += 1
        conn = client._idle_conn(self.key)
        if conn is None:
            while len(client._open) >= client.limit:
                if client._close_one_idle():
                    break
                self.turn = _Turn(self)  # woken by `_wake` when a connection is released
                client._waiters.append(self.turn)
                return
        self._go(conn)

    def woken(self) -> None:
        """The pool's turn came (a connection was released): as `_slot` after its wait."""
        self.turn = None
        client = self.client
        if self.over:
            client._wake()  # woken, then cancelled: pass the turn on
            return
        conn = client._idle_conn(self.key)
        if conn is None and len(client._open) >= client.limit and not client._close_one_idle():
            self.turn = _Turn(self)
            client._waiters.append(self.turn)
            return
        self._go(conn)

    def _go(self, conn: _Conn | None) -> None:
        client = self.client
        if not self.started:
            self.started = time.perf_counter()
            self.deadline = client.loop.time() + self.timeout_s
            self.mark = client._ticks.lag.beating()
        if conn is None:
            self.conn = dialled = client._reserve(self.key)
            self.connecting = client.loop.create_task(client._dial(dialled, self.deadline))
            _CONNECTING.add(self.connecting)
            self.connecting.add_done_callback(self._connected)
            return
        self.conn = conn
        conn.send(self.request, self.keep, self, self.mark)
        # no timer to cancel after
        client._ticks.at(self.deadline, _expire, (conn, self, self.timeout_s, self.mark))

    def _connected(self, task: asyncio.Task[_Conn]) -> None:
        _CONNECTING.discard(task)
        self.connecting = None
        conn = self.conn
        assert conn is not None
        if task.cancelled():
            drop_cancellation(task)
        elif (error := task.exception()) is not None:
            # a connect that ran out of time left a cycle: the TimeoutError, its context's
            # tracebacks and their frames (asyncio's `Timeout.__aexit__`, the dialling one
            # with this connection), one per connect, for a rare collection to find
            # (`common.tracebacks`); nothing reads them: the answer is the error's kind
            for chained in (error, error.__context__):
                if chained is not None and chained.__traceback__ is not None:
                    traceback.clear_frames(chained.__traceback__)
            without_tracebacks(error)
        failed = task.cancelled() or task.exception() is not None
        if failed:
            conn.close()  # (a task cancelled before it ran never got to close it)
        if self.over:  # cancelled meanwhile
            if not failed:
                self.client._release(conn)  # opened all the same: to the pool
            return
        if task.cancelled():
            self._answer(None, asyncio.CancelledError())
        elif (exc := task.exception()) is not None:
            self._answer(None, exc)
        else:
            self._go(conn)

    # the connection's waiter (`Waiter`)

    def done(self) -> bool:
        return self.over

    def set_result(self, parsed: Parsed) -> None:
        conn = self.conn
        assert conn is not None
        conn.waiter = None
        self.client._release(conn)
        self._answer(parsed, None)

    def set_exception(self, exc: BaseException) -> None:
        conn = self.conn
        assert conn is not None
        conn.waiter = None
        if isinstance(exc, Disconnected) and conn.reused and not self.retried:
            self.retried = True
            self.client._release(conn)
            self.acquire()
            return
        conn.close()  # a failed exchange leaves the connection unusable
        self.client._release(conn)
        self._answer(None, exc)

    def cancel(self) -> None:
        """Give up, as a cancelled `request` does: a request under way closes its connection."""
        if self.over:
            return
        self.over = True
        self.turn = None  # its queued `_Turn` refers back to this: no cycle left behind
        if self.connecting is not None:
            self.connecting.cancel()  # `_connect` closes the connection it was opening
        conn = self.conn
        if conn is not None and conn.waiter is self:
            conn.waiter = None
            conn.close()
            self.client._release(conn)

    def _answer(self, parsed: Parsed | None, exc: BaseException | None) -> None:
        self.over = True
        # called from inside the parser's callbacks: nothing may escape into httptools
        try:
            self.answered(parsed, self.started, exc)
        except Exception as failed:
            self.client.loop.call_exception_handler(
                {"message": "a probe's answer could not be handled", "exception": failed}
            )


class _Turn:
    """A `Sending`'s place in the pool's queue: what `_wake` hands a released connection to
    (as it does a waiting task's future), passed on to the loop's next round."""

    __slots__ = ("sending", "woken")

    def __init__(self, sending: Sending) -> None:
        self.sending = sending
        self.woken = False

    def done(self) -> bool:
        return self.woken or self.sending.over

    def set_result(self, _: None) -> None:
        self.woken = True
        self.sending.client.loop.call_soon(self.sending.woken)


_CONNECTING: set[asyncio.Task[_Conn]] = set()
"""Connections `Sending`s are opening (the loop keeps only weak references to tasks)."""


def _expire(item: tuple[_Conn, Waiter, float, float | None]) -> None:
    """A request's deadline: a timeout, unless its answer is already in the kernel's
    buffer (a busy loop got here before reading it: the lateness is the agent's, and the
    answer is read now instead of being recorded as the target's timeout).

    A timeout is `Unanswered`, the target's however long the loop stalled, when the socket
    held no byte of an answer, none came before, and the request was all written at least
    `timeout_s` before the look: the target was silent that long, whatever the agent's
    loop did meanwhile (a stall delays reading, never the target's sending). A request
    written after its deadline was set (its connect came first), on a loop that stalled
    since (`checks.lag.LoopLag.total` grew past `SLACK_S` from `mark`, read as the
    deadline was set; None: no heartbeat, no stall judged), is looked at again once it
    has had its `timeout_s` from the write:
    the target gets its whole time, as a probe the agent starts late does, where the
    stall would otherwise make its timeout the agent's. On a loop that kept time the
    deadline stands as ever, a connect counted in it."""
    conn, waiter, timeout_s, mark = item
    if conn.waiter is not waiter or waiter.done():
        return  # answered, failed or given up since
    looked = time.monotonic()  # before the look: the silence is at least from the write to here
    read = conn.drain()
    if waiter.done():
        return
    written = conn.written_at
    if read == 0 and not conn.got_bytes and written:
        silent = looked - written
        if silent >= timeout_s:
            conn._fail(Unanswered(silent))
            return
        now = conn.client._ticks.lag.beating()
        if mark is not None and now is not None and now - mark > SLACK_S:
            # its whole time from the write (uvloop's clock is whole milliseconds: one more)
            due = conn.client.loop.time() + (written + timeout_s - looked) + 0.001
            conn.client._ticks.at(due, _expire, item)
            return
    conn._fail(Unfinished(conn.status, conn.size) if conn.headers_done else TimeoutError())

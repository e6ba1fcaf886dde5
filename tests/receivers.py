"""Real local servers that receive what Postflight sends, for tests and scripts.

- `RollbackReceiver`: the pipeline's rollback webhook. Verifies the HMAC signature,
  records every attempt, dedups by `Idempotency-Key`, and follows a script of
  replies ("503 twice then 200", "429 with Retry-After: 1", "hang").
- `JsonSink`: an apprise `json://` target collecting notifications.
- `SmtpSink`: an aiosmtpd SMTP server collecting mails (apprise `mailto://`).
- `Target`: a service being deployed, healthy until the test flips its mode (over
  HTTP, so it can run as its own process), counting the requests it gets.
- `HangingServer`: accepts TCP connections and never says a word (a hung SMTP
  server, a black-holed webhook).

All listen on 127.0.0.1, port 0 by default. In pytest, use the fixtures of
`tests.receiver_fixtures` (`rollback_receiver`, `json_sink`, `smtp_sink`,
`hanging_server`; the suite lists it in `pytest_plugins`). As a separate process
(e.g. for kill -9 tests, so the receiver outlives the agent), which imports no
pytest (0.1-0.2 s of CPU a start it does not use):

    python -m tests.receivers rollback --secret S [--port P] [--log FILE] \
        [--script 503,503:retry-after=1,hang,200] [--kill-on-accept PIDFILE]
    python -m tests.receivers json [--port P] [--log FILE]
    python -m tests.receivers smtp [--port P] [--log FILE]
    python -m tests.receivers target [--port P]

The process prints one JSON line `{"kind": …, "port": …, "url": …}` when ready,
appends one JSON line per received request to FILE (flushed each time), and
stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.message
import email.policy
import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

if __name__ == "__main__":  # a server process, which asks nothing over https: aiohttp
    # without reading the CA bundle as it is imported (60-80 ms of CPU a start)
    from agent.deferred_ca import import_aiohttp_without_ca_certificates

    import_aiohttp_without_ca_certificates()

from aiohttp import web

HOST = "127.0.0.1"
HANG_S = 600.0
"""How long a `hang` reply holds the request (until the server stops, in practice)."""


# --------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and headers, optionally after a delay, or a hang."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False

    @classmethod
    def parse(cls, text: str) -> Reply:
        """`200`, `503`, `503:retry-after=1`, `200:delay=0.2`, `hang`."""
        text = text.strip()
        if text.lower() == "hang":
            return cls(hang=True)
        status, _, options = text.partition(":")
        headers: dict[str, str] = {}
        delay = 0.0
        for option in filter(None, options.split(";")):
            name, _, value = option.partition("=")
            if name.strip().lower() == "delay":
                delay = float(value)
            else:
                headers[name.strip().title()] = value.strip()
        return cls(status=int(status), headers=headers, delay=delay)

    @classmethod
    def of(cls, item: Reply | int | str) -> Reply:
        if isinstance(item, Reply):
            return item
        if isinstance(item, int):
            return cls(status=item)
        return cls.parse(item)


def parse_script(text: str) -> list[Reply]:
    """`503,503:retry-after=1,hang,200` → replies, in order."""
    return [Reply.parse(part) for part in text.split(",") if part.strip()]


class _Script:
    """Replies in order, then the default forever."""

    def __init__(self, items: Iterable[Reply | int | str] = (), default: Reply | None = None):
        self._items = [Reply.of(i) for i in items]
        self.default = default or Reply()

    def extend(self, items: Iterable[Reply | int | str]) -> None:
        self._items.extend(Reply.of(i) for i in items)

    def next(self) -> Reply:
        return self._items.pop(0) if self._items else self.default


class _JsonLog:
    """One JSON object per line, flushed at once so another process can follow it."""

    def __init__(self, path: str | Path | None) -> None:
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record, sort_keys=True) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Waitable:
    """`wait_for(n, within=…)`: block until n records arrived, or fail after `within` s."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)


class _HttpServer(_Waitable):
    def __init__(self) -> None:
        super().__init__()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, reply: Reply) -> web.Response | None:
        """Apply a reply's delay or hang; None when the server stops meanwhile."""
        if reply.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), HANG_S)
            return None
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers)


# -------------------------------------------------------------------- rollback


def _sender_gone(transport: asyncio.BaseTransport | None) -> bool:
    """Whether the sender closed its end (a SIGKILL closes it at once), asked of the
    kernel now: the loop alone said "connected" until it had read the FIN, and a loaded
    receiver could decide first and count a killed sender's request as accepted."""
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as peek:
            return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # nothing to read, and no FIN: still connected
    except OSError:
        return True  # reset


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Computed here independently of `agent.rollback`, as a pipeline would."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass
class RollbackAttempt:
    """One request the webhook received, and what it answered."""

    n: int
    at: float
    path: str
    headers: dict[str, str]
    body: str
    idempotency_key: str | None
    timestamp: str | None
    signature: str | None
    signature_ok: bool
    status: int | None
    """What the receiver answered; None for a hang."""
    accepted: bool
    """A valid request answered 2xx to a sender still connected: the pipeline acts on it.
    Decided when the answer goes out, so a sender killed while the receiver was still
    working on its request (a delayed reply) is not counted as delivered."""
    duplicate: bool
    """Accepted again for an Idempotency-Key already accepted: a pipeline without
    deduplication would roll back twice. Tests count these as deliveries too."""
    answered_at: float | None = None
    """When the answer was decided, just before the sender was found still connected:
    a sender that hears a 2xx is alive after this instant (`at` is when the request
    was read, which a loaded receiver may do after its sender was killed)."""


class RollbackReceiver(_HttpServer):
    """The pipeline's side of the rollback webhook (contract §3)."""

    def __init__(
        self,
        secret: str,
        script: Iterable[Reply | int | str] = (),
        *,
        path: str = "/rollback",
        log: str | Path | None = None,
        max_skew_s: float | None = None,
        on_attempt: Callable[[RollbackAttempt], Awaitable[None]] | None = None,
        on_accept: Callable[[RollbackAttempt], None] | None = None,
    ) -> None:
        super().__init__()
        self.secret = secret
        self.on_attempt = on_attempt
        """Awaited as each request arrives, before it is answered (to look at the
        sender's state at that instant)."""
        self.on_accept = on_accept
        """Called the instant a request is accepted (acted on), before the 2xx goes out:
        e.g. to kill the sender inside the gap between the pipeline acting and the
        sender's record of it."""
        self.path = path
        self.max_skew_s = max_skew_s
        self.attempts: list[RollbackAttempt] = []
        self.delivered: dict[str, str] = {}
        """Idempotency-Key → body of the first accepted request: what the pipeline acts on."""
        self.strays: list[str] = []
        """Requests no rollback sender makes (not a POST, elsewhere than `path`), answered
        404 and kept out of `attempts` and the script: another process's agent probing a
        target whose port this receiver was given after it closed (this machine's tests
        share its ports: 30 GETs of /health, whose, none of the test's, made a TLS test's
        'no rollback' fail)."""
        self._script = _Script(script)
        self._log = _JsonLog(log)

    def script(self, *replies: Reply | int | str) -> None:
        """Queue replies for the next requests (then 200 for good)."""
        self._script.extend(replies)

    @property
    def url(self) -> str:
        assert self.port is not None, "start() the receiver first"
        return f"http://{HOST}:{self.port}{self.path}"

    async def wait_for_attempts(self, n: int, within: float = 10.0) -> list[RollbackAttempt]:
        await self._wait_until(lambda: len(self.attempts) >= n, within)
        return self.attempts

    async def stop(self) -> None:
        await super().stop()
        self._log.close()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" and request.path != self.path:
            self.strays.append(f"{request.method} {request.path}")
            return web.Response(status=404)
        body = await request.read()
        timestamp = request.headers.get("X-Postflight-Timestamp")
        signature = request.headers.get("X-Postflight-Signature")
        signature_ok = bool(
            timestamp
            and signature
            and hmac.compare_digest(expected_signature(self.secret, timestamp, body), signature)
        )
        if signature_ok and self.max_skew_s is not None and timestamp is not None:
            signature_ok = abs(time.time() - int(timestamp)) <= self.max_skew_s
        reply = self._script.next()
        status: int | None = None if reply.hang else reply.status
        if status is not None and 200 <= status < 300 and not signature_ok:
            reply = Reply(status=401)
            status = 401
        key = request.headers.get("Idempotency-Key")
        if status is not None and request.path != self.path:
            reply, status = Reply(status=404), 404
        attempt = RollbackAttempt(
            n=len(self.attempts) + 1,
            at=time.time(),
            path=request.path,
            headers=dict(request.headers),
            body=body.decode("utf-8", "replace"),
            idempotency_key=key,
            timestamp=timestamp,
            signature=signature,
            signature_ok=signature_ok,
            status=status,
            accepted=False,
            duplicate=False,
        )
        self.attempts.append(attempt)
        await self._notify()
        if self.on_attempt is not None:
            await self.on_attempt(attempt)
        response = await self._serve(reply)
        attempt.answered_at = time.time()
        if _sender_gone(request.transport):
            attempt.status = None  # the sender is gone: nobody hears an answer
        accepted = attempt.status is not None and 200 <= attempt.status < 300
        if accepted:
            attempt.accepted, attempt.duplicate = True, key in self.delivered
            self.delivered.setdefault(key or "", attempt.body)
        self._log.write(asdict(attempt))
        if accepted and self.on_accept is not None:
            self.on_accept(attempt)
        await self._notify()
        if response is None:
            return web.Response(status=503)
        if accepted:
            response.content_type = "application/json"
            response.text = json.dumps({"status": "duplicate" if attempt.duplicate else "accepted"})
        return response


# ------------------------------------------------------------------ json sink


@dataclass
class JsonNotification:
    """One apprise `json://` notification: version, title, message, type, attachments."""

    path: str
    headers: dict[str, str]
    payload: dict[str, Any]
    at: float = 0.0
    """When its request arrived (`time.time()`), before any answer: from then on its
    sender may die not knowing the channel took it."""
    sender: str | None = None
    """Who sent it, by the sink's `sender_of` (None without one)."""

    @property
    def title(self) -> str:
        return str(self.payload.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.payload.get("message", ""))

    @property
    def type(self) -> str:
        return str(self.payload.get("type", ""))


class JsonSink(_HttpServer):
    """An apprise `json://` target: collects every notification POSTed to it (any other
    request is a 404, counted nowhere)."""

    def __init__(
        self, script: Iterable[Reply | int | str] = (), *, log: str | Path | None = None
    ) -> None:
        super().__init__()
        self.notifications: list[JsonNotification] = []
        self.arrived = 0
        """Requests received, answered or not (a hung one counts at once)."""
        self._script = _Script(script)
        self._log = _JsonLog(log)
        self.sender_of: Callable[[web.Request], str | None] | None = None
        """Names a request's sender as it arrives (e.g. the process owning its socket)."""

    def script(self, *replies: Reply | int | str) -> None:
        """Queue replies (e.g. 500 to make a channel fail, `hang` to stall it)."""
        self._script.extend(replies)

    def fail_always(self, status: int = 500) -> None:
        self._script.default = Reply(status=status)

    def hang_always(self) -> None:
        self._script.default = Reply(hang=True)

    def come_back(self) -> None:
        """Answer 200 again after `fail_always` or `hang_always` (an outage ends)."""
        self._script.default = Reply()

    def answer_after(self, delay: float) -> None:
        """Answer 200 only after `delay` seconds, every time (a slow chat service)."""
        self._script.default = Reply(delay=delay)

    def url(self, path: str = "alerts", **params: str) -> str:
        """The apprise URL of this sink (`json://127.0.0.1:PORT/alerts`)."""
        assert self.port is not None, "start() the sink first"
        query = f"?{urlencode(params)}" if params else ""
        return f"json://{HOST}:{self.port}/{path.lstrip('/')}{query}"

    async def wait_for(self, n: int, within: float = 10.0) -> list[JsonNotification]:
        await self._wait_until(lambda: len(self.notifications) >= n, within)
        return self.notifications

    async def wait_arrived(self, n: int, within: float = 10.0) -> None:
        """Until `n` requests came in, whatever they were answered (or not yet)."""
        await self._wait_until(lambda: self.arrived >= n, within)

    async def stop(self) -> None:
        await super().stop()
        self._log.close()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            # not apprise (it POSTs each notification): another test's stray request to a
            # port it was given before this sink took it (a readiness poll of `/readyz`)
            return web.Response(status=404)
        reply = self._script.next()
        at, sender = time.time(), self.sender_of(request) if self.sender_of else None
        self.arrived += 1
        await self._notify()
        response = await self._serve(reply)
        if response is None:
            return web.Response(status=503)
        if 200 <= response.status < 300:
            try:
                payload = json.loads(await request.read() or b"null")
            except ValueError:
                payload = {"unparsed": True}
            note = JsonNotification(request.path, dict(request.headers), payload, at, sender)
            self.notifications.append(note)
            self._log.write(asdict(note))
            await self._notify()
        return response


class SlowOnTitles(JsonSink):
    """A `json://` sink that takes `delay` s over an alert whose title holds any of
    `slow` and answers any other at once: a channel slow on some alerts, whose
    `notifications` (and log) are in the order it took them."""

    def __init__(
        self, slow: Iterable[str], delay: float = 0.6, *, log: str | Path | None = None
    ) -> None:
        super().__init__(log=log)
        self.slow, self.delay = tuple(slow), delay

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            try:
                title = str(json.loads(await request.read() or b"{}").get("title", ""))
            except (ValueError, AttributeError):
                title = ""
            if any(text in title for text in self.slow):
                await asyncio.sleep(self.delay)
        return await super()._handle(request)


# ------------------------------------------------------------------ smtp sink


def titled(sink: JsonSink, text: str) -> list[JsonNotification]:
    return [n for n in sink.notifications if text in n.title]


async def alert_titled(sink: JsonSink, text: str, within: float = 10.0) -> JsonNotification:
    """The first notification whose title contains `text` (waits for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not titled(sink, text):
        seen = [n.title for n in sink.notifications]
        assert loop.time() < deadline, f"no alert titled {text!r}; got {seen}"
        await asyncio.sleep(0.05)
    return titled(sink, text)[0]


class _MailHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode()
        message = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        await self._sink._received(envelope.mail_from, list(envelope.rcpt_tos), message)
        return "250 Message accepted"


class SmtpSink(_Waitable):
    """An aiosmtpd SMTP server on the running loop (plain SMTP, no TLS, no auth)."""

    def __init__(self, *, log: str | Path | None = None) -> None:
        super().__init__()
        self.port: int | None = None
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._server: asyncio.Server | None = None
        self._log = _JsonLog(log)

    async def start(self, port: int = 0) -> None:
        from aiosmtpd.smtp import SMTP

        handler = _MailHandler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="postflight-test-smtp"), HOST, port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        self._log.close()

    def url(self, to: str = "oncall@example.com", sender: str = "postflight@example.com") -> str:
        """The apprise URL delivering to this server."""
        assert self.port is not None, "start() the sink first"
        return f"mailto://{HOST}:{self.port}?{urlencode({'from': sender, 'to': to})}"

    async def wait_for(self, n: int, within: float = 10.0) -> list[email.message.EmailMessage]:
        await self._wait_until(lambda: len(self.messages) >= n, within)
        return self.messages

    async def _received(
        self, sender: str, recipients: list[str], message: email.message.EmailMessage
    ) -> None:
        self.messages.append(message)
        self.envelopes.append((sender, recipients))
        self._log.write(
            {
                "from": sender,
                "to": recipients,
                "subject": message["Subject"],
                "text": text_of(message),
            }
        )
        await self._notify()


def text_of(message: email.message.EmailMessage) -> str:
    """The plain-text part of a mail (apprise sends text and HTML alternatives)."""
    part = message.get_body(preferencelist=("plain", "html"))
    return "" if part is None else str(part.get_content())


# ---------------------------------------------------------------------- target


def flip_fails(n: int) -> bool:
    """Whether a bad target fails its `n`th request (from 1): two of every five, by
    count, not by chance, so a window's error rate is the same every run."""
    return n % 5 < 2


class Target(_HttpServer):
    """The service being deployed, for a `postflight run` to probe: any path answers 200
    `{"status": "ok"}` unless the test flipped its mode (`POST /_mode`, JSON): `bad`
    fails two of every five requests 503 (`flip_fails`), `status` answers every one with
    it, `delay_ms` holds each that long. `GET /_arrivals` says how many requests came
    (controls not counted); `POST /_reset` forgets the mode and the count.

    Run as its own process (`python -m tests.receivers target`), a test process busy or
    asleep is not a service timing out to the daemons probing it."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = 0
        self.mode: dict[str, Any] = {}

    @property
    def url(self) -> str:
        assert self.port is not None, "start() the target first"
        return f"http://{HOST}:{self.port}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/_mode", self._set_mode)
        app.router.add_post("/_reset", self._reset)
        app.router.add_get("/_arrivals", self._count)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _set_mode(self, request: web.Request) -> web.Response:
        self.mode.update(await request.json())
        return web.json_response(self.mode)

    async def _reset(self, request: web.Request) -> web.Response:
        self.mode, self.arrivals = {}, 0
        return web.json_response(self.mode)

    async def _count(self, request: web.Request) -> web.Response:
        return web.json_response({"arrivals": self.arrivals})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals += 1
        status = int(self.mode.get("status") or 200)
        if self.mode.get("bad") and flip_fails(self.arrivals):
            status = 503
        await asyncio.sleep(float(self.mode.get("delay_ms") or 0) / 1000)
        return web.json_response({"status": "ok" if status < 400 else "error"}, status=status)


# -------------------------------------------------------------- black hole


class HangingServer:
    """Accepts TCP connections and never answers: a hung SMTP or HTTP peer."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._closing = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._hold, HOST, port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await self._closing.wait()

    def smtp_url(self) -> str:
        assert self.port is not None
        return f"mailto://{HOST}:{self.port}?from=postflight@example.com&to=oncall@example.com"

    async def stop(self) -> None:
        self._closing.set()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            self._server = None


# ---------------------------------------------------------------- standalone


def _kill_once(pidfile: str) -> Callable[[RollbackAttempt], None]:
    """SIGKILL the process whose id `pidfile` holds, at the first accepted request only:
    the sender dies after the pipeline acted and before it can hear the 2xx, let alone
    record it (for a crash test that must land in that gap every time)."""
    done: list[int] = []

    def kill(attempt: RollbackAttempt) -> None:
        if not done:
            pid = int(Path(pidfile).read_text())
            done.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    return kill


async def _run(args: argparse.Namespace) -> None:
    server: RollbackReceiver | JsonSink | SmtpSink | Target
    if args.kind == "rollback":
        server = RollbackReceiver(
            args.secret,
            parse_script(args.script or ""),
            path=args.path,
            log=args.log,
            on_accept=_kill_once(args.kill_on_accept) if args.kill_on_accept else None,
        )
        await server.start(args.port)
        url = server.url
    elif args.kind == "target":
        server = Target()
        await server.start(args.port)
        url = server.url
    elif args.kind == "json":
        server = JsonSink(parse_script(args.script or ""), log=args.log)
        await server.start(args.port)
        url = server.url()
    else:
        server = SmtpSink(log=args.log)
        await server.start(args.port)
        url = server.url()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"kind": args.kind, "port": server.port, "url": url}), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.receivers", description=__doc__)
    parser.add_argument("kind", choices=("rollback", "json", "smtp", "target"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append one JSON line per received request")
    parser.add_argument("--secret", default="", help="rollback: the HMAC secret")
    parser.add_argument("--path", default="/rollback", help="rollback: the webhook path")
    parser.add_argument(
        "--script", help="replies in order, then 200: e.g. 503,503:retry-after=1,hang,200"
    )
    parser.add_argument(
        "--kill-on-accept",
        metavar="PIDFILE",
        help="rollback: SIGKILL the pid in PIDFILE when the first request is accepted",
    )
    args = parser.parse_args(argv)
    if args.kind == "rollback" and not args.secret:
        parser.error("rollback needs --secret")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

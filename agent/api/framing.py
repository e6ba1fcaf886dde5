"""aiohttp's request parser, fed so that what it parsed is never lost to a later error.

aiohttp's connection (`web_protocol.RequestHandler.data_received`) hands each read
from the socket to its parser whole. Three of its failures are the parser's way of
reporting, not the client's fault alone, and `RequestFraming` (put in the parser's
place by `agent.api.runner`) answers each as the client's own mistake:

- requests pipelined in one read, a good one and then a malformed one: the parser
  raises at the second and the first, already parsed, is dropped unanswered.
  Fed one request head at a time (the read cut after each blank line that ends a
  head), the good one is returned before the bad one is reached, and the bad one's
  error is raised on the next feed (`pending`), so aiohttp answers it after.
- a chunked body whose framing breaks in a later read than its headers: the C parser
  raises it out of `feed_data` without telling the body, so the route reading it
  waited for its body timeout (a 408 after 10 s) and the error was never answered.
  It is now the body's error (`RequestPayloadError`, as the pure-Python parser
  makes it): the route answers 400 at once.
- a request line without a version (HTTP/0.9's `GET /`): the parser waits for
  headers that never come, or parses it as version 0.9 and the answer's status line
  said `HTTP/0.9`. It is `NoHttpVersion` as soon as its line is in.
- a method the C parser does not know (`FOO /healthz HTTP/1.1`: a method is any
  token): it raised `BadHttpMethod`, a 400 saying the request does not begin with a
  method, where `PURGE` was the router's 405. The connection's requests go on to
  aiohttp's pure-Python parser (`other_methods`), which takes any token, so the
  router answers as for any method it does not serve.

It also tells the connection whether a request head is under way (`in_head`), for
the runner's time limit on one. Nothing of aiohttp is patched: every other call
goes to the parser itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    TransferEncodingError,
)
from aiohttp.streams import StreamReader

_HEAD_END = b"\r\n\r\n"
_LINE_KEPT = 64 * 1024
_NOTHING: tuple[Sequence[Any], bool, bytes] = ((), False, b"")
_TOKEN_AND_SPACE = re.compile(rb"(?:\r?\n)*[-!#$%&'*+.^_`|~0-9A-Z]+ [^\s]")
_ANY_CASE_TOKEN_AND_SPACE = re.compile(rb"(?:\r?\n)*[-!#$%&'*+.^_`|~0-9A-Za-z]+ [^\s]")
"""The start of a request line whose method is a token (RFC 9110 §9.1), whatever it
names: what the pure-Python parser reads on. Bytes that are not HTTP at all (a TLS
hello, an SSH banner) do not match, nor does a method with a lower-case letter: that
parser upper-cases it, and `post` would register a deploy (a method is case-sensitive:
it is `LowerCaseMethod`)."""

Message = tuple[Any, StreamReader]
"""aiohttp's (RawRequestMessage, its body)."""


class LowerCaseMethod(BadHttpMethod):
    """A request line whose method is a token with a lower-case letter (`get`): HTTP,
    but not a method this server serves in any spelling (methods are case-sensitive)."""

    def __init__(self) -> None:
        super().__init__(error="method with a lower-case letter")


class NoHttpVersion(BadStatusLine):
    """A request line without `HTTP/1.x` at its end: HTTP/0.9, not served."""

    def __init__(self) -> None:
        super().__init__(error="request line without an HTTP version")


class HeadTimeout(HttpProcessingError):
    """The request line and headers did not all arrive in time."""

    code = 408

    def __init__(self) -> None:
        super().__init__(message="request head not complete in time")


class RequestFraming:
    """aiohttp's request parser (`parser`), fed one request head at a time.

    `body_error(exc)` is told of a body whose framing broke (the body's reader gets
    the error too)."""

    def __init__(
        self,
        parser: Any,
        body_error: Callable[[HttpProcessingError], None],
        other_methods: Callable[[], Any] | None = None,
    ) -> None:
        self.parser = parser
        self.body_error = body_error
        self.other_methods = other_methods
        """Makes a parser that takes any method token, for the connection's requests
        from the first whose method `parser` refused."""
        self.pending: HttpProcessingError | None = None
        """An error met after requests the same read completed: raised on the next
        feed, once aiohttp has queued those requests."""
        self.failed = False
        self.in_head = False
        """Bytes of a request head arrived and its blank line has not."""
        self.messages = 0
        self.broken_body: web.RequestPayloadError | None = None
        """The error a body's reader was given (`body_error` was told)."""
        self._body: StreamReader | None = None
        self._line: bytearray | None = bytearray()
        """The start of a request line, while it is known where it began (not after a
        body whose end the parser found inside a read)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)

    def release(self) -> None:
        """Let go of the connection once it is lost: the parser and the body's reader each
        hold its protocol, and `body_error` is the protocol's own method, so each was a
        cycle through it (~25 objects a connection, the protocol's buffers and transport
        among them), left for a young collection that the daemon runs rarely
        (`agent.windows.heap`). `broken_body` stays: a handler still running reads it."""
        self.parser = None
        self.body_error = _told_nobody
        self.other_methods = None
        self._body = None

    def _body_done(self) -> bool:
        return self._body is None or self._body.is_eof()

    def feed_data(self, data: bytes) -> tuple[Sequence[Message], bool, bytes]:
        if self.pending is not None:
            exc, self.pending = self.pending, None
            self.failed = True
            self.in_head = False
            raise exc
        if self.failed:
            return _NOTHING
        messages: list[Message] = []
        start = 0
        while True:  # once at least: an empty read is aiohttp's nudge to a paused parser
            end = data.find(_HEAD_END, start)
            end = len(data) if end < 0 else end + len(_HEAD_END)
            upgraded, tail = self._feed(messages, data[start:end])
            if self.failed or self.pending is not None:
                return messages, False, b""
            if upgraded:
                return messages, True, tail + data[end:]
            if end >= len(data):
                return messages, False, b""
            start = end

    def _feed(self, messages: list[Message], piece: bytes) -> tuple[bool, bytes]:
        between = self._body_done()
        head_starts = between and not self.in_head
        try:
            if head_starts and _lower_case_method(piece):
                # before any parser: the pure-Python one would take `post` for POST
                raise LowerCaseMethod
            new, upgraded, tail = self.parser.feed_data(piece)
            for message, body in new:
                if message.version < HttpVersion10:
                    raise NoHttpVersion
                messages.append((message, body))
                self._body = body
                self.messages += 1
            if new:
                self.in_head = False
                done = self._body_done() and piece.endswith(_HEAD_END)
                self._line = bytearray() if done else None
            elif piece and between:
                self.in_head = True
                self._check_line(piece)
            elif self._body_done():  # the body ended in this piece: at its end, or unknown
                self._line = bytearray() if piece.endswith(_HEAD_END) else None
        except HttpProcessingError as exc:
            if self._other_method(exc, piece, head_starts):
                assert self.other_methods is not None
                self.parser, self.other_methods = self.other_methods(), None
                return self._feed(messages, piece)  # nothing of `piece` was taken
            self._fail(exc, messages)
            return False, b""
        return upgraded, tail

    def _other_method(self, exc: HttpProcessingError, piece: bytes, head_starts: bool) -> bool:
        """The parser refused the method of a request line `piece` begins, a token in
        capitals that the pure-Python parser takes (`other_methods`)."""
        return (
            isinstance(exc, BadHttpMethod)
            and head_starts
            and self.other_methods is not None
            and bool(_TOKEN_AND_SPACE.match(piece))
        )

    def _check_line(self, piece: bytes) -> None:
        if self._line is None:
            return
        self._line += piece
        line, newline, _ = self._line.lstrip(b"\r\n").partition(b"\n")
        if not newline:
            if len(self._line) > _LINE_KEPT:  # the parser refuses a line this long first
                self._line = None
            return
        self._line = None
        if not line.rstrip(b"\r").rpartition(b" ")[2].startswith(b"HTTP/"):
            raise NoHttpVersion

    def _fail(self, exc: HttpProcessingError, messages: list[Message]) -> None:
        self.in_head = False
        if not self._body_done():
            assert self._body is not None
            # only a chunked body's framing is the parser's to break (a Content-Length
            # is counted, a decoding error is the body's already): told as such
            framing = TransferEncodingError("the chunked framing is broken")
            framing.__cause__ = exc
            error = web.RequestPayloadError("the request body's framing is broken")
            error.__cause__ = framing
            self._body.set_exception(error, framing)
            self.broken_body = error
            self.failed = True
            self.body_error(exc)
        elif messages:
            self.pending = exc
        else:
            self.failed = True
            raise exc


def _lower_case_method(piece: bytes) -> bool:
    """`piece` begins a request line whose method is a token with a lower-case letter."""
    return bool(_ANY_CASE_TOKEN_AND_SPACE.match(piece)) and not _TOKEN_AND_SPACE.match(piece)


def _told_nobody(exc: HttpProcessingError) -> None:
    """`RequestFraming.body_error` once its connection is gone."""

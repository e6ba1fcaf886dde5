"""A request through aiohttp timed out: was the target silent, or the agent away?

Why: a timeout during which the agent's loop stalled is dropped as the agent's
(`checks.lag.attributed`) unless the agent saw the target's silence for itself
(`checks.lag.UNANSWERED`). The lean client looks in its socket at the deadline
(`checks.wire._expire`); through aiohttp (an https target, a load check) nothing looked,
so an https target that stopped answering while the agent was overloaded had its
timeouts dropped, and the window ended `inconclusive` instead of rolling back.

How, through aiohttp's public parts where it has them: the pools' connector makes
`Handler`s, aiohttp's own protocol counting the bytes of answers it is handed; the
request's `checks.written.Written` (its trace context) learns each hop's handler from the
connector and, from its trace signals, when the hop's request was all in the kernel's
hands; `Deadline` keeps the request's total timeout itself (aiohttp is given none) and,
at it, looks before it cancels. Where any part is missing (another connector, a transport
that says nothing), nothing is vouched for: the timeout is judged as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import struct
import termios
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace

from checks.lag import BEAT_S, SLACK_S

if TYPE_CHECKING:
    from checks.written import Written

HOP: ContextVar[Written | None] = ContextVar("postflight_hop", default=None)
"""The request this task sends through aiohttp now (`checks.exchange`): the connection
the connector hands it is that request's hop's."""


class Handler(ResponseHandler):
    """aiohttp's protocol, counting the bytes of answers it was handed (after TLS)."""

    received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hop = HOP.get()
        if hop is not None:  # made for this request's connect (`Written.over` looks again)
            hop.made(self)

    def connect_cut(self) -> None:
        """Its request is over: if uvloop closed its transport without a word (its
        `create_connection` was cancelled just after it connected: aiohttp never had it,
        and `connection_lost` never comes), drop the transport, which refers back to this
        protocol: kept, they were a cycle for the rare collection (`agent.windows.heap`)."""
        transport = self.transport
        if transport is not None and (transport.is_closing() or _socket_gone(transport)):
            self.transport = None

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        super().data_received(data)

    def close(self) -> None:
        """Closed by its pool (its request done with it): an answer still queued, which no
        request will read (its own was cut in the turn the answer came), is dropped. Its
        payload refers back to this protocol: kept, the closed connection, its transport
        and its context were a cycle for the rare collection (`agent.windows.heap`)."""
        super().close()
        self._buffer.clear()

    def abort(self) -> None:
        """As `close`."""
        super().abort()
        self._buffer.clear()


class Connector(aiohttp.TCPConnector):
    """aiohttp's connector, whose connections are `Handler`s, each told to the request that
    gets it (`HOP`). An aiohttp that makes its protocols otherwise makes no `Handler`:
    nothing is measured, as before."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        factory = getattr(self, "_factory", None)
        if isinstance(factory, functools.partial) and factory.func is ResponseHandler:
            handlers = functools.partial(Handler, *factory.args, **factory.keywords)
            setattr(self, "_factory", handlers)  # noqa: B010 (aiohttp's own, typed as its class)

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> Connection:
        conn = await super().connect(req, traces, timeout)
        hop = HOP.get()
        if hop is not None and isinstance(conn.protocol, Handler):
            hop.on(conn.protocol)
        return conn


def written_out(transport: asyncio.BaseTransport) -> bool:
    """Whether all that was written to `transport` is in the kernel's hands: its buffer is
    empty, and that of the transport it wraps where it shows it (asyncio's TLS keeps its
    socket's transport apart; uvloop's does not show it, and a small request on a socket
    the kernel has room for leaves none there). uvloop's transports are no
    `asyncio.WriteTransport`s: asked for what they have."""
    if _buffered(transport) != 0:
        return False
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    return inner is None or _buffered(inner) == 0


def _buffered(transport: object) -> int | None:
    size = getattr(transport, "get_write_buffer_size", None)
    return size() if callable(size) else None


def _socket_gone(transport: asyncio.BaseTransport) -> bool:
    """Its socket closed (uvloop's cut connect: the transport does not say it is closing)."""
    sock = transport.get_extra_info("socket")
    try:
        return sock is None or sock.fileno() < 0
    except (AttributeError, OSError, ValueError):
        return True


def unread(transport: asyncio.BaseTransport) -> int | None:
    """Bytes in the kernel's buffer of `transport`'s socket that the loop has not read
    (a TLS record of an answer, or the handshake's tickets: either way not silence);
    None: not known."""
    sock = transport.get_extra_info("socket")
    try:
        fd = sock.fileno()
        if fd < 0:
            return None
        raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except (AttributeError, OSError, ValueError):
        return None
    return int(struct.unpack("i", raw)[0])


GRACE_S = BEAT_S + SLACK_S
"""How long an answer found unread at the deadline is given to be read (a heartbeat's
turn: the loop reads it, the request takes it, in a few turns of a loop that keeps time)."""
GRACES = 3
"""Graces at most, the second and third only while the loop stalls again: an answer that
trickles in is not waited on for ever."""


class Deadline:
    """A request's total timeout, kept here: at it, the target's silence is looked for
    (`Written.silence`) before the request is cancelled, which then raises `TimeoutError`
    (as `asyncio.timeout` does). A request written after the deadline was set (its connect
    or TLS handshake came first) on a loop that stalled since is looked at again once it
    has had its whole timeout from the write, as the lean client does: the target gets
    its whole time, where the stall would otherwise make its timeout the agent's. An answer
    found there unread (a busy loop came to the deadline first) is read rather than thrown
    away as a timeout (`GRACE_S`), as the lean client reads it."""

    __slots__ = (
        "_cancelling",
        "_graces",
        "_handle",
        "_looked",
        "_mark",
        "_task",
        "_timeout",
        "_written",
        "expired",
    )

    def __init__(self, written: Written, timeout_s: float | None) -> None:
        self._written = written
        self._timeout = timeout_s
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._mark: float | None = None
        self._graces = 0
        self._looked: float | None = None  # the loop's stall as the last grace began
        self.expired = False

    def __enter__(self) -> Deadline:
        if self._timeout is None:
            return self
        self._task = task = asyncio.current_task()
        if task is None:
            return self
        self._cancelling = task.cancelling()
        self._mark = self._written.lag_mark()
        loop = asyncio.get_running_loop()
        self._handle = loop.call_at(loop.time() + self._timeout, self._expire)
        return self

    def _expire(self) -> None:
        self._handle = None
        timeout, written, task = self._timeout, self._written, self._task
        assert timeout is not None and task is not None
        loop = asyncio.get_running_loop()
        now = written.lag_mark()
        silent = written.silence()
        if silent is not None:
            if silent >= timeout:
                written.silent_s = silent
            elif self._mark is not None and now is not None and now - self._mark > SLACK_S:
                # its whole time from the write (uvloop's clock: whole milliseconds)
                self._handle = loop.call_at(loop.time() + (timeout - silent) + 0.001, self._expire)
                return
        elif self._graces < GRACES and written.answer_came():
            looked, self._looked = self._looked, now
            if not self._graces or (looked is not None and now is not None and now > looked):
                # an answer is there, unread: the loop was away (or its last turn brought
                # it); read now, as the lean client does, not thrown away as a timeout
                self._graces += 1
                self._handle = loop.call_at(loop.time() + GRACE_S, self._expire)
                return
        self.expired = True
        task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task, self._task = self._task, None  # a cancelled task's traceback holds this frame
        if (
            self.expired
            and task is not None
            and task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

"""When a request sent through aiohttp was written: the stall of the agent's loop before it
is the agent's (`checks.lag.AGENT_HELD`), what the lean client measures as `_Conn.held`.

Why: a latency counts from the probe's start, so a stall while a new connection connects
or shakes hands (an overloaded agent dialling an https target, or one that closes every
connection) is all in it, though the answer is read on time: counted as the target's, a
100 ms https target kept 0.43 s. No I/O of its own: aiohttp's trace signals (`TRACE`, on
the pools of `checks.sessions` and `checks.load`) read the loop-lag heartbeat as each part
of the request goes to aiohttp's writer, which hands it to the transport in that same step.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import aiohttp

from checks.lag import LoopLag
from checks.silence import Handler, unread, written_out
from checks.ticks import ticks


class Written:
    """One request's `trace_request_ctx`: the stall of the loop (`LoopLag.beating()`) from
    each hop's start (the request's, then each redirect's arrival) to that hop's last write.
    A stall while the target has a hop is not in it: that one delays only the reading of
    its answer, which `checks.lag.attributed` weighs apart.

    Also what a timeout's look needs (`checks.silence.Deadline`): the hop's connection
    (`on`, from `checks.silence.Connector`), how many bytes of answers it had been handed
    as the hop's request began to go out, and when that request was all in the kernel's
    hands (after its last write, as the loop next came round: never before it)."""

    __slots__ = (
        "_at",
        "_before",
        "_handler",
        "_lag",
        "_made",
        "_mark",
        "_seen",
        "_sent_at",
        "silent_s",
    )

    def __init__(self, before: float = 0.0) -> None:
        """Started now; `before`: what earlier hops were held (the lean client's first)."""
        self._lag: LoopLag = ticks().lag
        self._before = before
        self._mark = self._at = self._lag.beating()  # None: no heartbeat, nothing measured
        self._handler: Handler | None = None
        self._made: list[Handler] = []
        """The connections made for this request's connects (`Handler.connect_cut`)."""
        self._seen: int | None = None  # the handler's bytes as the hop's first write began
        self._sent_at = 0.0  # `time.monotonic()` once all written; 0.0: not (yet) known
        self.silent_s: float | None = None
        """Set at the deadline: how long the target had the whole request with no byte of
        an answer (`checks.lag.UNANSWERED`), at least the timeout. None: not seen."""

    def on(self, handler: Handler) -> None:
        """The hop's connection (`checks.silence.Connector`)."""
        self._handler = handler

    def note(self) -> None:
        """Part of this hop's request goes out now (aiohttp's trace signal)."""
        if self._mark is not None:
            self._at = self._lag.beating()
        handler = self._handler
        if handler is not None:
            if self._seen is None:
                self._seen = handler.received
            self._sent_at = 0.0
            asyncio.get_running_loop().call_soon(self._out, handler)

    def made(self, handler: Handler) -> None:
        """A connection made for this request's connect (`checks.silence.Handler`)."""
        self._made.append(handler)

    def over(self) -> None:
        """The request ended: its connection is no longer this one's to hold (a cancelled
        probe's traceback holds this, and a protocol holds what ended it: a cycle), and a
        connect of its that was cut leaves no cycle either (`Handler.connect_cut`)."""
        self._handler = None
        made, self._made = self._made, []
        for handler in made:
            handler.connect_cut()

    def _out(self, handler: Handler) -> None:
        """After a write: when its bytes are all with the kernel, the request is."""
        transport = handler.transport
        if handler is self._handler and transport is not None and written_out(transport):
            self._sent_at = time.monotonic()

    def hop(self) -> None:
        """A redirect's answer came: the next hop starts now."""
        self._handler, self._seen, self._sent_at = None, None, 0.0
        if self._mark is not None:
            self._before = self.held()
            self._mark = self._at = self._lag.beating()

    def lag_mark(self) -> float | None:
        """The loop's stall so far (`LoopLag.beating`)."""
        return self._lag.beating()

    def answer_came(self) -> bool:
        """Whether bytes came on this hop's connection since its request began to go out:
        handed to aiohttp, or waiting in the socket (a TLS record, of an answer or not)."""
        handler, seen = self._handler, self._seen
        if handler is None or seen is None:
            return False
        if handler.received != seen:
            return True
        transport = handler.transport
        return transport is not None and bool(unread(transport))

    def silence(self) -> float | None:
        """How long the target has had this hop's whole request with no byte of an answer,
        as seen now (after the look: the silence is at least that long, whatever the
        agent's loop did meanwhile); None: an answer began, or not known (no `Handler`,
        the request not all written, the socket not readable)."""
        looked = time.monotonic()
        handler, sent_at = self._handler, self._sent_at
        if handler is None or not sent_at or handler.received != self._seen:
            return None
        transport = handler.transport
        if transport is None or transport.is_closing() or not written_out(transport):
            return None
        if unread(transport) != 0:
            return None
        return looked - sent_at

    def held(self) -> float:
        """Seconds the loop held the hops back before their writes (0.0: not stalled, not
        measured, or no trace on the session that sent it)."""
        mark, at = self._mark, self._at
        return self._before + (
            at - mark if mark is not None and at is not None and at > mark else 0.0
        )


async def _sent(_session: aiohttp.ClientSession, context: SimpleNamespace, _params: Any) -> None:
    written = context.trace_request_ctx
    if isinstance(written, Written):
        written.note()


async def _redirected(
    _session: aiohttp.ClientSession, context: SimpleNamespace, _params: Any
) -> None:
    written = context.trace_request_ctx
    if isinstance(written, Written):
        written.hop()


TRACE = aiohttp.TraceConfig()
"""The trace a pool sends its requests with: `Written.note` as headers and body go out
(aiohttp calls it just before the same step's write: a bodiless request's headers are
written as it returns, a body's with its first chunk, so a hop's last call is its last
write), `Written.hop` as a redirect's answer came."""
TRACE.on_request_headers_sent.append(_sent)
TRACE.on_request_chunk_sent.append(_sent)
TRACE.on_request_redirect.append(_redirected)

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

from types import SimpleNamespace
from typing import Any

import aiohttp

from checks.lag import LoopLag
from checks.ticks import ticks


class Written:
    """One request's `trace_request_ctx`: the stall of the loop (`LoopLag.beating()`) from
    each hop's start (the request's, then each redirect's arrival) to that hop's last write.
    A stall while the target has a hop is not in it: that one delays only the reading of
    its answer, which `checks.lag.attributed` weighs apart."""

    __slots__ = ("_at", "_before", "_lag", "_mark")

    def __init__(self, before: float = 0.0) -> None:
        """Started now; `before`: what earlier hops were held (the lean client's first)."""
        self._lag: LoopLag = ticks().lag
        self._before = before
        self._mark = self._at = self._lag.beating()  # None: no heartbeat, nothing measured

    def note(self) -> None:
        """Part of this hop's request goes out now (aiohttp's trace signal)."""
        if self._mark is not None:
            self._at = self._lag.beating()

    def hop(self) -> None:
        """A redirect's answer came: the next hop starts now."""
        if self._mark is not None:
            self._before = self.held()
            self._mark = self._at = self._lag.beating()

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

"""Shared HTTP client sessions: one keep-alive connection pool per target and TLS mode.

Probing the same target every few seconds from a fresh session would pay a TCP
(and TLS) handshake per probe, which both slows the agent and inflates the
latency it reports. The daemon owns one `TargetSessions` and closes it on
shutdown; checks only borrow sessions from it through `CheckContext.session`.

A session idle for `idle_s` is closed and forgotten: with a preview URL per deploy
(a new host each time) one pool per host ever probed stayed for good (about 8 kB,
and the lean client's idle sockets). `idle_s` (5 minutes) is ten keep-alive timeouts:
a target probed often enough to keep its connection is never idle, and keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from yarl import URL

from checks.silence import Connector
from checks.wire import LeanClient
from checks.written import TRACE
from common.version import __version__

USER_AGENT = f"postflight/{__version__}"

_LEAN: weakref.WeakKeyDictionary[aiohttp.ClientSession, LeanClient] = weakref.WeakKeyDictionary()


IDLE_S = 300.0
"""How long a session goes unused before it is closed: ten keep-alive timeouts."""


def lean_client(session: aiohttp.ClientSession) -> LeanClient | None:
    """The lean client paired with `session` by `TargetSessions`, if any (`checks.wire`)."""
    return _LEAN.get(session)


class InUse:
    """Requests sent by aiohttp over one pooled session's connections, counted where
    checks send them (`checks.exchange`): from before the request until its body is read
    and its connection given back. Ours, not aiohttp's pool fields: aiohttp has no public
    count, and its private one renamed would have made no session idle, ever."""

    __slots__ = ("_drained", "in_flight", "started")

    def __init__(self) -> None:
        self.in_flight = 0
        self.started = 0
        self._drained: asyncio.Future[None] | None = None

    def __enter__(self) -> None:
        self.in_flight += 1
        self.started += 1

    def __exit__(self, *exc_info: object) -> None:
        self.in_flight -= 1
        drained = self._drained
        if not self.in_flight and drained is not None:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    async def drained(self) -> None:
        """Return once no request is in flight (at once when none is)."""
        while self.in_flight:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained


_UNTRACKED = contextlib.nullcontext()

# By connector, not session: a smoke check sends over the shared pool from a session of its own.
_IN_USE: weakref.WeakKeyDictionary[aiohttp.BaseConnector, InUse] = weakref.WeakKeyDictionary()


def in_use(session: aiohttp.ClientSession) -> contextlib.AbstractContextManager[None]:
    """Hold around a request sent by aiohttp through `session`, its body read included:
    `TargetSessions` closes no pool with one in flight (a no-op for other sessions)."""
    connector = session.connector
    count = _IN_USE.get(connector) if connector is not None else None
    return count if count is not None else _UNTRACKED


async def _close_when_drained(session: aiohttp.ClientSession, count: InUse | None) -> None:
    """Close `session` once no request sent on it is in flight. A holder that took it
    before the sweep may still send on it until it sees it `closed`: the tasks already
    created get a step first (`sleep(0)`), and their requests end, not cut off. No await
    of ours between the wait and the close, so none starts in between."""
    await asyncio.sleep(0)
    if count is not None:
        await count.drained()
    await session.close()


@dataclass
class _Seen:
    """When a session was last handed out or found in use, and how many requests it had
    sent by then: by its lean client, and by aiohttp (`InUse.started`)."""

    at: float
    sent: int = 0
    started: int = 0


class TargetSessions:
    """One `aiohttp.ClientSession` per (origin, verify_tls), created on first use.

    Sessions carry no cookies (a `DummyCookieJar`), so one check never sees what
    another's target set; a smoke check keeps its own jar for its steps. Each pool
    holds at most `limit_per_target` connections, which also bounds how many
    requests one agent has in flight against one target (twice that when some of
    its requests go through the lean client and others through aiohttp).
    """

    def __init__(
        self,
        *,
        limit_per_target: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = 30.0,
        keepalive: bool = True,
        user_agent: str = USER_AGENT,
        lean: bool = True,
        idle_s: float = IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`keepalive=False` opens a connection per request (what blackbox_exporter
        does; the probe benchmark compares like with like). `lean=False` sends every
        request through aiohttp, without the lean client (`checks.wire`). A session
        unused for `idle_s` (by `clock`) is closed by the next `get` that sweeps."""
        if limit_per_target < 1:
            raise ValueError("limit_per_target must be at least 1")
        self._limit = limit_per_target
        self._ssl_context = ssl_context
        self._keepalive = keepalive_timeout
        self._force_close = not keepalive
        self._lean = lean
        self._headers = {"User-Agent": user_agent}
        self._sessions: dict[tuple[str, bool], aiohttp.ClientSession] = {}
        self._closed = False
        self._idle_s = idle_s
        self._clock = clock
        self._seen: dict[tuple[str, bool], _Seen] = {}
        self._swept_at = clock()
        self._closing: dict[asyncio.Future[None], aiohttp.ClientSession] = {}

    def get(self, base_url: str, verify_tls: bool = True) -> aiohttp.ClientSession:
        """The session for the target at `base_url` (only its origin matters).

        Call from within the running event loop. With `verify_tls=False` the pool
        accepts any certificate; it is kept apart from the verifying pool so a
        check that opted out never lends its connections to one that did not.
        """
        if self._closed:
            raise RuntimeError("TargetSessions is closed")
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        now = self._clock()
        if now - self._swept_at >= min(self._idle_s, 60.0):
            self.close_idle(now)
        key = (str(url.origin()), verify_tls)
        session = self._sessions.get(key)
        seen = self._seen.get(key)
        if seen is not None:
            seen.at = now
        if session is None or session.closed:
            session = self._sessions[key] = self._open(verify_tls)
            if self._lean:
                # The same pool limit, keep-alive and default headers as the session's.
                _LEAN[session] = LeanClient(
                    limit=self._limit,
                    keepalive_s=self._keepalive,
                    force_close=self._force_close,
                    default_headers=self._headers,
                )
            if session.connector is not None:
                _IN_USE[session.connector] = InUse()
            self._seen[key] = _Seen(now)
        return session

    def close_idle(self, now: float | None = None) -> int:
        """Close the sessions unused for `idle_s`: not handed out, no request in flight
        and none sent (by the lean client or aiohttp, as `in_use` counts) since the last
        sweep that found one. Returns how many. `get` and `len` forget them at once; callers
        that keep one find it `closed` once its requests in flight end, and ask `get` again
        (`agent.windows.probing.EnvironmentProbe`)."""
        now = self._clock() if now is None else now
        self._swept_at = now
        idle: list[tuple[str, bool]] = []
        for key, session in self._sessions.items():
            seen = self._seen[key]
            lean = _LEAN.get(session)
            sent = lean.sent if lean is not None else 0
            count = _IN_USE.get(session.connector) if session.connector is not None else None
            started = count.started if count is not None else 0
            if session.closed:
                idle.append(key)
            elif (
                sent != seen.sent
                or started != seen.started
                or (count is not None and count.in_flight > 0)
                or (lean is not None and lean.busy())
            ):
                seen.at, seen.sent, seen.started = now, sent, started
            elif now - seen.at > self._idle_s:
                idle.append(key)
        for key in idle:
            del self._seen[key]
            session = self._sessions.pop(key)
            lean = _LEAN.pop(session, None)
            if lean is not None:
                lean.close()
            count = _IN_USE.get(session.connector) if session.connector is not None else None
            closing = asyncio.ensure_future(_close_when_drained(session, count))
            self._closing[closing] = session
            closing.add_done_callback(self._forget_closed)
        return len(idle)

    def _forget_closed(self, closing: asyncio.Future[None]) -> None:
        self._closing.pop(closing, None)

    def _open(self, verify_tls: bool) -> aiohttp.ClientSession:
        tls: ssl.SSLContext | bool = (
            (self._ssl_context if self._ssl_context is not None else True) if verify_tls else False
        )
        connector = Connector(  # aiohttp's, telling a timeout the target's silence
            limit=self._limit,
            limit_per_host=self._limit,
            ssl=tls,
            keepalive_timeout=None if self._force_close else self._keepalive,
            force_close=self._force_close,
            ttl_dns_cache=60,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers=self._headers,
            # Checks pass their own timeout per request; this only backs up a caller that forgets.
            timeout=aiohttp.ClientTimeout(total=60),
            trust_env=False,
            trace_configs=[TRACE],  # the stall before a request was written: the agent's
        )

    def __len__(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.closed)

    async def aclose(self) -> None:
        """Close every session; later `get` calls raise. Safe to call twice."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        self._seen.clear()
        for session in sessions:
            lean = _LEAN.pop(session, None)
            if lean is not None:
                lean.close()
            await session.close()
        if self._closing:  # idle ones still closing: done before the loop ends, and now
            closing = list(self._closing)  # (a request in flight on one is cut, as on the rest)
            for session in list(self._closing.values()):
                await session.close()
            await asyncio.gather(*closing, return_exceptions=True)

    async def __aenter__(self) -> TargetSessions:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

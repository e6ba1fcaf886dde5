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
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from checks.wire import LeanClient
from common.version import __version__

USER_AGENT = f"postflight/{__version__}"

_LEAN: weakref.WeakKeyDictionary[aiohttp.ClientSession, LeanClient] = weakref.WeakKeyDictionary()


IDLE_S = 300.0
"""How long a session goes unused before it is closed: ten keep-alive timeouts."""


def lean_client(session: aiohttp.ClientSession) -> LeanClient | None:
    """The lean client paired with `session` by `TargetSessions`, if any (`checks.wire`)."""
    return _LEAN.get(session)


def _connector_busy(connector: aiohttp.BaseConnector | None) -> bool:
    """Whether aiohttp's pool has a connection in use, or a request waiting for one.
    aiohttp has no public count: these are its own fields (were they renamed, nothing is
    idle, and `tests/checks/test_checks_sessions.py` fails)."""
    if connector is None or connector.closed:
        return False
    return bool(
        getattr(connector, "_acquired", True) or any(getattr(connector, "_waiters", {}).values())
    )


def _connector_mark(connector: aiohttp.BaseConnector | None) -> float:
    """When aiohttp's pool last took back a connection kept alive (its own stamp): one
    that moved since the last sweep means the session was used meanwhile."""
    if connector is None or connector.closed:
        return 0.0
    pooled = getattr(connector, "_conns", {}).values()
    return max((stamp for conns in pooled for _, stamp in conns), default=0.0)


def _close_now(session: aiohttp.ClientSession) -> asyncio.Future[Any] | None:
    """Close `session` before this returns (what `session.close()` does but its wait):
    a caller holding it sees it `closed` at once and asks `get` for another, where a task
    running `close()` later cut off a request begun on it meanwhile. The wait for its
    transports to close, if any, is returned."""
    connector = session.connector
    if connector is None or connector.closed:
        return None
    waiters = connector._close()  # the synchronous part of `close()`, as `LoadPool` does
    return asyncio.gather(*waiters, return_exceptions=True) if waiters else None


@dataclass
class _Seen:
    """When a session was last handed out or found in use, and what said it was used
    then: its lean client's count of requests sent, its aiohttp pool's newest stamp."""

    at: float
    sent: int = 0
    mark: float = 0.0


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
        self._closing: set[asyncio.Future[Any]] = set()

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
            self._seen[key] = _Seen(now)
        return session

    def close_idle(self, now: float | None = None) -> int:
        """Close the sessions unused for `idle_s`: not handed out, no connection in use
        and no request sent (by the lean client or aiohttp) since the last sweep that
        found one. Returns how many. Callers that keep a session find it `closed`
        and ask `get` again (`agent.windows.probing.EnvironmentProbe`)."""
        now = self._clock() if now is None else now
        self._swept_at = now
        idle: list[tuple[str, bool]] = []
        for key, session in self._sessions.items():
            seen = self._seen[key]
            lean = _LEAN.get(session)
            sent = lean.sent if lean is not None else 0
            mark = _connector_mark(session.connector)
            if session.closed:
                idle.append(key)
            elif (
                sent != seen.sent
                or mark != seen.mark
                or _connector_busy(session.connector)
                or (lean is not None and lean.busy())
            ):
                seen.at, seen.sent, seen.mark = now, sent, mark
            elif now - seen.at > self._idle_s:
                idle.append(key)
        for key in idle:
            del self._seen[key]
            session = self._sessions.pop(key)
            lean = _LEAN.pop(session, None)
            if lean is not None:
                lean.close()
            closing = _close_now(session)
            if closing is not None:
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        return len(idle)

    def _open(self, verify_tls: bool) -> aiohttp.ClientSession:
        tls: ssl.SSLContext | bool = (
            (self._ssl_context if self._ssl_context is not None else True) if verify_tls else False
        )
        connector = aiohttp.TCPConnector(
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
        if self._closing:  # idle ones still closing: done before the loop ends
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> TargetSessions:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

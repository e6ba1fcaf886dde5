"""Shared HTTP client sessions: one keep-alive connection pool per target and TLS mode.

Probing the same target every few seconds from a fresh session would pay a TCP
(and TLS) handshake per probe, which both slows the agent and inflates the
latency it reports. The daemon owns one `TargetSessions` and closes it on
shutdown; checks only borrow sessions from it through `CheckContext.session`.
"""

from __future__ import annotations

import ssl
import weakref
from types import TracebackType

import aiohttp
from yarl import URL

from checks.wire import LeanClient
from common.version import __version__

USER_AGENT = f"postflight/{__version__}"

_LEAN: weakref.WeakKeyDictionary[aiohttp.ClientSession, LeanClient] = weakref.WeakKeyDictionary()


def lean_client(session: aiohttp.ClientSession) -> LeanClient | None:
    """The lean client paired with `session` by `TargetSessions`, if any (`checks.wire`)."""
    return _LEAN.get(session)


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
    ) -> None:
        """`keepalive=False` opens a connection per request (what blackbox_exporter
        does; the probe benchmark compares like with like). `lean=False` sends every
        request through aiohttp, without the lean client (`checks.wire`)."""
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
        key = (str(url.origin()), verify_tls)
        session = self._sessions.get(key)
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
        return session

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
        for session in sessions:
            lean = _LEAN.pop(session, None)
            if lean is not None:
                lean.close()
            await session.close()

    async def __aenter__(self) -> TargetSessions:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

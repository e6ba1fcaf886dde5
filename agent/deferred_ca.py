"""aiohttp imported without reading the system's CA certificates, for the CLI's client
commands (`register`, `status`, `rollback`).

aiohttp builds its two default TLS contexts as `aiohttp.connector` is imported, each
reading the CA bundle (`ssl.SSLContext.set_default_verify_paths`): 75 ms of CPU in a
command of 380 ms, paid by every pipeline step, for an agent most often reached over
plain http. Here the import builds them without the bundle and `load_ca_certificates`
reads it into both before the first https request (an https `--url`, or a redirect to
one), so they are the contexts aiohttp would have built. The daemon imports aiohttp as
it is: its providers speak https, and reading the bundle later would block its loop.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable
from typing import Any

_deferred = False
"""aiohttp's default contexts were built here without the CA bundle, not yet read."""


def import_aiohttp_without_ca_certificates() -> None:
    """Import aiohttp with its default TLS contexts' CA bundle left unread; nothing when
    aiohttp is imported already (its contexts then hold the bundle)."""
    global _deferred
    if "aiohttp.connector" in sys.modules:
        return
    own = ssl.SSLContext.__dict__.get("set_default_verify_paths")  # None: _ssl's C method
    skip: Callable[[ssl.SSLContext], None] = lambda _context: None  # noqa: E731
    ssl.SSLContext.set_default_verify_paths = skip  # type: ignore[method-assign,assignment]
    try:
        import aiohttp.connector  # noqa: F401
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]
    _deferred = True


def load_ca_certificates() -> None:
    """Read the CA bundle into aiohttp's default contexts, as its import would have (their
    `create_default_context`'s `load_default_certs`, and the unverified one's own call)."""
    global _deferred
    if not _deferred:
        return
    from aiohttp import connector

    for context in (connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED):
        if context is not None:  # None: a Python without ssl
            context.set_default_verify_paths()
    _deferred = False


async def load_before_a_redirect(*_: Any) -> None:
    """An `on_request_redirect` hook: a redirect may lead to https."""
    load_ca_certificates()

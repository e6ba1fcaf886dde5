"""aiohttp imported without reading the system's CA certificates, for the CLI's client
commands (`register`, `status`, `rollback`) and the daemon's start (`run`).

aiohttp builds its two default TLS contexts as `aiohttp.connector` is imported, each
reading the CA bundle (`ssl.SSLContext.set_default_verify_paths`): 75 ms of CPU in a
command of 380 ms, paid by every pipeline step, for an agent most often reached over
plain http. Here the import builds them without the bundle and `load_ca_certificates`
reads it into both before the first https request (an https `--url`, or a redirect to
one), so they are the contexts aiohttp would have built. The daemon (`run`) reads it into
the verified one at once, before its loop runs (its providers and checks speak https, and
reading it later would block the loop), and never into the unverified one: that context
verifies nothing (`CERT_NONE`, a check's `verify_tls: false`), so its bundle went unread.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable
from typing import Any

_unread: set[str] = set()
"""aiohttp's default contexts built here without the CA bundle, not yet read: "verified",
"unverified"."""


def import_aiohttp_without_ca_certificates() -> None:
    """Import aiohttp with its default TLS contexts' CA bundle left unread; nothing when
    aiohttp is imported already (its contexts then hold the bundle)."""
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
    _unread.update(("verified", "unverified"))


def load_ca_certificates(*, unverified: bool = True) -> None:
    """Read the CA bundle into aiohttp's default contexts, as its import would have (the
    verified one's `create_default_context`'s `load_default_certs`, and the unverified
    one's own call); `unverified=False`: into the verified one only."""
    if not _unread:
        return
    from aiohttp import connector

    contexts = {
        "verified": connector._SSL_CONTEXT_VERIFIED,
        "unverified": connector._SSL_CONTEXT_UNVERIFIED,
    }
    for name in ("verified", "unverified") if unverified else ("verified",):
        context = contexts[name]
        if name in _unread and context is not None:  # None: a Python without ssl
            context.set_default_verify_paths()
        _unread.discard(name)


async def load_before_a_redirect(*_: Any) -> None:
    """An `on_request_redirect` hook: a redirect may lead to https."""
    load_ca_certificates()

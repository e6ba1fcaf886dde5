"""aiohttp imported without reading the system's CA certificates, for the CLI's client
commands (`register`, `status`, `rollback`) and the daemon's start (`run`).

aiohttp builds its two default TLS contexts as `aiohttp.connector` is imported, each
reading the CA bundle (`ssl.SSLContext.set_default_verify_paths`): 75 ms of CPU in a
command of 380 ms, paid by every pipeline step, for an agent most often reached over
plain http. Here the import builds them without the bundle and `load_ca_certificates`
reads it into both before the first https request (an https `--url`, or a redirect to
one), so they are the contexts aiohttp would have built. The daemon (`run`) whose
configuration names an https URL (a target, a provider, an integration's API) reads it
into the verified one at once, before its loop runs (reading it later would block the
loop in its first https request); one that names none reads it at its first TLS
handshake (`read_at_first_handshake`: a redirect to https, a target given at run time),
where it read it at every start. Never into the unverified one: that context verifies
nothing (`CERT_NONE`, a check's `verify_tls: false`), so its bundle went unread.
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


def read_at_first_handshake() -> None:
    """Read the CA bundle into aiohttp's verified context as it begins its first TLS
    handshake (asyncio's `wrap_bio`, whichever session, check or redirect it is for), once;
    nothing when it holds the bundle already."""
    if "verified" not in _unread:
        return
    from aiohttp import connector

    context = connector._SSL_CONTEXT_VERIFIED
    if context is None:  # a Python without ssl
        return
    wrap_bio = context.wrap_bio

    def reading_first(*args: Any, **kwargs: Any) -> ssl.SSLObject:
        vars(context).pop("wrap_bio", None)  # the class's own from now on
        load_ca_certificates(unverified=False)
        return wrap_bio(*args, **kwargs)

    context.wrap_bio = reading_first  # type: ignore[method-assign]


async def load_before_a_redirect(*_: Any) -> None:
    """An `on_request_redirect` hook: a redirect may lead to https."""
    load_ca_certificates()

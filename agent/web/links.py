"""Links to a deploy's page and the signed tokens they carry. Pure: no I/O, no clock
(callers pass `now`).

A `?view=` token is `v1.<expires>.<signature>`: an HMAC-SHA256 over the deploy id and
the expiry, so it opens that one deploy's page and event stream until it expires, and
nothing else. A session token (the login cookie) is the same construction over
`session`, so no API token is ever stored in a browser.

The signing key is derived, not stored: from `server.view_secret` when set, else from
the first of `server.api_tokens` (of `server.named_tokens` when they alone are given).
Derived because every replica reads the same configuration, so a link signed by one
opens on another with no shared state (a key generated and kept in the store would need
a schema change in both stores and a read before every check); and rotating that secret
revokes every link at once. The derivation is itself an HMAC under a fixed label, so the
key reveals nothing of the token it came from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from urllib.parse import quote

from agent.settings import ServerSettings

_LABEL = b"postflight deploy page links v1"
_VERSION = "v1"
_EXPIRES = re.compile(r"[0-9]{1,12}")


def signing_key(server: ServerSettings) -> bytes:
    secret = server.view_secret or server.accepted_tokens()[0]
    return hmac.new(_LABEL, secret.get_secret_value().encode(), hashlib.sha256).digest()


def _signature(key: bytes, subject: str, expires: int) -> str:
    mac = hmac.new(key, f"{subject}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def sign(key: bytes, subject: str, expires: float) -> str:
    """A token for `subject` (a deploy id, or `session`) valid until `expires`, rounded up
    to the whole second the token carries: rounded down, a `view_ttl` under 1s gave a
    link dead as it was made, and every link opened for up to 1s less than its ttl."""
    at = math.ceil(expires)
    return f"{_VERSION}.{at}.{_signature(key, subject, at)}"


def verify(key: bytes, token: str, subject: str, now: float) -> bool:
    """True if `token` was signed for `subject` and has not expired. Tampered, expired,
    malformed or for another subject: False (compared in constant time)."""
    version, _, rest = token.partition(".")
    expires_text, _, signature = rest.partition(".")
    # ASCII digits, as signed: `str.isdigit` also takes `²` (which `int` refuses) and
    # `١٢` (which `int` reads: a second spelling of one token)
    if version != _VERSION or not _EXPIRES.fullmatch(expires_text):
        return False
    expires = int(expires_text)
    # surrogateescape: a header's bytes that are no UTF-8 (aiohttp reads them to
    # surrogates) are a wrong signature, not an encoding error (a 500)
    given = signature.encode("utf-8", "surrogateescape")
    good = hmac.compare_digest(given, _signature(key, subject, expires).encode())
    return good and now < expires


_AS_SIGNED = re.compile(rf"({_VERSION}\.[0-9]{{1,12}}\.[A-Za-z0-9_-]{{43}})[^A-Za-z0-9_-]*")
"""A token whose signature (32 bytes, base64url) is whole, and what a reader took along
after it: no part of it."""


def as_signed(token: str) -> str:
    """`token` without what follows a whole signature: an alert writes its link as a
    markdown autolink, `<https://…?view=…>`, and a reader (a mail's text part, a script
    taking the URL up to the next space) kept the `>`, or a sentence's `.` or `)`."""
    whole = _AS_SIGNED.fullmatch(token)
    return whole.group(1) if whole else token


def expiry(token: str) -> float:
    """When a token `verify` accepted stops being accepted."""
    return float(token.split(".")[1])


def deploy_page_url(
    server: ServerSettings, deploy_id: str, *, now: float, view: bool = True
) -> str | None:
    """The page of one deploy with a read-only view token valid for `server.view_ttl`:
    what alerts, `register --wait` and the deploy object link to. `view=False`: the bare
    page, whose reader signs in, for a link others see (a commit status or a gate's
    comment is public on a public repository). None when the pages are off
    (`server.ui: false`)."""
    if not server.ui:
        return None
    page = f"{server.base_url}/deploys/{quote(deploy_id)}"
    if not view:
        return page
    return f"{page}?view={sign(signing_key(server), deploy_id, now + server.view_ttl)}"

"""Who may see a deploy page or its event stream (contract §8). No I/O.

Three ways in: an API token as `Authorization: Bearer`, the session cookie the login
form sets from one, or `?view=`, a signed, expiring token for one deploy (also taken as
the bearer). A view token opens only the deploy it was signed for: the list, another
deploy, or the API get 403, as do expired and tampered tokens, unless a bearer token or
session sent beside it admits the request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Literal

from aiohttp import web

from agent.api.auth import bearer_token, token_matches
from agent.settings import ServerSettings
from agent.web.links import as_signed, expiry, signing_key, verify

SESSION_COOKIE = "postflight_session"
SESSION_SUBJECT = "session"
SESSION_TTL_S = 12 * 3600.0


def session_subject(key: bytes, token: str) -> str:
    """What a session made from API token `token` is signed for: a keyed digest of the
    token (never the token), so that it ends when that token is no longer accepted (one
    taken out of the configuration after a leak); every session was signed alike and
    opened the pages for its 12 hours."""
    digest = hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{SESSION_SUBJECT}:{digest}"


def session_admits(key: bytes, session: str, server: ServerSettings, now: float) -> bool:
    """Whether `session` was made from a token accepted now, and has not expired."""
    return any(
        verify(key, session, session_subject(key, token.get_secret_value()), now)
        for token in server.accepted_tokens()
    )


def signed_in(request: web.Request, server: ServerSettings, now: float) -> bool:
    """Whether the request carries a session that admits it: a page then offers to sign
    out (a view token or a bearer token has nothing to sign out of)."""
    session = request.cookies.get(SESSION_COOKIE)
    return session is not None and session_admits(signing_key(server), session, server, now)


Access = Literal["ok", "unauthenticated", "forbidden"]


def access(
    request: web.Request, server: ServerSettings, deploy_id: str | None, now: float
) -> Access:
    """`ok`, `unauthenticated` (401: show the login form) or `forbidden` (403)."""
    return admitted(request, server, deploy_id, now)[0]


def admitted(
    request: web.Request, server: ServerSettings, deploy_id: str | None, now: float
) -> tuple[Access, float]:
    """`access`, and until when the credentials that let the request in hold: a view
    token's or a session's expiry, never for an API token (a live stream ends then rather
    than outlive them).

    A view token that does not open this deploy (expired, altered, another deploy's) is a
    403 only when nothing else sent admits the request: a signed-in engineer opening an
    old alert's link sees the page, as the 403's advice to sign in promises."""
    key = signing_key(server)
    view = request.query.get("view")
    view = None if view is None else as_signed(view)
    view_ok = view is not None and deploy_id is not None and verify(key, view, deploy_id, now)
    refused: Access = "forbidden" if view is not None else "unauthenticated"
    token = bearer_token(request)
    if token is not None:
        if token_matches(token, server.accepted_tokens()):
            return "ok", math.inf
        if deploy_id is not None and verify(key, token, deploy_id, now):
            # this deploy's view token sent as the bearer, as a client sends a token, out
            # of the URL (and of proxies' logs): what it opens in the query, no more
            return "ok", expiry(token)
        return ("ok", expiry(view)) if view_ok and view is not None else (refused, now)
    held = [expiry(view)] if view_ok and view is not None else []
    session = request.cookies.get(SESSION_COOKIE)
    if session is not None and session_admits(key, session, server, now):
        held.append(expiry(session))
    return ("ok", max(held)) if held else (refused, now)


def view_admits(server: ServerSettings, view: str | None, deploy_id: str, now: float) -> bool:
    """Whether `?view=` itself opens `deploy_id` (a page passes it on to its stream only
    then: a dead token beside a session would end the stream at once)."""
    return view is not None and verify(signing_key(server), as_signed(view), deploy_id, now)

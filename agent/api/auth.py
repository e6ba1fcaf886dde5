"""Bearer-token authentication for `/v1/…` (contract §2). No I/O.

Tokens are compared in constant time: each candidate is hashed to a fixed length
first (so `compare_digest` cannot leak the token's length) and every configured
token is compared, match or not (so timing cannot tell which one was close).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web
from pydantic import SecretStr

from agent.api.problems import ApiProblem

PUBLIC_V1_PATHS = frozenset(
    {
        "/v1/openapi.json",
        "/v1/hooks/github",
        "/v1/hooks/vercel",
        "/v1/hooks/github/",
        "/v1/hooks/vercel/",
    }
)
"""The hooks authenticate with the provider's signature instead (contract §7); a hook
URL typed with a trailing slash is the same hook."""
SELF_AUTHENTICATED_PATHS = frozenset({"/v1/deploys/{id}/events"})
"""Routes that check access themselves (a bearer token, or a deploy's view token)."""
CHALLENGE = {"WWW-Authenticate": "Bearer"}
SEVERAL_AUTHORIZATIONS = "send one Authorization header: this request has several"
"""A 401's detail: the API's and the event stream's (`agent.web.events`) alike."""
TOKEN_NOT_ACCEPTED = "the bearer token is not accepted"
"""A 401's detail: the API's and the event stream's (`agent.web.events`) alike."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def token_matches(presented: str, accepted: Iterable[SecretStr]) -> bool:
    """True if `presented` is one of `accepted`; time does not depend on which, or how
    much of it, matched."""
    given = _digest(presented)
    found = False
    for token in accepted:
        found |= hmac.compare_digest(given, _digest(token.get_secret_value()))
    return found


def token_name(presented: str, named: Iterable[tuple[str, SecretStr]]) -> str | None:
    """The name of the token `presented` is (constant time, as `token_matches`)."""
    given = _digest(presented)
    found: str | None = None
    for name, token in named:
        if hmac.compare_digest(given, _digest(token.get_secret_value())) and found is None:
            found = name
    return found


def authorizations(request: web.Request) -> list[str]:
    return request.headers.getall("Authorization", [])


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when absent, another scheme,
    or given twice: Authorization is one value (RFC 9110 §11.6.2), and with two the first
    was read, so whether a second (a proxy's) came before or after decided access."""
    given = authorizations(request)
    if len(given) != 1:
        return None
    header = given[0]
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def needs_auth(request: web.Request) -> bool:
    """Every `/v1/…` route except the OpenAPI document.

    Decided on the matched route as well as the raw path, so that no spelling of a
    path can reach a protected handler without a token.
    """
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    if canonical in PUBLIC_V1_PATHS or canonical in SELF_AUTHENTICATED_PATHS:
        return False
    if resource is None and request.path.rstrip("/") in PUBLIC_V1_PATHS:
        return False  # `/v1/openapi.json/`: no route, so a 404 naming the one meant
    return canonical.startswith("/v1") or request.path.startswith("/v1")


async def wrong_method_on_a_public_route(request: web.Request) -> bool:
    """The request's path is a route that needs no token (`PUBLIC_V1_PATHS`: the hooks,
    whose signature is checked by their handler, and the OpenAPI document), and its
    method is not one the route takes. Its 405 needs no token either: asking for a
    bearer token the route never takes (a 401 with `WWW-Authenticate: Bearer`) told a
    provider's misconfigured webhook the wrong thing. A 405 reaches no handler. Decided
    by the router's own matching (`resolve`), as `needs_auth` decides on the matched
    route."""
    error = getattr(request.match_info, "http_exception", None)
    if error is None or error.status != 405:
        return False
    for resource in request.app.router.resources():
        if resource.canonical in PUBLIC_V1_PATHS:
            matched, allowed = await resource.resolve(request)
            if matched is None and allowed:
                return True
    return False


def require_token(request: web.Request, accepted: Iterable[SecretStr]) -> None:
    token = bearer_token(request)
    if len(authorizations(request)) > 1:
        raise ApiProblem(401, SEVERAL_AUTHORIZATIONS, headers=CHALLENGE)
    if token is None:
        raise ApiProblem(
            401,
            "this route needs `Authorization: Bearer <token>` (one of server.api_tokens or"
            " server.named_tokens)",
            headers=CHALLENGE,
        )
    if not token_matches(token, accepted):
        raise ApiProblem(401, TOKEN_NOT_ACCEPTED, headers=CHALLENGE)

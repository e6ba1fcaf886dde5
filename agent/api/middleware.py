"""The API's middlewares: problem+json for every error, bearer auth, request counting.

The error middleware is the outermost: it turns `ApiProblem` and aiohttp's own
HTTP errors into problem+json, a store that does not answer into a 503 to retry
(as `/readyz` says it), and anything unexpected into a 500 problem with a redacted
log line. The tests show garbled input never reaches that last
branch; it exists so that a bug answers a clean 500 instead of a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.api.auth import needs_auth, require_token, wrong_method_on_a_public_route
from agent.api.problems import ApiProblem, from_http_exception
from agent.appkeys import METRICS, REDACT, SETTINGS
from agent.store.base import Conflict, StoreError

log = logging.getLogger("postflight.api")

STORE_RETRY_AFTER_S = 1
"""What a client is told to wait when the store does not answer: a restarting
PostgreSQL or a dropped connection is back in seconds, and `register --wait` polls
about that often anyway."""


def _count(request: web.Request, status: int) -> None:
    metrics = request.config_dict.get(METRICS)
    if metrics is not None:
        metrics.api_requests_total.labels(f"{status // 100}xx").inc()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiProblem as problem:
        response = problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            _count(request, exc.status)
            raise
        response = from_http_exception(exc)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Conflict as exc:  # a StoreError, but a handler that let it out has a bug
        response = _unexpected(request, exc)
    except StoreError as exc:
        # the agent is briefly unavailable, not broken: a 503 clients retry
        # (`register --wait` rides it out), where a 500 ended a pipeline's wait
        log.warning(
            "store unavailable serving %s %s: %s",
            request.method,
            request.rel_url.path,
            _redacted(request, str(exc)),
        )
        response = ApiProblem(
            503,
            "the store does not answer; retry shortly",
            slug="store-unavailable",
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        ).response()
    except Exception as exc:
        response = _unexpected(request, exc)
    _count(request, response.status)
    return response


def _redacted(request: web.Request, text: str) -> str:
    redact = request.config_dict.get(REDACT)
    return redact(text) if redact is not None else text


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    """A bug: a clean 500 problem, and the traceback logged with secrets redacted."""
    trace = "".join(traceback.format_exception(exc)).rstrip()
    log.error(
        "unexpected error serving %s %s\n%s",
        request.method,
        request.rel_url.path,
        _redacted(request, trace),
    )
    return ApiProblem(
        500, "an unexpected error occurred; it has been logged", slug="internal-error"
    ).response()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if needs_auth(request) and not await wrong_method_on_a_public_route(request):
        settings = request.config_dict.get(SETTINGS)
        tokens = settings.server.accepted_tokens() if settings is not None else []
        require_token(request, tokens)
    return await handler(request)

"""The API's middlewares: problem+json for every error, bearer auth, request counting.

The error middleware is the outermost: it turns `ApiProblem` and aiohttp's own
HTTP errors into problem+json, and anything unexpected into a 500 problem with
a redacted log line. The tests show garbled input never reaches that last
branch; it exists so that a bug answers a clean 500 instead of a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import traceback

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.api.auth import needs_auth, require_token
from agent.api.problems import ApiProblem, from_http_exception
from agent.appkeys import METRICS, REDACT, SETTINGS

log = logging.getLogger("postflight.api")


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
    except Exception as exc:
        redact = request.config_dict.get(REDACT)
        trace = "".join(traceback.format_exception(exc)).rstrip()
        log.error(
            "unexpected error serving %s %s\n%s",
            request.method,
            request.rel_url.path,
            redact(trace) if redact is not None else trace,
        )
        response = ApiProblem(
            500, "an unexpected error occurred; it has been logged", slug="internal-error"
        ).response()
    _count(request, response.status)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if needs_auth(request):
        settings = request.config_dict.get(SETTINGS)
        tokens = [t for _, t in settings.server.token_names()] if settings is not None else []
        require_token(request, tokens)
    return await handler(request)

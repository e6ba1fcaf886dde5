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
import math
import time
import traceback
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.api.auth import (
    authorizations,
    needs_auth,
    require_token,
    wrong_method_on_a_public_route,
)
from agent.api.problems import ApiProblem, from_http_exception
from agent.appkeys import BROWSER_PAGE, METRICS, REDACT, SETTINGS, UNAVAILABLE_PAGE
from agent.store.base import Conflict, StoreBusy, StoreError

log = logging.getLogger("postflight.api")

STORE_HEADER = "Postflight-Store"
"""On a 503 of the store: `busy` (it refused one transaction for now, `StoreBusy`) or
`unavailable` (it does not answer), for a client to word its retry (the deploy page's)."""


def store_said(busy: bool) -> str:
    """`STORE_HEADER`'s value: the API's problem and the page's 503 say it alike."""
    return "busy" if busy else "unavailable"


STORE_RETRY_AFTER_S = 1
"""What a client is told to wait when the store does not answer: a restarting
PostgreSQL or a dropped connection is back in seconds, and `register --wait` polls
about that often anyway."""

REFUSALS_SAID_EVERY_S = 60.0
"""At most one log line this often for the requests answered 503 (`StoreRefusals`)."""


class StoreRefusals:
    """The log of requests answered 503 because the store did not answer: one WARNING,
    then at most one a minute, which counts those in between. Each such request logged a
    line of its own: a PostgreSQL restart of 3 s under one polling client and a pipeline's
    `register --wait` made 25 (a live audit), the background loops' one line each lost
    among them; `postflight_api_requests_total{result="5xx"}` still counts every one.
    A request the store answered (`answered`) ends the outage, said in one INFO line: the
    next refusal is another outage and said at once, where one within a minute of the
    last line was silent."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._said_at = -math.inf
        self._untold = 0
        self._down = False

    def refused(self, request: web.Request, error: str) -> None:
        now = self._clock()
        if self._down and now - self._said_at < REFUSALS_SAID_EVERY_S:
            self._untold += 1
            return
        log.warning(
            "store unavailable serving %s %s: %s%s%s",
            request.method,
            request.rel_url.path,
            error,
            "" if self._down else "; answering 503 until it does (said at most once a minute)",
            self._since_the_last_line(),
        )
        self._said_at, self._untold, self._down = now, 0, True

    def answered(self) -> None:
        """The store answered a request: an outage said is over."""
        if self._down:
            self._down = False
            log.info("the store answers API requests again%s", self._since_the_last_line())
            self._untold = 0

    def _since_the_last_line(self) -> str:
        if not self._untold:
            return ""
        return f" ({self._untold} more requests answered 503 since the last such line)"


STORE_REFUSALS = web.AppKey("store_refusals", StoreRefusals)
STORE_ANSWERS_PATH = "/v1/deploys"
"""A 2xx answer under it was read from the store, or written to it: the store answers
(a hook may answer 2xx without it: an event it ignores)."""


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
        response = from_http_exception(exc, meant=await _meant_without_the_slash(request, exc))
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except Conflict as exc:  # a StoreError, but a handler that let it out has a bug
        response = _unexpected(request, exc)
    except StoreBusy as exc:  # one transaction refused, the store up: retried as an outage
        log.warning(
            "store busy serving %s %s: %s; answered 503, to retry",
            request.method,
            request.rel_url.path,
            _redacted(request, str(exc)),
        )
        response = store_unavailable(request, "the store is busy; retry shortly", busy=True)
    except StoreError as exc:
        # the agent is briefly unavailable, not broken: a 503 clients retry
        # (`register --wait` rides it out), where a 500 ended a pipeline's wait
        refusals = request.config_dict.get(STORE_REFUSALS) or StoreRefusals()
        refusals.refused(request, _redacted(request, str(exc)))
        metrics = request.config_dict.get(METRICS)
        if metrics is not None:  # up again at the watcher's next claim that goes through
            metrics.store_up.set(0)
        response = store_unavailable(request, "the store does not answer; retry shortly")
    except Exception as exc:
        response = _unexpected(request, exc)
    if 200 <= response.status < 300 and request.path.startswith(STORE_ANSWERS_PATH):
        outage = request.config_dict.get(STORE_REFUSALS)
        if outage is not None:
            outage.answered()
    _count(request, response.status)
    return response


async def _meant_without_the_slash(request: web.Request, exc: web.HTTPException) -> str | None:
    """The route a 404's path names once its trailing slashes are gone (`/v1/deploys/`, as
    a pipeline writes `$URL/v1/deploys/`), whatever methods it takes; None for any other
    404. The router's own matching decides, as it does for the request."""
    path = request.rel_url.path
    if exc.status != 404 or not path.endswith("/") or not path.strip("/"):
        return None
    bare = path.rstrip("/")
    match = await request.app.router.resolve(request.clone(rel_url=bare))
    error = match.http_exception
    return bare if error is None or error.status == 405 else None


def store_unavailable(request: web.Request, detail: str, *, busy: bool = False) -> web.Response:
    """The 503 to retry when the store does not answer, or is `busy` (`StoreBusy`):
    problem+json, with `Retry-After`; a deploy page's path gets a page (`UNAVAILABLE_PAGE`)
    saying which, not JSON in a browser tab."""
    page = request.config_dict.get(UNAVAILABLE_PAGE)
    shown = page(request, STORE_RETRY_AFTER_S, busy=busy) if page is not None else None
    if shown is not None:
        return shown
    return ApiProblem(
        503,
        detail,
        slug="store-unavailable",
        headers={
            "Retry-After": str(STORE_RETRY_AFTER_S),
            STORE_HEADER: store_said(busy),
        },
    ).response()


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
        _to_the_page(request)
        settings = request.config_dict.get(SETTINGS)
        tokens = settings.server.accepted_tokens() if settings is not None else []
        require_token(request, tokens)
    return await handler(request)


def _to_the_page(request: web.Request) -> None:
    """A browser sent to an API route without a token (a GitHub deployment status's
    `log_url` is the deploy object, opened from GitHub's page) is redirected (303) to the
    page that shows it and offers sign-in, where it got a 401 JSON with no way in. An API
    client (no `Accept`, `*/*`, JSON) or any request with an `Authorization` gets the
    API's answer as before; so does every request when the pages are off."""
    page = request.config_dict.get(BROWSER_PAGE)
    if page is None or request.method not in ("GET", "HEAD") or authorizations(request):
        return
    location = page(request)
    if location is not None:
        raise web.HTTPSeeOther(location=location)

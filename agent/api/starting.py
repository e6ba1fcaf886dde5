"""What the listener answers while `postflight run` waits for a store that does not answer
at start (`agent.app.open_when_it_answers`).

The agent's own application starts only once its store answers; until then the socket
refused connections, so a Kubernetes liveness probe killed a process that was alive and
waiting as it should, and /metrics could not be scraped. This small application answers
meanwhile: `/healthz` 200 (the process runs), `/readyz` 503 in its usual shape (the store
check false), `/metrics`, the OpenAPI document, and every other request a 503 problem with
`Retry-After`, as during a store outage (`postflight register --wait` rides it out). An API
request without an accepted bearer token is a 401 first, as it is once the store answers: a
pipeline with a wrong token is told so now, not asked to retry until its timeout. Each
answer closes its connection, so a client's next request reaches the agent's application
once it has taken the socket over (`agent.api.listener`).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.api import routes
from agent.api.auth import PUBLIC_V1_PATHS, require_token
from agent.api.middleware import error_middleware, store_unavailable
from agent.api.problems import ApiProblem
from agent.api.server_log import hide_server_version
from agent.appkeys import METRICS
from agent.metrics import Metrics
from agent.settings import ServerSettings

NOT_YET = "the agent is starting and its store is not reachable yet; retry shortly"


def starting_app(metrics: Metrics, server: ServerSettings) -> web.Application:
    """The answers while the store is awaited; `metrics` is the agent's own registry,
    `server` its settings (the accepted tokens)."""
    app = web.Application()
    app[METRICS] = metrics
    app.middlewares.append(_one_request_per_connection)
    app.middlewares.append(error_middleware)  # problem+json, and counted as the API's
    app.middlewares.append(_token_first(server))
    hide_server_version(app)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", _not_ready)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/v1/openapi.json", routes.openapi_json)
    app.router.add_route("*", "/{path:.*}", _store_not_yet)
    return app


@web.middleware
async def _one_request_per_connection(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A kept-alive connection stays with the server that accepted it: each answer says
    `Connection: close`, so that a client's next request finds the agent's application
    once it serves."""
    response = await handler(request)  # the error middleware's answer, errors included
    response.force_close()
    return response


def _token_first(server: ServerSettings) -> Middleware:
    """`/v1/…` needs an accepted bearer token, as `agent.api.middleware.auth_middleware`
    asks it of the agent's routes, which are not mounted yet (every path here meets one
    catch-all route, so that middleware's test of the matched route does not apply). Not
    the hooks (their handler checks the provider's signature) nor a deploy's event stream
    (which also takes a view token or a page's session, `agent.web.access`): those are
    answered once the store is."""

    @web.middleware
    async def token_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/v1/") and path not in PUBLIC_V1_PATHS and not path.endswith("/events"):
            require_token(request, server.accepted_tokens())
        return await handler(request)

    return token_first


async def _not_ready(request: web.Request) -> web.Response:
    """/readyz's 503 as the agent's application words a store that does not answer; nothing
    is watched yet either (its loops start with it)."""
    raise ApiProblem(
        503,
        "not ready: waiting for the store to answer at start (see the log); "
        "nothing is watched until it does",
        slug="not-ready",
        extra={"checks": {"config": True, "store": False, "watching": False}},
    )


async def _store_not_yet(request: web.Request) -> web.Response:
    return store_unavailable(request, NOT_YET)

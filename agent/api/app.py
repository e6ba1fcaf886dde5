"""Mounting API v1 on an aiohttp application (contract §2).

`add_routes(app)` adds the routes and middlewares to an application the daemon
builds (it sets `SETTINGS`, `STORE`, `METRICS`, `REDACT`, `WINDOW_EVENTS`);
`create_api_app(...)` builds a stand-alone one (tests, embedding). Neither starts
anything: the store's lifecycle belongs to whoever owns the application.
"""

from __future__ import annotations

from aiohttp import web

from agent.api import hooks, routes
from agent.api.middleware import (
    STORE_REFUSALS,
    StoreRefusals,
    auth_middleware,
    error_middleware,
)
from agent.api.models import MAX_BODY_BYTES
from agent.api.server_log import hide_server_version
from agent.appkeys import METRICS, REDACT, SETTINGS, STORE, WINDOW_EVENTS, WindowEvents
from agent.metrics import Metrics
from agent.settings import Settings
from agent.store.base import Store
from common.redaction import Redactor

_MOUNTED = web.AppKey("api_mounted", bool)


def add_routes(app: web.Application) -> None:
    """Add every route of API v1 and its middlewares to `app` (before it starts).

    The error middleware goes first so that it wraps everything after it, auth
    included. Calling this twice is harmless.
    """
    if app.get(_MOUNTED):
        return
    app[_MOUNTED] = True
    app[STORE_REFUSALS] = StoreRefusals()
    app.middlewares.append(error_middleware)
    app.middlewares.append(auth_middleware)
    hide_server_version(app)
    r = app.router
    r.add_post("/v1/deploys", routes.create_deploy, name="create_deploy")
    r.add_get("/v1/deploys", routes.list_deploys, name="list_deploys")
    r.add_get("/v1/deploys/{id}", routes.get_deploy, name="get_deploy")
    r.add_post("/v1/deploys/{id}/cancel", routes.cancel_deploy, name="cancel_deploy")
    r.add_post("/v1/deploys/{id}/rollback", hooks.rollback_deploy, name="rollback_deploy")
    r.add_post("/v1/hooks/github", hooks.github_hook, name="github_hook")
    r.add_post("/v1/hooks/vercel", hooks.vercel_hook, name="vercel_hook")
    # a hook URL pasted with a trailing slash is served too: the provider follows no
    # redirect and its delivery log showed a 401 "needs Bearer", read as a signature
    # problem; the signature checked by the handler is what authenticates either way
    r.add_post("/v1/hooks/github/", hooks.github_hook, name="github_hook_slash")
    r.add_post("/v1/hooks/vercel/", hooks.vercel_hook, name="vercel_hook_slash")
    r.add_get("/v1/openapi.json", routes.openapi_json, name="openapi")
    r.add_get("/healthz", routes.healthz, name="healthz")
    r.add_get("/readyz", routes.readyz, name="readyz")
    r.add_get("/metrics", routes.metrics, name="metrics")


def create_api_app(
    settings: Settings,
    store: Store,
    metrics: Metrics | None = None,
    window_events: WindowEvents | None = None,
    redact: Redactor | None = None,
) -> web.Application:
    """A stand-alone application serving API v1; the caller opens and closes `store`."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[STORE] = store
    app[METRICS] = metrics or Metrics()
    app[REDACT] = redact or Redactor(settings.secret_values())
    if window_events is not None:
        app[WINDOW_EVENTS] = window_events
    add_routes(app)
    return app

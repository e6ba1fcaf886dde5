"""Mounting the deploy pages and the live event stream on the agent's application
(contract §8), beside API v1 (`agent.api.add_routes`, which knows nothing of them)."""

from __future__ import annotations

from aiohttp import web

from agent.appkeys import BROWSER_PAGE, PAGE_LINK, SETTINGS, UNAVAILABLE_PAGE
from agent.web import assets
from agent.web.built_views import BUILT_VIEWS, BuiltViews
from agent.web.events import deploy_events
from agent.web.feed import FEED
from agent.web.links import deploy_page_url
from agent.web.pages import (
    asset,
    deploy_list,
    deploy_page,
    home,
    login,
    login_form,
    logout,
    logout_form,
    page_for_browser,
    unavailable_page,
    without_slash,
)

PAGE_PATHS = frozenset(
    {
        "/",
        "/deploys",
        "/deploys/",
        "/deploys/static/{name}",
        "/deploys/{id}",
        "/deploys/{id}/",
        "/login",
        "/logout",
    }
)
"""The HTML side (not API v1, so not in the OpenAPI document)."""


def mount(app: web.Application) -> None:
    """Add the pages, the event stream and the deploy object's page link to `app`
    (before it starts; it must have `SETTINGS` and `STORE`)."""

    def page_link(deploy_id: str, now: float) -> str | None:
        return deploy_page_url(app[SETTINGS].server, deploy_id, now=now)

    async def end_streams(app: web.Application) -> None:
        # on_shutdown runs before the server waits on open requests: a live event
        # stream ends at once instead of holding the stop for its shutdown timeout
        feed = app.get(FEED)
        if feed is not None:
            feed.close()

    assets.packaged()  # the files' digests, once, before the first page links them
    app[PAGE_LINK] = page_link
    app[BUILT_VIEWS] = BuiltViews()
    app[UNAVAILABLE_PAGE] = unavailable_page(app[SETTINGS].server)
    app[BROWSER_PAGE] = page_for_browser(app[SETTINGS].server)
    app.on_shutdown.append(end_streams)
    r = app.router
    r.add_route("*", "/", home, name="home")  # any other method: its 404, never a 405
    r.add_get("/deploys", deploy_list, name="deploy_list_page")
    r.add_get("/deploys/static/{name}", asset, name="page_asset")
    r.add_get("/deploys/{id}", deploy_page, name="deploy_page")
    r.add_get("/deploys/", without_slash, name="deploy_list_page_slash")
    r.add_get("/deploys/{id}/", without_slash, name="deploy_page_slash")
    r.add_get("/login", login_form, name="login_form")
    r.add_post("/login", login, name="login")
    r.add_get("/logout", logout_form, name="logout_form")
    r.add_post("/logout", logout, name="logout")
    r.add_get("/v1/deploys/{id}/events", deploy_events, name="deploy_events")

"""Typed application state shared by the API and the daemon's components."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from agent.metrics import Metrics
from agent.settings import EnvironmentSettings, Settings
from agent.store.base import Store
from common.redaction import Redactor


class WindowEvents(Protocol):
    """What the API tells the watcher, so it does not wait for its next poll."""

    def window_opened(self, window_id: str) -> None: ...

    def window_ended(self, window_id: str) -> None:
        """Cancelled or superseded: stop watching it now, fire nothing more."""
        ...


class PageLink(Protocol):
    """The deploy's page with a view token (`agent.web` mounts one), for the deploy
    object's `links.page`; None when the pages are off."""

    def __call__(self, deploy_id: str, now: float) -> str | None: ...


class UnavailablePage(Protocol):
    """The page a browser gets while the store does not answer, or is `busy` (it refused
    one transaction for now: `StoreBusy`) (`agent.web` mounts one): an HTML 503 for a
    deploy page's path, None for any other path (which gets the API's problem+json)."""

    def __call__(
        self, request: web.Request, retry_after_s: int, *, busy: bool = False
    ) -> web.Response | None: ...


class BrowserPage(Protocol):
    """Where a browser that asked an API route for a page and sent no token goes instead
    of the API's 401 (`agent.web` mounts one): the path of the page showing the same
    thing, which offers sign-in; None for any other request."""

    def __call__(self, request: web.Request) -> str | None: ...


class Foresight(Protocol):
    """Warnings for a deploy being registered (`agent.windows.foresight`: rules whose
    bounds are below what they can detect at the baseline's traffic)."""

    async def __call__(
        self,
        store: Store,
        env: EnvironmentSettings,
        environment: str,
        deployed_at: float,
        ends_at: float,
        *,
        now: float | None = None,
    ) -> list[str]: ...


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
REDACT = web.AppKey("redact", Redactor)
WINDOW_EVENTS = web.AppKey("window_events", WindowEvents)
PAGE_LINK = web.AppKey("page_link", PageLink)
UNAVAILABLE_PAGE = web.AppKey("unavailable_page", UnavailablePage)
BROWSER_PAGE = web.AppKey("browser_page", BrowserPage)
FORESIGHT = web.AppKey("foresight", Foresight)
LOOPS = web.AppKey("loops", dict[str, "asyncio.Task[Any]"])
"""The daemon's background loops by name (the watcher's, the integrations', the alert
recovery's): none ends but at a stop, so /readyz fails if one has."""

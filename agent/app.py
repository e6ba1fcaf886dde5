"""Wiring: one aiohttp application that serves the API and owns the daemon's work.

Style model: aiohttp's own lifecycle. The store, its retention, the watcher (with
background probing), the rollback delivery, the target sessions and each provider have
their own `cleanup_ctx` context, so `postflight run` needs no other start-up code and
shuts down in a known order (stop taking work, let in-flight deliveries finish
within a bound, close), and one resource failing to close skips none of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from agent import __version__
from agent.api import add_routes
from agent.api.hooks import INTEGRATIONS
from agent.api.server_log import ServerLog
from agent.appkeys import FORESIGHT, METRICS, REDACT, SETTINGS, STORE, WINDOW_EVENTS
from agent.integrations.targets import RollbackTargets
from agent.metrics import Metrics
from agent.observability import init_sentry
from agent.providers.registry import build_providers
from agent.retention import StorePruner
from agent.rollback.delivery import RollbackDelivery
from agent.settings import Settings
from agent.store import store_from_url
from agent.store.base import Store
from agent.web import routes as web_routes
from agent.web.feed import FEED, DeployFeed, feed_store
from agent.web.links import deploy_page_url
from agent.web.pg_news import PgNews
from agent.windows.alert_once import ALERT_RETRY_DELAYS_S, WindowAlerts
from agent.windows.foresight import registration_warnings
from agent.windows.heap import daemon_heap
from agent.windows.integrations import Integrations
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor

log = logging.getLogger("postflight")

WATCHER = web.AppKey("watcher", Watcher)


def replica_id() -> str:
    """Who holds a window's lease. Stable across restarts on one host, so a restarted
    agent resumes its windows at once; set POSTFLIGHT_REPLICA_ID for several replicas
    on one host."""
    return os.environ.get("POSTFLIGHT_REPLICA_ID") or socket.gethostname()


def build_app(
    settings: Settings,
    *,
    store: Store | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
    poll_interval: float = 1.0,
    background_probing: bool = True,
    owner: str | None = None,
    environ: dict[str, str] | None = None,
    alert_retry_delays: Sequence[float] = ALERT_RETRY_DELAYS_S,
) -> web.Application:
    """The agent as an aiohttp application; `owner` names this replica in window leases
    (default: `replica_id()`); `environ` is where `SENTRY_DSN` is read (default: the
    process's; the demo gives none, so nothing leaves the machine); `alert_retry_delays`:
    the backoff of a channel that failed an alert (tests shorten it)."""
    redact = Redactor(settings.secret_values())
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    feed = DeployFeed()
    app[FEED] = feed
    app[STORE] = feed_store(store or store_from_url(settings.store.url), feed)
    app[METRICS] = metrics or Metrics()
    app[METRICS].expect(
        settings.environments,
        {r.source for env in settings.environments.values() for r in env.rules} - {"checks"},
    )
    app[REDACT] = redact
    add_routes(app)
    web_routes.mount(app)

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        init_sentry(redact, environ)
        await app[STORE].open()
        yield
        await app[STORE].close()

    sessions = TargetSessions()
    notifier = Notifier(
        settings.alerting.channels,
        timeout=settings.alerting.timeout,
        redact=redact,
        metrics=app[METRICS],
    )
    owner = owner or replica_id()
    delivery = RollbackDelivery(
        app[STORE],
        app[METRICS],
        user_agent=f"postflight/{__version__}",
        clock=clock,
        owner=owner,
        lease_s=settings.store.lease,
        targets=RollbackTargets(settings),
    )
    providers = build_providers(settings.providers, app[METRICS], redact)
    alerts = WindowAlerts(
        app[STORE],
        notifier,
        link=lambda window: deploy_page_url(settings.server, window.id, now=clock()),
        retry_delays=alert_retry_delays,
    )
    watcher = Watcher(
        settings,
        app[STORE],
        app[METRICS],
        alerts=alerts,
        delivery=delivery,
        providers=providers,
        sessions=sessions,
        owner=owner,
        secrets=settings.secret_values(),
        clock=clock,
        poll_interval=poll_interval,
        background_probing=background_probing,
    )
    app[WATCHER] = watcher
    app[WINDOW_EVENTS] = watcher
    app[FORESIGHT] = registration_warnings
    integrations = Integrations(
        settings,
        watcher.services,
        watcher,
        public_url=settings.server.base_url,
        redact=redact,
        clock=clock,
        poll_interval=poll_interval,
    )
    app[INTEGRATIONS] = integrations

    async def watcher_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watcher.run(), name="watcher")
        side = asyncio.create_task(integrations.run(), name="integrations")
        # alerts cut off by a crash (this process's last, or a dead replica's) and
        # retries of failed channels: their sends are the watcher's background work, so
        # `drain` bounds them at a stop; a retry not yet due stays in the store
        recovery = asyncio.create_task(
            alerts.run(watcher.services.spawn, max(poll_interval, alerts.lease_s / 4)),
            name="alert-recovery",
        )
        yield
        for running in (recovery, side, task):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        await watcher.drain(grace=max(1.0, settings.server.shutdown_timeout - 3.0))

    async def news_ctx(app: web.Application) -> AsyncIterator[None]:
        """Live pages hear of what other replicas on the PostgreSQL store write."""
        url = settings.store.url
        task = None
        if store is None and url.startswith(("postgresql://", "postgres://")):
            task = asyncio.create_task(PgNews(url, feed).run(), name="replica-news")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def retention_ctx(app: web.Application) -> AsyncIterator[None]:
        pruner = StorePruner.from_settings(settings, app[STORE], clock)
        task = asyncio.create_task(pruner.run(), name="store-retention")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # aiohttp cleans up in reverse: the watcher stops first, the store closes last
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(news_ctx)
    app.cleanup_ctx.append(retention_ctx)
    app.cleanup_ctx.append(_closes("target sessions", sessions.aclose))
    app.cleanup_ctx.append(_closes("rollback delivery", delivery.aclose))
    app.cleanup_ctx.append(_closes("integrations", integrations.aclose))
    for name, provider in providers.items():
        app.cleanup_ctx.append(_closes(f"provider {name}", provider.aclose))
    app.cleanup_ctx.append(watcher_ctx)
    return app


def _closes(
    what: str, aclose: Callable[[], Awaitable[object]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """One resource's own cleanup context (aiohttp's `cleanup_ctx` style): it closes
    at shutdown, and a failure is logged rather than raised, so it never keeps the
    others from closing nor turns a clean stop into a traceback."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        try:
            await aclose()
        except Exception:
            log.exception("closing %s failed; the other resources still close", what)

    return ctx


async def serve(settings: Settings, stop: asyncio.Event, **kwargs: object) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT), then shut down within the bound."""
    app = build_app(settings, **kwargs)  # type: ignore[arg-type]
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        logger=ServerLog(app[METRICS]),
        shutdown_timeout=min(2.0, settings.server.shutdown_timeout),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port, reuse_address=True)
    try:
        await site.start()
        log.info(
            "postflight %s listening on http://%s (event loop: %s)",
            __version__,
            settings.server.listen,
            type(asyncio.get_running_loop()).__module__.partition(".")[0],  # uvloop | asyncio
        )
        if settings.server.ui:
            log.info("deploy pages at %s/deploys", settings.server.base_url)
        async with daemon_heap(app[METRICS]):
            await stop.wait()
        log.info("stopping: no new work; finishing deliveries in flight")
    finally:
        await runner.cleanup()
        log.info("stopped")

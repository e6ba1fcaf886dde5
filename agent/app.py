"""Wiring: one aiohttp application that serves the API and owns the daemon's work.

Style model: aiohttp's own lifecycle. The store, the resources that use it (retention,
the rollback delivery, the target sessions, each provider) and the watcher (with
background probing) have their own `cleanup_ctx` context, so `postflight run` needs no
other start-up code and shuts down in a known order (stop taking work, let in-flight
deliveries finish within a bound, close the resources together, the store last), each
step within its share of `server.shutdown_timeout` (`agent.stopping`): one resource
failing to close, or a part that does not stop, skips none of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from aiohttp import web
from prometheus_client import Gauge

from agent import __version__
from agent.analysis.stats import load_distributions
from agent.api import add_routes
from agent.api.hooks import INTEGRATIONS
from agent.api.listener import Listener
from agent.api.routes import CLOCK
from agent.api.runner import ApiRunner
from agent.api.server_log import ServerLog
from agent.api.starting import starting_app
from agent.appkeys import (
    FORESIGHT,
    LOOPS,
    METRICS,
    REDACT,
    SETTINGS,
    STORE,
    UNAVAILABLE_PAGE,
    WINDOW_EVENTS,
)
from agent.integrations.targets import RollbackTargets
from agent.metrics import Metrics
from agent.observability import init_sentry
from agent.providers.registry import build_providers
from agent.retention import StorePruner
from agent.rollback.delivery import RollbackDelivery
from agent.settings import Settings
from agent.stopping import CLOSING_SHARE, EXIT_SHARE, STORE_SHARE, StopBudget
from agent.store import store_from_url
from agent.store.base import Store, StoreBusy, StoreUnreachable
from agent.store.outages import not_taken
from agent.timed_store import timed_store
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
STOP = web.AppKey("stop", StopBudget)
STOPPING = web.AppKey("stopping", asyncio.Event)
"""Set by SIGTERM/SIGINT (`serve`): ends a wait for the store at start."""
WAITING: web.AppKey[Callable[[], Awaitable[None]]] = web.AppKey("waiting")
"""Called by `serve`'s application when its store does not answer at start."""

STORE_WAIT_MAX_S = 5.0
"""The longest pause between tries to reach a store that does not answer at start."""


class StoppedWaiting(Exception):
    """A stop while `run` waited for its store to answer: a clean exit, nothing held."""


async def open_when_it_answers(
    store: Store,
    stopping: asyncio.Event | None = None,
    waiting: Callable[[], Awaitable[None]] | None = None,
    then: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Open the store, waiting while its server gives no answer at all (PostgreSQL still
    starting beside the agent, restarting, unreachable for a moment): `run` exited 2 at
    once, the code of a configuration to fix, so systemd gave up after a few quick
    restarts and Kubernetes backed off for minutes. Said once (WARNING), and once when it
    answers; `waiting` is called once, as it is said (`serve` listens then); a refused
    login, an unknown database or a bad file still fails at once. A busy store
    (`StoreBusy`: another replica's migration holding its lock past the role's
    `lock_timeout`) is waited out too, said busy. `then` runs once the
    store is open (the replica id's hold): a cut there closes the store and is waited
    out the same way, where `run` exited 2 ("terminating connection due to administrator
    command", `bench/ha_faults.py` with connection cuts)."""
    delay, said = 0.5, False
    while True:
        try:
            await store.open()
            if then is not None:
                try:
                    await then()
                except (StoreUnreachable, StoreBusy):
                    await store.close()
                    raise
        except (StoreUnreachable, StoreBusy) as exc:  # busy: a migration's lock held long
            if not said:
                said = True
                log.warning("%s (%s); waiting for it", not_taken(exc), exc)
                if waiting is not None:
                    await waiting()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await (stopping or asyncio.Event()).wait()
            if stopping is not None and stopping.is_set():
                raise StoppedWaiting from None
            delay = min(2 * delay, STORE_WAIT_MAX_S)
            continue
        if said:
            log.info("the store answers; starting")
        return


REPLICA_ID_SPARES = 16
"""How many ids an agent not named by POSTFLIGHT_REPLICA_ID tries: the hostname, then
`<hostname>-2` … `-16`."""


def replica_ids() -> tuple[str, ...]:
    """Who holds a window's lease: the first of these no live agent holds (see
    `HoldsReplicaId`). POSTFLIGHT_REPLICA_ID alone when set: an agent under a live one's
    id is refused at start, a configuration to fix. Else the hostname, then the next
    free `<hostname>-N`: a second agent on one host takes `-2`, and each, restarted
    while the same agents run, takes its id again and resumes its windows at once."""
    named = os.environ.get("POSTFLIGHT_REPLICA_ID")
    if named:
        return (named,)
    host = socket.gethostname()
    return (host, *(f"{host}-{n}" for n in range(2, REPLICA_ID_SPARES + 1)))


def _say_replica_id(held: str, tried: tuple[str, ...]) -> None:
    """The replica id, and how it was chosen when the operator did not name it."""
    if len(tried) == 1:
        log.info("replica id %s", held)
    elif held == tried[0]:
        log.info(
            "replica id %s (the hostname; another agent on this host takes the next free"
            " id, %s, unless POSTFLIGHT_REPLICA_ID names each)",
            held,
            tried[1],
        )
    else:
        log.warning(
            "replica id %s: the hostname %s is held by another live agent on the store,"
            " so this agent took the next free id (name each agent on one host with"
            " POSTFLIGHT_REPLICA_ID)",
            held,
            tried[0],
        )


@runtime_checkable
class HoldsReplicaId(Protocol):
    """A store the agent holds for its life: its replica id on PostgreSQL, the file on
    SQLite (one agent each). Its start fails (`postflight run` exits 2, saying which agent
    holds it) while other live agents hold every id it may take."""

    async def hold_replica_id(self, *replica_ids: str) -> str:
        """Hold the first of `replica_ids` free and return it."""


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
    (default: the first free of `replica_ids()`, taken at start); `environ` is where
    `SENTRY_DSN` is read (default: the process's; the demo gives none, so nothing leaves
    the machine); `alert_retry_delays`: the backoff of a channel that failed an alert
    (tests shorten it)."""
    redact = Redactor(settings.secret_values())
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    feed = DeployFeed()
    app[FEED] = feed
    shared = store or store_from_url(settings.store.url)
    owners = (owner,) if owner else replica_ids()
    owner = owners[0]
    app[METRICS] = metrics or Metrics()
    app[STORE] = feed_store(timed_store(shared, app[METRICS].store_call), feed)
    app[METRICS].expect(
        settings.environments,
        {r.source for env in settings.environments.values() for r in env.rules} - {"checks"},
        [name for name, hook in settings.integrations if hook is not None],
    )
    app[REDACT] = redact
    add_routes(app)
    web_routes.mount(app)
    stop = StopBudget(settings.server.shutdown_timeout)
    app[STOP] = stop

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        init_sentry(redact, environ)
        held: list[str] = []

        async def hold_replica_id() -> None:
            if isinstance(shared, HoldsReplicaId):
                try:
                    held.append(await shared.hold_replica_id(*owners))
                except (StoreUnreachable, StoreBusy):
                    raise  # closed and waited out by `open_when_it_answers`
                except BaseException:
                    await app[STORE].close()
                    raise

        await open_when_it_answers(
            app[STORE], app.get(STOPPING), app.get(WAITING), then=hold_replica_id
        )
        if held:
            watcher.name_replica(held[0])  # before any loop that leases runs
            if settings.store.url.startswith(("postgresql://", "postgres://")):
                _say_replica_id(held[0], owners)
        app[METRICS].store_up.set(1)  # 0 until now, the wait at start included
        yield
        closing = asyncio.create_task(app[STORE].close(), name="closing the store")
        if getattr(shared, "closes_on_threads", False):
            await _close_on_threads(closing, stop)
        else:
            await stop.settle([closing], grace=math.inf)

    sessions = TargetSessions()
    notifier = Notifier(
        settings.alerting.channels,
        timeout=settings.alerting.timeout,
        redact=redact,
        metrics=app[METRICS],
    )
    delivery = RollbackDelivery(
        app[STORE],
        app[METRICS],
        user_agent=f"postflight/{__version__}",
        clock=clock,
        redact=redact,
        owner=owner,
        lease_s=settings.store.lease,
        targets=RollbackTargets(settings),
        stop=stop,
    )
    providers = build_providers(settings.providers, app[METRICS], redact)
    alerts = WindowAlerts(
        app[STORE],
        notifier,
        link=lambda window: deploy_page_url(settings.server, window.id, now=clock()),
        retry_delays=alert_retry_delays,
        stop=stop,
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
    watcher.services.stop = stop
    app[WATCHER] = watcher
    pace = watcher.services.pace
    # registrations (`deployed_at`, a cancel's end) are stamped by the clock rounds are
    # paced by: the store's once this replica follows it, so a replica whose clock is off
    # neither holds a new window back by its offset nor cuts it short
    app[CLOCK] = lambda: pace.now_or(clock)
    app[WINDOW_EVENTS] = watcher
    # a relative rule without a background run yet is told when its first is due here
    app[FORESIGHT] = functools.partial(registration_warnings, next_run=watcher.prober.next_run)
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
        if any(e.analysis.policy != "threshold" for e in settings.environments.values()):
            load_distributions()  # before the first registration asks the judge
        task = asyncio.create_task(watcher.run(), name="watcher")
        side = asyncio.create_task(integrations.run(), name="integrations")
        # alerts cut off by a crash (this process's last, or a dead replica's) and
        # retries of failed channels: their sends are the watcher's background work, so
        # the stop bounds them as it does the rest; a retry not yet due stays in the store
        recovery = asyncio.create_task(
            alerts.run(watcher.services.spawn, max(poll_interval, alerts.lease_s / 4)),
            name="alert-recovery",
        )
        app[LOOPS] = {loop.get_name(): loop for loop in (task, side, recovery)}
        for what, loop in app[LOOPS].items():
            up = app[METRICS].loops_up[what]
            up.set(1)
            loop.add_done_callback(functools.partial(_loop_ended, what, up))
        yield
        delivery.leave_waits()  # nothing of a rollback between retries is out: at once
        integrations.leave_waits()  # nor of a follow-up between retries
        await stop.settle((recovery, side, task), keep=CLOSING_SHARE)
        grace = max(1.0, settings.server.shutdown_timeout - 3.0)
        await watcher.drain(grace, stop, keep=CLOSING_SHARE)

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        """What uses the store besides the watcher. Closed at once at a stop, once the
        watcher has stopped, so one close that hangs holds none of the others."""
        pruner = StorePruner.from_settings(settings, app[STORE], clock)
        running = [asyncio.create_task(pruner.run(), name="store-retention")]
        url = settings.store.url
        if store is None and url.startswith(("postgresql://", "postgres://")):
            # live pages hear of what other replicas on the PostgreSQL store write, and so
            # does the watcher (a window there cuts a background run in flight here)
            news = PgNews(url, feed)
            news.also = watcher.hear_replicas(news.at_once)
            running.append(asyncio.create_task(news.run(), name="replica-news"))
        yield
        for task in running:
            task.cancel()
        closes = [(f"provider {name}", p.aclose) for name, p in reversed(providers.items())]
        closes += [
            ("integrations", integrations.aclose),
            ("rollback delivery", delivery.aclose),
            ("target sessions", sessions.aclose),
        ]
        closing = [asyncio.create_task(aclose(), name=f"closing {what}") for what, aclose in closes]
        await stop.settle([*running, *closing], grace=math.inf, keep=STORE_SHARE)

    # aiohttp cleans up in reverse: the watcher stops first, the store closes last
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(resources_ctx)
    app.cleanup_ctx.append(watcher_ctx)
    return app


async def _close_on_threads(closing: asyncio.Task[None], stop: StopBudget) -> None:
    """Wait for a store's close whose threads end only with it (SQLite's: aiosqlite's, one
    per connection), never cancelling it, into the exit's share of the budget: the process
    waits for those threads at its exit all the same. A close cut at its grace (as other
    steps' work is) went on in its thread, which, done, told the loop that had closed
    meanwhile (`RuntimeError: Event loop is closed`, a traceback in the log), and left the
    connections open. It is waited for past the hard bound (`stopping.exit_if_still_running`,
    armed at the signal: it ends `postflight run` first), and left only then, for an app
    run with no such bound (in-process). Left at half the exit's share before, a close that
    a loaded host slowed past it (the thread not scheduled) called back into the closed loop
    all the same: the traceback, where the exit waited for that thread regardless."""
    done, _ = await asyncio.wait({closing}, timeout=stop.left())
    if not done:
        log.warning(
            "stopping: closing the store is still running at the end of the stop's budget;"
            " waiting for it into the exit's share"
        )
        done, _ = await asyncio.wait({closing}, timeout=stop.left(-2 * EXIT_SHARE))
    if not done:
        log.warning("stopping: closing the store did not finish; leaving it")
    elif not closing.cancelled() and closing.exception() is not None:
        log.error("stopping: closing the store failed", exc_info=closing.exception())


def _loop_ended(what: str, up: Gauge, task: asyncio.Task[None]) -> None:
    """A background loop ends only when a stop cancels it. One that ended otherwise (a bug
    outside its retries) leaves windows unwatched or alerts unsent while the API answers:
    said at once, `postflight_<loop>_up` 0 (`PostflightLoopStopped` pages), and /readyz fails
    until a restart."""
    if task.cancelled():
        return
    up.set(0)
    exc = task.exception()
    log.critical(
        "the %s loop stopped%s; restart the agent (/readyz now fails)",
        what,
        f" on {type(exc).__name__}" if exc is not None else "",
        exc_info=exc,
    )


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_listening: Callable[[str], object] = lambda base: None,
    **kwargs: object,
) -> None:
    """Serve until `stop` is set (SIGTERM/SIGINT), then shut down within the bound. A store
    that does not answer at start is waited for behind `agent.api.starting`'s answers
    (/healthz 200, /readyz and the API 503), on the socket the agent then takes over.
    `on_listening` is given the address it accepts on (`http://127.0.0.1:41234`, the port
    `listen: host:0` took) once it does: the demo reads its agent's from it."""
    listener = Listener(settings.server.host, settings.server.port)
    # bound first: the port `listen: host:0` takes is the one its links and log name
    port = await listener.bind()
    try:
        if port != settings.server.port:
            settings = settings.model_copy(update={"server": settings.server.bound_to(port)})
        app = build_app(settings, **kwargs)  # type: ignore[arg-type]
    except BaseException:
        listener.close()
        raise
    app[STOPPING] = stop
    # the requests in flight: a quarter of the stop, at most 2 s
    in_flight_s = min(2.0, settings.server.shutdown_timeout / 4)
    waiting = starting_app(app[METRICS], settings.server)
    if UNAVAILABLE_PAGE in app:  # a deploy page's path gets the page saying why
        waiting[UNAVAILABLE_PAGE] = app[UNAVAILABLE_PAGE]
    starting = api_runner(waiting, app[METRICS], in_flight_s)

    async def listen_while_waiting() -> None:
        app[METRICS].waiting_for_store.set(1)
        for environment in settings.environments:  # none watched yet; the series stay
            app[METRICS].windows_active.labels(environment).set(0)
        await starting.setup()
        await listener.serve(starting)
        meanwhile = "; /healthz answers, /readyz and the API 503 until the store does"
        _say_listening(settings, on_listening, meanwhile)

    app[WAITING] = listen_while_waiting
    runner = api_runner(app, app[METRICS], in_flight_s)
    try:
        await runner.setup()
    except BaseException as exc:
        listener.close()
        await starting.cleanup()
        if not isinstance(exc, StoppedWaiting):
            raise
        log.info("stopped while waiting for the store")
        return
    app[METRICS].waiting_for_store.set(0)
    try:
        waited = listener.listening
        # binds, or takes the socket over with no gap: a connection the waiting answers
        # took is answered by them once and closed, its next request made to the agent
        await listener.serve(runner)
        if not waited:
            _say_listening(settings, on_listening)
        if settings.server.ui:
            log.info("deploy pages at %s/deploys", settings.server.base_url)
        async with daemon_heap(app[METRICS]):
            await stop.wait()
        app[STOP].start()
        log.info("stopping: no new work; finishing deliveries in flight")
    finally:
        listener.close()
        await starting.cleanup()
        await runner.cleanup()
        log.info("stopped")


def api_runner(app: web.Application, metrics: Metrics, in_flight_s: float) -> ApiRunner:
    """The runner the daemon serves `app` with: parser errors as problem+json, its header
    limits, its server log counting them in postflight_malformed_requests_total, requests
    in flight given `in_flight_s` at a stop. Public so the e2e harness serves through the
    same one instead of a copy that drifts from it."""
    return ApiRunner(
        app,
        handle_signals=False,
        access_log=None,
        logger=ServerLog(metrics),
        shutdown_timeout=in_flight_s,
    )


def _say_listening(
    settings: Settings, on_listening: Callable[[str], object], meanwhile: str = ""
) -> None:
    on_listening(f"http://{settings.server.listen}")
    log.info(
        "postflight %s listening on http://%s (event loop: %s)%s",
        __version__,
        settings.server.listen,
        type(asyncio.get_running_loop()).__module__.partition(".")[0],  # uvloop | asyncio
        meanwhile,
    )

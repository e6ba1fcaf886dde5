"""README (store): "the replica whose window probes the environment takes [the
background lease], so no background run duplicates the window's rounds". It takes it as
the window's watch starts (`take_for_window`): before, only at its own next background
slot, and until then the holder went on probing the environment the window probes.
Two probers on one store with the SQL of a shared one, on a virtual clock."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from agent.windows.probing import BackgroundProber, EnvironmentProbe
from checks.base import Check
from checks.sessions import TargetSessions
from tests.test_background_probing import settings

WINDOW = (45.0, 100.0)  # on replica a


async def test_no_background_run_while_another_replicas_window_probes(
    store: SqliteStore,
) -> None:
    store.shared = True  # type: ignore[misc]  # as PostgreSQL's: leased per environment
    now = 0.0
    sleeping: list[tuple[float, int, asyncio.Future[None]]] = []
    order = itertools.count()
    ran: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    class Recording(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            ran.append((self.owner, now))

    async def sleep(seconds: float) -> None:
        woken: asyncio.Future[None] = loop.create_future()
        heapq.heappush(sleeping, (now + seconds, next(order), woken))
        await woken

    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    health = next(c for c in probe.checks if c.name == "health")

    def prober(owner: str, busy: bool) -> Recording:
        return Recording(
            {"production": probe},
            store,
            busy=lambda _: busy and WINDOW[0] <= now < WINDOW[1],
            clock=lambda: now,
            owner=owner,
            monotonic=lambda: now,
            sleep=sleep,
        )

    b, a = prober("b", busy=False), prober("a", busy=True)
    tasks = [asyncio.create_task(b._probe_forever("production", probe, health, 30.0))]

    async def settle(count: int) -> None:  # every task waits on the clock again
        for _ in range(2000):
            if len(sleeping) >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("a prober never slept")

    await settle(1)
    now = 10.0  # replica a starts 10 s later: its slots fall at 10, 40, 70, 100
    tasks.append(asyncio.create_task(a._probe_forever("production", probe, health, 30.0)))
    await settle(2)
    while sleeping[0][0] <= 130.0:
        due, _, woken = heapq.heappop(sleeping)
        if now < WINDOW[0] <= due:  # the window's watch starts on a: it takes the lease
            now = WINDOW[0]
            await a.take_for_window("production")
        now = due
        woken.set_result(None)
        await settle(2)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert ran[0] == ("b", 0.0)
    during = [(owner, at) for owner, at in ran if WINDOW[0] <= at < WINDOW[1]]
    assert during == [], (during, ran)


async def test_a_run_whose_lease_a_window_took_meanwhile_is_not_stored(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder's run in flight as another replica's window takes the lease: cut as
    the holder hears of the window (`agent.windows.in_flight.WindowNews`), and when that
    news is lost (the news connection down), still not stored: it probed beside the
    window's rounds. Before, it was stored at its end, after the deploy, into the next
    deploy's baseline. A run of the holder's own is stored as before."""
    store.shared = True  # type: ignore[misc]  # as PostgreSQL's: leased per environment
    arrived = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        arrived.set()
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    async with TestServer(app, host="127.0.0.1") as server:
        env = settings(str(server.make_url(""))).environments["production"]
        sessions = TargetSessions()
        probe = EnvironmentProbe("production", env, sessions, Metrics())
        health_check = next(c for c in probe.checks if c.name == "health")
        b = BackgroundProber({"production": probe}, store, lambda _: False, owner="b")
        a = BackgroundProber({"production": probe}, store, lambda _: False, owner="a")
        assert await b._hold("production")
        await b.probe_once("production", probe, health_check)  # b's own run: stored
        assert len(await store.probe_summaries("production", 0.0, 2e9)) == 1
        arrived.clear()
        run = asyncio.create_task(b.probe_once("production", probe, health_check))
        await arrived.wait()  # in flight, its news of the window lost: not cut
        await a.take_for_window("production")
        with caplog.at_level(logging.INFO, logger="postflight.probing"):
            await run
        await sessions.aclose()
    assert len(await store.probe_summaries("production", 0.0, 2e9)) == 1
    assert "another replica took its background lease meanwhile" in caplog.text


async def test_only_the_replica_holding_the_lease_says_when_its_next_run_starts(
    store: SqliteStore,
) -> None:
    """On a shared store the environment's runs are the lease holder's, on its own grid:
    a replica that does not hold it says no time for them (registration then says none),
    where its own grid's slot named a run that would not come then."""
    store.shared = True  # type: ignore[misc]  # as PostgreSQL's: leased per environment
    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    b, a = (
        BackgroundProber({"production": probe}, store, lambda _: False, clock=lambda: 0.0, owner=o)
        for o in ("b", "a")
    )
    for replica, slot in ((b, 30.0), (a, 40.0)):
        replica.due[("production", "health")] = slot  # each one's grid
        assert replica.next_run("production", "health") is None  # no lease asked for yet
    assert await b._hold("production") and not await a._hold("production")
    assert b.next_run("production", "health") == 30.0
    assert a.next_run("production", "health") is None

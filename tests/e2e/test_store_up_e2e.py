"""`postflight run` on a real PostgreSQL stopped and started under it: `postflight_store_up`
on its /metrics is 0 while it waits for the store at start, 1 once it answers, 0 while it
is stopped later (an idle agent: no window, no request but the scrapes), 1 again once it
is back. A store outage under a running agent was said only in its log and by /readyz,
where no dashboard or alert saw it (`PostflightStoreDown`)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_store_at_start import WAITING, killed, said, shown, start
from tests.pg import PgCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def gauges(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """`postflight_store_up` and `postflight_waiting_for_store` as a scraper reads them."""
    async with http.get(f"{base}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    wanted = ("postflight_store_up", "postflight_waiting_for_store")
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            found[name] = float(value)
    return found


async def store_up_becomes(
    http: aiohttp.ClientSession, base: str, value: float
) -> dict[str, float]:
    seen: dict[str, float] = {}
    for _ in range(300):  # 30 s at most: a PostgreSQL that stops or starts on a loaded machine
        try:
            seen = await gauges(http, base)
        except aiohttp.ClientConnectionError:  # the waiting answers close each connection
            seen = {}
        if seen.get("postflight_store_up") == value:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"postflight_store_up never became {value}: {seen}")


async def readiness(http: aiohttp.ClientSession, base: str) -> tuple[int, object]:
    async with http.get(f"{base}/readyz") as r:
        return r.status, (await r.json(content_type=None)).get("checks")


async def test_the_store_gauge_follows_a_postgresql_stopped_and_started_under_the_agent(
    tmp_path: Path, own_pg_cluster: PgCluster
) -> None:
    url = await own_pg_cluster.create_database()
    await asyncio.to_thread(own_pg_cluster.stop)
    agent, port, log = start(tmp_path, url)
    base = f"http://127.0.0.1:{port}"
    try:
        await said(log, agent, WAITING)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            waiting = await store_up_becomes(http, base, 0)
            assert waiting["postflight_waiting_for_store"] == 1, waiting

            await asyncio.to_thread(own_pg_cluster.start)
            up = await store_up_becomes(http, base, 1)
            assert up["postflight_waiting_for_store"] == 0, up
            assert await readiness(http, base) == (
                200,
                {"config": True, "store": True, "watching": True},
            )

            await asyncio.to_thread(own_pg_cluster.stop)
            down = await store_up_becomes(http, base, 0)
            assert down["postflight_waiting_for_store"] == 0, down  # not the wait at start
            status, checks = await readiness(http, base)
            assert status == 503 and checks == {
                "config": True,
                "store": False,
                "watching": True,
            }, (status, checks)

            await asyncio.to_thread(own_pg_cluster.start)
            await store_up_becomes(http, base, 1)
            assert (await readiness(http, base))[0] == 200
        agent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.wait, 20) == 0
    finally:
        killed(agent)
    text = shown(log)
    assert "claiming windows: the store does not answer" in text, text
    assert "claiming windows: the store answers again" in text, text

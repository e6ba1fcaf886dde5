"""The deploy page while PostgreSQL is busy, not down: another session holds a lock the
page's read waits on past the role's `lock_timeout` (an operator's `LOCK TABLE`, a long
migration), so the read is refused for now (`StoreBusy`) while the store is up.

The page said "Postflight's store does not answer just now (a database restarting…)",
sending the on-call engineer to a database that was answering; and the live part of an
open page, whose fetch after an event met the same refusal, said "Could not refresh (503);
showing the last snapshot." and never fetched again: a window that ended meanwhile showed
as still watching until a reload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, RunningAgent
from tests.web.conftest import ONE_CHROMIUM
from tests.web.sse import drop_connections
from tests.web.target import JourneyTarget, journey_environment

asyncpg = pytest.importorskip("asyncpg")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

LOCK_WAIT = "200ms"
"""The agent's sessions' `lock_timeout` (as a DBA's `ALTER ROLE … SET` gives it)."""


@pytest.fixture
async def operator(pg_url: str) -> AsyncIterator[Any]:
    """Another session on the store's database: an operator's."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


@pytest.fixture
async def busy_agent(
    start_agent: AgentFactory, journey: JourneyTarget, rollback_receiver: Any, pg_url: str
) -> RunningAgent:
    """The agent on PostgreSQL whose sessions wait `LOCK_WAIT` for a lock, then are refused."""
    receiver = await rollback_receiver(SECRET)
    return await start_agent(
        journey_environment(journey, receiver.url, SECRET, window="60s"),
        store=f"url: {pg_url}&lock_timeout={LOCK_WAIT}",
    )


async def live_page(agent: RunningAgent, browser: Any, version: str) -> tuple[dict[str, Any], Any]:
    """A deploy registered and its page open, once the page's stream is: said so, or a
    round it brought."""
    deploy = await agent.register("production", version)
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    await page.wait_for_selector(
        "#live-status:has-text('Live'), #live-status:has-text('Round')", timeout=15_000
    )
    return deploy, page


async def test_a_page_read_the_busy_store_refused_says_busy_and_that_it_retries(
    busy_agent: RunningAgent,
    operator: Any,
) -> None:
    agent = busy_agent
    deploy = await agent.register("production", "v2.5.0")
    browser = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/html"}
    tx = operator.transaction()
    await tx.start()
    try:
        await operator.execute("LOCK TABLE windows IN ACCESS EXCLUSIVE MODE")
        for path in (f"/deploys/{deploy['id']}", "/deploys"):
            async with agent.http.get(f"{agent.url}{path}", headers=browser) as r:
                text = await r.text()
                assert r.status == 503, (path, r.status, text)
                assert r.content_type == "text/html", path
                assert r.headers["Retry-After"].isdigit(), path
                store_said = r.headers.get("Postflight-Store")
            assert "busy" in text, (path, text)
            assert "does not answer" not in text, (path, text)
            assert "again by itself" in text, (path, text)
            assert store_said == "busy", path  # the page's script words its refetch by it
        api = f"{agent.url}/v1/deploys/{deploy['id']}"
        async with agent.http.get(api, headers=agent.headers) as r:
            assert (r.status, r.content_type) == (503, "application/problem+json")
            assert "busy" in (await r.json())["detail"]
            assert r.headers["Postflight-Store"] == "busy"  # what the page's script reads
        assert agent.metric("postflight_store_up") == 1  # busy: never said down
    finally:
        await tx.rollback()
    async with agent.http.get(f"{agent.url}/deploys/{deploy['id']}", headers=browser) as r:
        assert r.status == 200
    await agent.cancel(deploy["id"])


@ONE_CHROMIUM
async def test_the_live_part_refetched_while_the_store_is_busy_says_so_and_catches_up(
    busy_agent: RunningAgent,
    operator: Any,
    browser: Any,
) -> None:
    """The page open on a watching window; the alerts table, which the page reads and the
    event stream does not, locked by an operator; the window cancelled: the stream's
    `cancelled` reaches the page, whose fetch of the live part is refused (busy). The page
    says the store is busy and that it retries; once the lock is let go, the live part
    shows the window cancelled, with no reload."""
    agent = busy_agent
    deploy, page = await live_page(agent, browser, "v2.5.1")
    await page.evaluate("window.__sameDocument = true")
    status = page.locator("#live-status")
    tx = operator.transaction()
    await tx.start()
    try:
        await operator.execute("LOCK TABLE alerts IN ACCESS EXCLUSIVE MODE")
        await agent.cancel(deploy["id"])
        await page.wait_for_selector("#live-status:has-text('Could not')", timeout=15_000)
        said = await status.text_content() or ""
        assert "busy" in said and "retrying" in said, said
        assert "does not answer" not in said, said
        shown = page.locator('#live .state-line [data-state="watching"]')
        assert await shown.count() == 1  # the last snapshot, still
    finally:
        await tx.rollback()
    await page.wait_for_selector('#live .state-line [data-state="cancelled"]', timeout=15_000)
    said = await status.text_content() or ""
    assert "busy" not in said and "cancelled" in said, said
    assert await page.evaluate("window.__sameDocument") is True, "the page was reloaded"


@ONE_CHROMIUM
async def test_a_stream_reconnect_the_busy_store_refused_says_busy_and_retries(
    busy_agent: RunningAgent,
    operator: Any,
    browser: Any,
) -> None:
    """The page's stream dropped (a proxy's restart) while an operator holds the windows
    table: its reconnect and the `HEAD` asking why are refused, busy. The page said "Live
    updates interrupted; retrying…", no word of why; it says the store is busy, and takes
    the rounds again once the lock is let go."""
    agent = busy_agent
    deploy, page = await live_page(agent, browser, "v2.5.2")
    status = page.locator("#live-status")
    tx = operator.transaction()
    await tx.start()
    try:
        await operator.execute("LOCK TABLE windows IN ACCESS EXCLUSIVE MODE")
        drop_connections(agent)
        await page.wait_for_selector("#live-status:has-text('busy')", timeout=20_000)
        said = await status.text_content() or ""
        assert "retrying" in said and "does not answer" not in said, said
    finally:
        await tx.rollback()
    rounds = (await agent.get(deploy["id"]))["rounds"]
    await page.wait_for_selector(f'tr[data-round="{rounds + 1}"]', timeout=20_000)
    said = await status.text_content() or ""
    assert "busy" not in said, said
    await agent.cancel(deploy["id"])

"""No connection the store cuts as it is being made leaves asyncio an error to report.

asyncpg asks the server for SSL on a connection of its own before it speaks PostgreSQL;
cut in the loop iteration or two between the socket's connection and asyncpg's first
write, the ask's answer (a future) is failed with "unexpected connection_lost() call" and
nobody awaits it: asyncio logged "Future exception was never retrieved" at ERROR once it
was collected, in an agent's log, where a user reads it as a fault. The agent cuts such
connections on its own: its look at the server (`PROBE_S`), asyncpg's connect timeout,
the pool's new connection as it closes, and the cancel request asyncpg sends for a query
the agent gave up, cut with its session (the replica id's look unanswered). It was seen in
a full-suite run as the first ERROR of `test_postgres_frozen.py`'s keeper test, where that
test looked for the keeper's own error line."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("asyncpg")

pytestmark = pytest.mark.e2e

STEPS = 8
"""Loop iterations tried for the cut: the ask's window is the second or third on an
idle machine; every one up to this many is tried, so a loaded one meets it too."""


@pytest.fixture
async def reported() -> AsyncIterator[list[dict[str, Any]]]:
    """What the running loop reports as unhandled (collected, so nothing is left for
    later), the loop's own handler put back after."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(before)


async def collected() -> None:
    """Collect what was dropped, after the callbacks pending for it have run."""
    for _ in range(3):
        await asyncio.sleep(0.05)
        gc.collect()


def said(contexts: list[dict[str, Any]]) -> list[str]:
    return [f"{c.get('message')}: {c.get('exception')!r}" for c in contexts]


async def cut_after(steps: int, begin: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
    """`begin()`'s future, cancelled `steps` loop iterations after it began."""
    task = asyncio.ensure_future(begin())
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task})
    return task


async def test_a_connection_cut_as_it_is_made_leaves_nothing_unretrieved(
    pg_url: str, reported: list[dict[str, Any]]
) -> None:
    """A new connection cut at each of its first loop iterations (the look's at
    `PROBE_S`, asyncpg's own timeout, the pool's as it closes): 2 of 8 left the SSL
    ask's error unretrieved before."""
    import asyncpg

    import agent.store.postgres  # noqa: F401 - the store as the agent runs it

    for steps in range(STEPS):
        attempt = await cut_after(steps, lambda: asyncpg.connect(pg_url))
        if not attempt.cancelled() and attempt.exception() is None:
            attempt.result().terminate()
    await collected()
    assert said(reported) == []


async def test_a_session_cut_as_its_query_is_called_off_leaves_nothing_unretrieved(
    pg_url: str, reported: list[dict[str, Any]]
) -> None:
    """A query given up (cancelled: asyncpg sends the server a cancel request on a
    connection of its own) and its session cut a few iterations later, as the replica
    id's keeper cuts a session whose look went unanswered: asyncpg drops the cancel
    request as it is being made; 2 of 8 left its SSL ask's error unretrieved before."""
    import asyncpg

    import agent.store.postgres  # noqa: F401 - the store as the agent runs it

    for steps in range(STEPS):
        conn = await asyncpg.connect(pg_url)
        query = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.05)  # the query is the server's
        query.cancel()
        await asyncio.wait({query})
        for _ in range(steps):
            await asyncio.sleep(0)
        conn.terminate()
    await collected()
    assert said(reported) == []

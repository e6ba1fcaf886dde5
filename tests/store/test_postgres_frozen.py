"""A PostgreSQL server that stops answering with its sockets still open (SIGSTOP: a
frozen VM, a stopped container) ends the store's operations as an outage within a few
seconds, where a query on a pooled connection waited out the command timeout (40 s at
the defaults) and one on a new connection the connect timeout (10 s): the API's GETs
answered 503 after 40 s, a pipeline and the deploy page hung. A query that is merely
slow, on a server that answers, still waits to its end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from agent.store.base import StoreUnreachable
from agent.store.postgres import LOOK_S, LOOK_STEP_S, PROBE_S, PostgresStore
from tests.pg import PgCluster

pytest.importorskip("asyncpg")

pytestmark = pytest.mark.e2e

LONG_TIMEOUT_S = 60.0
"""The store's connect and command timeouts here: far past what the look takes."""

BOUND_S = 20.0
"""An operation on the frozen server ends well before this (it took 60 s, 40 s at the
defaults); the look itself takes about 4 s (`LOOK_S + PROBE_S`; 2 s where a test sets
`PROBE_S` to 1 s)."""


@contextmanager
def frozen(cluster: PgCluster) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP), then continued."""
    assert cluster.runner is not None
    pidfile = cluster.runner.home / "data" / "postmaster.pid"
    postmaster = int(pidfile.read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    pids = [postmaster, *map(int, children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def test_a_frozen_server_is_an_outage_within_seconds_and_a_slow_query_is_not(
    own_pg_cluster: PgCluster, pg_url: str
) -> None:
    """At the look the README names (`LOOK_S` 1 s, then `PROBE_S` 3 s for an answer),
    where this test set `PROBE_S` to 1 s to save time and no test here ran that look: a
    look waiting 1 s of 3, say, passed it. A query slow past a whole look at a server that
    does not answer (`LOOK_S + PROBE_S`) is waited for to its end, while (on a server of
    its own, at the same time) the operations on a frozen server end as an outage once
    their look has waited `PROBE_S`."""

    async def slow() -> None:
        store = PostgresStore(pg_url, connect_timeout=LONG_TIMEOUT_S)
        await store.open()
        try:
            async with store._read() as db:
                query = "SELECT 1 FROM pg_sleep($1)"
                rows = await db.fetch(query, LOOK_S + PROBE_S + 0.5)
            assert [tuple(row) for row in rows] == [(1,)]
        finally:
            await store.close()

    async def on_frozen() -> float:
        """How long the operations on the frozen server took to end as an outage."""
        url = await own_pg_cluster.create_database()
        store = PostgresStore(url, connect_timeout=LONG_TIMEOUT_S, command_timeout=LONG_TIMEOUT_S)
        await store.open()
        try:
            assert await store.get_window("dep_none") is None  # one pooled connection
            with frozen(own_pg_cluster):
                began = time.monotonic()
                async with asyncio.timeout(BOUND_S):
                    pooled, fresh = await asyncio.gather(
                        store.get_window("dep_a"),
                        store.get_window("dep_b"),
                        return_exceptions=True,
                    )
                took = time.monotonic() - began
            for outcome in (pooled, fresh):
                assert isinstance(outcome, StoreUnreachable), outcome
                assert "cannot reach PostgreSQL store" in str(outcome)
            assert await store.get_window("dep_none") is None  # continued: it answers again
            return took
        finally:
            await store.close()

    _, took = await asyncio.gather(slow(), on_frozen())
    assert took >= LOOK_S + PROBE_S - LOOK_STEP_S, took  # the look waited out its PROBE_S


async def test_many_slow_queries_share_their_looks_at_the_server(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each operation waiting past `LOOK_S` asks whether the server answers: ten slow
    queries begun a tenth of a second apart on a loaded server were twenty new
    connections in 3 s, one per query a second. One look's answer serves every query
    for `LOOK_S`: a few looks in all, and every query waited to its end."""
    import asyncpg

    looks = 0
    connect = asyncpg.connect

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal looks
        looks += 1
        return await connect(*args, **kwargs)

    store = PostgresStore(pg_url, max_size=10)
    await store.open()
    monkeypatch.setattr(asyncpg, "connect", counted)  # the looks' (the pool's are its own)

    async def slow(after: float) -> list[tuple[object, ...]]:
        await asyncio.sleep(after)
        async with store._read() as db:
            return [tuple(row) for row in await db.fetch("SELECT 1 FROM pg_sleep(2.5)")]

    try:
        answers = await asyncio.gather(*(slow(n / 10) for n in range(10)))
    finally:
        await store.close()
    assert answers == [[(1,)]] * 10
    assert 1 <= looks <= 6, looks


def stall_the_first_look(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """From here on, the first new connection (a look's: the store's pool makes its own)
    blocks the loop for twice `PROBE_S` as it begins. The list holds each look's start."""
    import time

    import asyncpg

    from agent.store import postgres

    connect = asyncpg.connect
    looks: list[float] = []

    async def stalled(*args: object, **kwargs: object) -> object:
        looks.append(time.monotonic())
        if len(looks) == 1:
            asyncio.get_running_loop().call_soon(time.sleep, 2 * postgres.PROBE_S)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(asyncpg, "connect", stalled)
    return looks


@pytest.mark.parametrize("connect_timeout", [LONG_TIMEOUT_S, 1.0])
async def test_a_stall_of_the_agent_s_own_loop_does_not_call_a_live_server_away(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, connect_timeout: float
) -> None:
    """The look's wait counts only time the agent's loop could wait: a loop stalled past
    `PROBE_S` as the look began (a GC pause, a callback that blocked, a busy host) read
    the live server's answer late, and the look, its time up on the loop's clock, called
    the server away: the slow query's connection was cut and the operation ended as an
    outage (a 503) on a server that answered all along. Here the stall is a callback
    that blocks the loop for twice `PROBE_S` as the look's connection begins; past the
    connection's own timeout too (`connect_timeout` 1 s: asyncpg's clock), then looked at
    again."""
    from agent.store import postgres

    monkeypatch.setattr(postgres, "PROBE_S", 1.0)  # the stall is what matters, not its size
    store = PostgresStore(pg_url, connect_timeout=connect_timeout, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    looks = stall_the_first_look(monkeypatch)
    try:
        async with store._read() as db:
            rows = await db.fetch("SELECT 1 FROM pg_sleep(4)")  # past the look and its stall
        assert [tuple(row) for row in rows] == [(1,)]
        assert looks
    finally:
        await store.close()


async def test_a_frozen_server_is_still_an_outage_when_the_loop_stalled_in_the_look(
    own_pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stall's time does not count (above), the rest of the look's does: a server
    frozen while the loop stalled is called away once the look has waited `PROBE_S`
    of its own, not waited for until the command timeout."""
    from agent.store import postgres

    monkeypatch.setattr(postgres, "PROBE_S", 1.0)
    url = await own_pg_cluster.create_database()
    store = PostgresStore(url, connect_timeout=LONG_TIMEOUT_S, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    assert await store.get_window("dep_none") is None  # one pooled connection
    looks = stall_the_first_look(monkeypatch)
    try:
        with frozen(own_pg_cluster):
            async with asyncio.timeout(BOUND_S):
                outcome = await asyncio.gather(store.get_window("dep_a"), return_exceptions=True)
        assert isinstance(outcome[0], StoreUnreachable), outcome
        assert looks
    finally:
        await store.close()


STALL_TIMEOUT_S = 0.5
"""The store's connect timeout in the stall tests below: the stall is three times it."""


async def test_a_stall_of_the_loop_does_not_fail_a_readiness_ping(pg_url: str) -> None:
    """`ping` (GET /readyz) is bounded by `connect_timeout` of the time the loop could
    wait, as the look is: on the loop's clock, a stall past it as the ping waited (a GC
    pause, a blocking callback, a busy host) read the live server's answer too late and
    the agent said itself not ready once."""
    import time

    store = PostgresStore(pg_url, connect_timeout=STALL_TIMEOUT_S, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    try:
        assert await store.ping()
        ping = asyncio.ensure_future(store.ping())
        # the loop stalled once the ping began (its first step runs first)
        asyncio.get_running_loop().call_soon(time.sleep, 3 * STALL_TIMEOUT_S)
        assert await ping
    finally:
        await store.close()


async def test_a_stall_of_the_loop_does_not_cut_the_replica_ids_session(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica-id keeper's look at its session is bounded by `connect_timeout` of the
    time the loop could wait: on the loop's clock, a stall as it looked cut the session
    that holds the id (its lock let go) and took the id again, with a live server."""
    import time

    from agent.store import postgres

    monkeypatch.setattr(postgres, "REPLICA_LOOK_S", 0.05)

    class Stalling:
        """The held session, the loop stalled as its first look waits."""

        def __init__(self, conn: object) -> None:
            self.conn: Any = conn
            self.looks = 0
            self.looked_again = asyncio.Event()

        async def fetchval(self, *args: object) -> object:
            self.looks += 1
            if self.looks == 3:
                self.looked_again.set()
            if self.looks == 1:
                asyncio.get_running_loop().call_soon(time.sleep, 3 * STALL_TIMEOUT_S)
            return await self.conn.fetchval(*args)

        def terminate(self) -> None:
            self.conn.terminate()

    store = PostgresStore(pg_url, connect_timeout=STALL_TIMEOUT_S, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    try:
        await store.hold_replica_id("a")
        held = store._replica = Stalling(store._replica)
        with contextlib.suppress(TimeoutError):  # cut, it is never looked at again
            await asyncio.wait_for(held.looked_again.wait(), BOUND_S)
        assert store._replica is held and not held.conn.is_closed()
    finally:
        await store.close()


async def test_an_operation_queued_for_a_pooled_connection_waits_while_the_server_answers(
    pg_url: str,
) -> None:
    """Waiting for one of the pool's connections, all busy with slow queries on a server
    that answers, is not an outage: it waited out `connect_timeout` (asyncpg's `acquire`
    timeout) and ended as one (`StoreUnreachable`, a 503): 1,201 windows created at once
    on the 10 connections did so at load 40, the last ones queued past 10 s. The look
    (`LOOK_S`) ends such a wait when the server does not answer, as it ends a query's."""
    store = PostgresStore(pg_url, max_size=1, connect_timeout=1.0, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    try:

        async def slow() -> list[tuple[object, ...]]:
            async with store._read() as db:
                return [tuple(row) for row in await db.fetch("SELECT 1 FROM pg_sleep(3)")]

        holding = asyncio.create_task(slow())
        await asyncio.sleep(0.5)  # the one connection is the slow query's
        queued = await asyncio.gather(store.get_window("dep_none"), return_exceptions=True)
        assert list(queued) == [None]
        assert await holding == [(1,)]
    finally:
        await store.close()


async def test_the_replica_ids_session_the_agent_cut_is_not_another_agent_holding_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The keeper cuts the session holding the replica id once its look goes unanswered
    (here its backend stopped: a stuck server, a partition) and takes the id again on a
    new one; the session it cut, still the server's, held the id, and the agent said
    "held by another live agent … stop one of them", naming its own pid. It is its own
    session: ended, waited for, the id held again once it has ended, no error."""
    import logging

    from agent.store import postgres
    from tests.store.peek import replica_session_ended

    monkeypatch.setattr(postgres, "REPLICA_LOOK_S", 0.05)
    store = PostgresStore(pg_url, connect_timeout=STALL_TIMEOUT_S, command_timeout=LONG_TIMEOUT_S)
    await store.open()
    try:
        await store.hold_replica_id("a")
        cut = store._replica
        backend = cut.get_server_pid()
        with caplog.at_level(logging.ERROR, logger="postflight.store"):
            os.kill(backend, signal.SIGSTOP)
            try:
                async with asyncio.timeout(BOUND_S):
                    while store._replica is cut:  # noqa: ASYNC110 - its look went unanswered
                        await asyncio.sleep(0.05)
                await asyncio.sleep(4 * STALL_TIMEOUT_S)  # a few tries at the id meanwhile
                assert store._replica is None  # the stopped session holds it still
            finally:
                os.kill(backend, signal.SIGCONT)
            await replica_session_ended(pg_url, backend)
            async with asyncio.timeout(BOUND_S):
                while store._replica is None:  # noqa: ASYNC110 - the keeper's state
                    await asyncio.sleep(0.05)
        assert store._replica.get_server_pid() != backend
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert said == [], said
    finally:
        await store.close()


async def test_the_replica_id_taken_by_another_agent_while_cut_is_still_said(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of the test above: a session the server ended (a restart, a
    failover) and the id taken meanwhile by another agent is another agent's: said."""
    import logging

    from agent.store import postgres
    from tests.store.peek import replica_session_ended

    stores = [PostgresStore(pg_url) for _ in range(2)]
    try:
        await stores[0].hold_replica_id("a")
        keeper = stores[0]._replica_keeper
        assert keeper is not None
        keeper.cancel()  # not looking while the scene is set
        await asyncio.gather(keeper, return_exceptions=True)
        with caplog.at_level(logging.ERROR, logger="postflight.store"):
            await replica_session_ended(pg_url, stores[0]._replica.get_server_pid())
            assert await stores[1].hold_replica_id("a") == "a"
            monkeypatch.setattr(postgres, "REPLICA_LOOK_S", 0.05)
            stores[0]._replica_keeper = asyncio.create_task(stores[0]._keep_replica_id("a"))
            async with asyncio.timeout(BOUND_S):
                while not caplog.records:  # noqa: ASYNC110 - the keeper's log
                    await asyncio.sleep(0.05)
        said = caplog.records[0].getMessage()
        assert "is held by another live agent" in said and "stop one of them" in said, said
    finally:
        for store in stores:
            await store.close()

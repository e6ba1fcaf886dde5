"""An agent (re)started while its PostgreSQL takes no writes (a failover reaching the old
primary, now a standby) waits for it, as for one that does not answer: it exited 2 at
once ("cannot execute CREATE TABLE in a read-only transaction", the schema check's),
the code of a configuration to fix. Seen in `bench/ha_faults.py` (seed 302): a replica
killed and restarted during a read-only spell stayed down, its windows and any rollback
it was sending left to the others; a single agent's to nobody."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp import web

from agent.app import build_app, open_when_it_answers
from agent.settings_file import load_settings_text
from agent.store.postgres import PostgresStore, ReplicaIdInUse
from tests.pg import PgCluster
from tests.rollback.test_rollback_outcome_kept import Failover

pytestmark = pytest.mark.timeout(60)


async def opening_once_it_waits(
    store: PostgresStore, stopping: asyncio.Event
) -> asyncio.Task[None]:
    """`open_when_it_answers(store, stopping)` started, once it has said it waits (its
    `waiting`), not failed: where a test slept 1.5 s to see it still running."""
    said = asyncio.Event()

    async def waiting() -> None:
        said.set()

    opening = asyncio.create_task(open_when_it_answers(store, stopping, waiting))
    heard = asyncio.create_task(said.wait())
    await asyncio.wait({opening, heard}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    heard.cancel()
    if not said.is_set() or opening.done():
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        if opening.done() and not opening.cancelled():
            opening.result()  # its failure, said as the test's
        pytest.fail(f"it did not wait (said: {said.is_set()}; ended: {opening.done()})")
    return opening


async def test_a_start_while_postgresql_is_read_only_waits_and_opens_once_it_takes_writes(
    pg_cluster: PgCluster,
) -> None:
    failover = Failover(pg_cluster)
    await failover.create()
    first = PostgresStore(failover.url)
    await first.open()  # the schema is there: a restart, not a first start
    await first.close()
    await failover.read_only()

    store = PostgresStore(failover.url)
    stopping = asyncio.Event()
    opening = await opening_once_it_waits(store, stopping)
    try:
        await failover.back()
        await asyncio.wait_for(opening, 20)
        assert await store.ping()
    finally:
        stopping.set()
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        await store.close()


class _CutDuringSchemaCheck(PostgresStore):
    """A store whose first schema check loses its connection mid-transaction, as when a
    failover's `back()` cut the sessions while `open()` ran (CI, stop 43: the agent
    failed with "cannot call Transaction.__aexit__(): the underlying connection is
    closed", a StoreError, where it should have waited and opened)."""

    cuts = 1

    async def _migrate(self) -> None:
        if self.cuts:
            self.cuts -= 1
            async with self._tx() as db:
                await db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        await super()._migrate()


class _CutBeforeSchemaCheck(PostgresStore):
    """A store whose first schema check runs on a connection the server cut after it was
    handed out, the cut already seen by asyncpg (a failover's sessions cut as `open()`
    took its connection): asyncpg refuses the query with a bare InterfaceError ("cannot
    call Connection.fetchval(): connection has been released back to the pool"), with no
    cut in its chain."""

    cuts = 1

    async def _migrate(self) -> None:
        if self.cuts:
            self.cuts -= 1
            async with self._connection() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _: closed.set())
                admin = await asyncpg.connect(self.url, timeout=10)
                try:
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await admin.close()
                await asyncio.wait_for(closed.wait(), 10)  # asyncpg has seen the cut
                await conn.fetchval("SELECT 1")
        await super()._migrate()


@pytest.mark.parametrize("kind", [_CutDuringSchemaCheck, _CutBeforeSchemaCheck])
async def test_a_connection_cut_at_the_schema_check_is_waited_out(
    pg_cluster: PgCluster, kind: type[_CutDuringSchemaCheck | _CutBeforeSchemaCheck]
) -> None:
    failover = Failover(pg_cluster)
    await failover.create()
    store = kind(failover.url)
    try:
        await asyncio.wait_for(open_when_it_answers(store, asyncio.Event()), 20)
        assert store.cuts == 0  # the cut happened, and was waited out
        assert await store.ping()
    finally:
        await store.close()


class _CutWhileHoldingReplicaId(PostgresStore):
    """A store whose first hold of the replica id loses its session to the server, as a
    connection cut (`pg_terminate_backend`, a failover) just after `open()` did: the
    agent exited 2 ("cannot reach PostgreSQL store …: terminating connection due to
    administrator command"; `bench/ha_faults.py`, a replica restarted during a cut)."""

    cuts = 1

    async def _take_replica_id(self, replica_id: str, cut: int | None = None) -> None:
        if self.cuts:
            self.cuts -= 1
            conn = await asyncpg.connect(self.url, timeout=10)
            try:
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            except asyncpg.PostgresError as exc:
                conn.terminate()
                self._unavailable(exc, "cannot reach", lost=True)
        await super()._take_replica_id(replica_id, cut)


async def test_a_connection_cut_while_the_agent_takes_its_replica_id_is_waited_out(
    pg_cluster: PgCluster,
) -> None:
    """The agent's start (its store's set-up, as `postflight run` runs it) waits the cut
    out and holds its id, where it raised the StoreUnreachable that exits 2."""
    failover = Failover(pg_cluster)
    await failover.create()
    store = _CutWhileHoldingReplicaId(failover.url)
    config = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "{failover.url}"}}
environments:
  production: {{base_url: "http://127.0.0.1:9", background_interval: 1h}}
"""
    app = build_app(load_settings_text(config), store=store, owner="web-1")
    runner = web.AppRunner(app)
    try:
        await asyncio.wait_for(runner.setup(), 20)
        assert store.cuts == 0  # cut, and waited out
        assert await store.ping()
        # held on the server: a second agent under the id is refused
        other = PostgresStore(failover.url)
        await other.open()
        try:
            with pytest.raises(ReplicaIdInUse):
                await other.hold_replica_id("web-1")
        finally:
            await other.close()
    finally:
        await runner.cleanup()

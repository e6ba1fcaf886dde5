"""A store's tables seen (and, to set a scene, changed) from outside the agent, on a
connection of the test's own.

What a test checks against (delivery audit rows, …) comes from here, not from a method
the product would carry only for its tests.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any

from agent.records import DeliveryAttempt, RollbackIntent
from agent.store.base import Store
from agent.store.sqlite import SqliteStore


async def rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """`sql` (with `?` placeholders) on the store's database, committed."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db:
            found = list(db.execute(sql, args).fetchall())
            db.commit()
            return found
    import asyncpg

    from agent.store.postgres import PostgresStore, numbered

    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store.url)
    try:
        return [tuple(r) for r in await conn.fetch(numbered(sql), *args)]
    finally:
        await conn.close()


async def deliveries(store: Store, window_id: str) -> list[DeliveryAttempt]:
    """The stored delivery attempts of one rollback, in attempt order."""
    found = await rows(
        store,
        "SELECT window_id, attempt, at, status, error, duration_s FROM deliveries"
        " WHERE window_id = ? ORDER BY attempt",
        window_id,
    )
    return [DeliveryAttempt(*r) for r in found]


async def set_rollback(store: Store, intent: RollbackIntent) -> None:
    """Put a stored rollback where a scene needs it (a delivery that happened before, a
    crash after two attempts); `delivered` moves the window to `rolled_back` too."""
    await rows(
        store,
        "UPDATE rollbacks SET state = ?, attempts = ?, last_status = ?, last_error = ?,"
        " next_attempt_at = ?, finished_at = ? WHERE window_id = ?",
        intent.state,
        intent.attempts,
        intent.last_status,
        intent.last_error,
        intent.next_attempt_at,
        intent.finished_at,
        intent.window_id,
    )
    if intent.state == "delivered":
        await rows(
            store,
            "UPDATE windows SET state = 'rolled_back' WHERE id = ? AND state = 'failed'",
            intent.window_id,
        )


async def killed(store: Store) -> None:
    """What kill -9 leaves of `store`'s process: the lock holding its replica id (SQLite:
    the file's `flock`; PostgreSQL: the id's session) let go, and nothing written."""
    held: Any = store
    if getattr(held, "_replica_keeper", None) is not None:
        held._replica_keeper.cancel()
        held._replica_keeper = None
        pid = held._replica.get_server_pid()
        held._replica.terminate()
        held._replica = None
        await replica_session_ended(held.url, pid)
    elif getattr(held, "_agent_lock", None) is not None:
        os.close(held._agent_lock)
        held._agent_lock = None


async def replica_session_ended(url: str, pid: int) -> None:
    """Returns once the session `pid` on the PostgreSQL at `url` (one that held a
    replica id) has ended, its locks let go. A session dropped (`terminate`, `close`,
    kill -9) ends as the server gets round to it, not when the call returns: a test
    taking its id again at once was refused (`ReplicaIdInUse`, 1 run in 100 under load).
    Waits on the server (`pg_terminate_backend`'s wait for the process to end), taking
    no lock a replica may be taking meanwhile."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
        left = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
        assert left == 0, f"session {pid} still there 10 s after it was dropped"
    finally:
        await conn.close()

"""Reading a store's tables from outside the agent, on a connection of the test's own.

What a test checks against (delivery audit rows, …) comes from here, not from a method
the product would carry only for its tests.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

from agent.records import DeliveryAttempt
from agent.store.base import Store
from agent.store.sqlite import SqliteStore


async def rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """`sql` (with `?` placeholders) on the store's database."""
    if isinstance(store, SqliteStore):
        with closing(sqlite3.connect(store.path)) as db:
            return list(db.execute(sql, args).fetchall())
    import asyncpg  # type: ignore[import-untyped]

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

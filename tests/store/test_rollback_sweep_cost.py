"""The survivor's sweep (`Store.pending_rollbacks`, each supervisor turn, about once a
second) reads the unfinished rollbacks only, not every rollback ever stored: finished
ones stay with their windows (the deploy object shows them, contract §2) and, before,
each sweep read all of them, a few more with every failed deploy, for good.

Counted in the store's own work: SQLite's virtual-machine steps (a progress handler on
the reading connection) and the rows PostgreSQL's plan reads (EXPLAIN ANALYZE), never
time."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from agent.store.base import Store
from agent.store.sql import PENDING_ROLLBACKS
from agent.store.sqlite import SqliteStore
from tests.store.peek import rows

FEW, MANY = 10, 5000


async def with_rollbacks(store: Store, finished: int) -> None:
    """`finished` windows whose rollbacks ended (delivered), then two pending ones."""
    series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
    await rows(
        store,
        f"{series} INSERT INTO windows (id, environment, version, labels, state,"
        " deployed_at, ends_at, created_at, ended_at)"
        " SELECT 'dep_' || i, 'web', 'v1', '{}', 'rolled_back', i, i + 60, i, i + 30"
        " FROM n",
        finished + 2,
    )
    await rows(
        store,
        f"{series} INSERT INTO rollbacks (window_id, state, body, requested_at, attempts,"
        " last_status, finished_at)"
        " SELECT 'dep_' || i, 'delivered', '{\"event\":\"rollback\"}', i + 30, 1, 200, i + 31"
        " FROM n",
        finished,
    )
    for i in (finished + 1, finished + 2):
        await rows(
            store,
            "INSERT INTO rollbacks (window_id, state, body, requested_at)"
            " VALUES (?, 'pending', '{}', ?)",
            f"dep_{i}",
            float(i),
        )


async def sqlite_steps(store: SqliteStore, work: Callable[[], Awaitable[object]]) -> int:
    """SQLite's virtual-machine steps (in tens) that `work` took on the reading connections."""
    readers = list(store._readers)
    assert readers
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    for reader in readers:
        await reader.set_progress_handler(count, 10)
    try:
        await work()
    finally:
        for reader in readers:
            await reader.set_progress_handler(cast(Any, None), 10)  # none
    assert store._readers == readers  # no reader opened meanwhile, uncounted
    return counted[0]


def rows_read(plan: dict[str, Any], relation: str = "rollbacks") -> int:
    """Rows the plan's nodes on `relation` read: kept, and thrown away by a filter."""
    read = 0
    if plan.get("Relation Name") == relation:
        read += plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)
        read += plan.get("Rows Removed by Index Recheck", 0)
    return read + sum(rows_read(p, relation) for p in plan.get("Plans", ()))


async def postgres_rows_read(store: Store) -> int:
    # as autovacuum would have: a planner without statistics guesses
    await rows(store, "ANALYZE rollbacks")
    found = await rows(store, f"EXPLAIN (ANALYZE, FORMAT JSON) {PENDING_ROLLBACKS}")
    plan = found[0][0]
    return rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])


@contextlib.asynccontextmanager
async def emptied(backend: Any) -> AsyncIterator[Store]:
    """A store of `backend`, open, with no window and no rollback in it."""
    store: Store = backend.make()
    await store.open()
    try:
        await rows(store, "DELETE FROM rollbacks")
        await rows(store, "DELETE FROM windows")
        yield store
    finally:
        await store.close()


async def test_the_sweep_reads_no_finished_rollback(backend: Any) -> None:
    cost = {}
    for name, finished in (("few", FEW), ("many", MANY)):
        async with emptied(backend) as store:
            await with_rollbacks(store, finished)
            pending = await store.pending_rollbacks()
            assert [i.window_id for i in pending] == [f"dep_{finished + 1}", f"dep_{finished + 2}"]
            if isinstance(store, SqliteStore):
                cost[name] = await sqlite_steps(store, store.pending_rollbacks)
            else:
                cost[name] = await postgres_rows_read(store)
    # 4,990 finished rollbacks more cost nothing; before, the sweep read each of them
    assert cost["many"] <= cost["few"] + 2, cost

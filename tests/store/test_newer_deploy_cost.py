"""A rollback waiting to retry looks for a newer deploy of its environment every second
(`Store.newer_deploy`, also `begin_attempt`'s guard): the look reads the environment's
windows deployed between the rollback's own deploy and now, not every window the
environment ever had, which it read before, a few more with every deploy, for good.

Counted in the store's own work: SQLite's virtual-machine steps (a progress handler on
the reading connection) and the rows PostgreSQL's plan reads (EXPLAIN ANALYZE), never
time; SQLite's plan is read too (EXPLAIN QUERY PLAN)."""

from __future__ import annotations

import functools
import json
import sqlite3
from contextlib import closing
from typing import Any

from agent.store.base import Store
from agent.store.sql import NEWER_DEPLOY, ROLLED_BACK_DEPLOY, newer_deploy_values
from agent.store.sqlite import SqliteStore
from tests.store.peek import rows
from tests.store.test_rollback_sweep_cost import emptied, rows_read, sqlite_steps

FEW, MANY = 10, 5000
BAD = "dep_bad"
NOW = 1_000_000.0


async def with_windows(store: Store, older: int) -> None:
    """`older` windows of the environment, deployed before the bad one, whose rollback
    is pending; none newer."""
    series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
    await rows(
        store,
        f"{series} INSERT INTO windows (id, environment, version, labels, state,"
        " deployed_at, ends_at, created_at, ended_at)"
        " SELECT 'dep_' || i, 'web', 'v1', '{}', 'passed', i, i + 60, i, i + 60 FROM n",
        older,
    )
    await rows(
        store,
        "INSERT INTO windows (id, environment, version, labels, state, deployed_at,"
        " ends_at, created_at, ended_at) VALUES (?, 'web', 'v2', '{}', 'failed', ?, ?, ?, ?)",
        BAD,
        NOW - 60,
        NOW + 540,
        NOW - 60,
        NOW - 30,
    )
    await rows(
        store,
        "INSERT INTO rollbacks (window_id, state, body, requested_at)"
        " VALUES (?, 'pending', '{}', ?)",
        BAD,
        NOW - 30,
    )


async def bound(store: Store) -> tuple[Any, ...]:
    """`NEWER_DEPLOY`'s values, as `Store.newer_deploy` binds them."""
    [ours] = await rows(store, ROLLED_BACK_DEPLOY, BAD)
    return newer_deploy_values(ours, NOW)


async def postgres_windows_read(store: Store) -> int:
    await rows(store, "ANALYZE windows")  # as autovacuum would have
    found = await rows(store, f"EXPLAIN (ANALYZE, FORMAT JSON) {NEWER_DEPLOY}", *await bound(store))
    plan = found[0][0]
    return rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"], "windows")


async def sqlite_plan(store: SqliteStore) -> list[str]:
    values = await bound(store)
    with closing(sqlite3.connect(store.path)) as db:
        return [str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {NEWER_DEPLOY}", values)]


async def test_the_look_for_a_newer_deploy_reads_only_the_windows_deployed_since(
    backend: Any,
) -> None:
    cost, plan = {}, ["(PostgreSQL)"]
    for name, older in (("few", FEW), ("many", MANY)):
        async with emptied(backend) as store:
            await with_windows(store, older)
            assert await store.newer_deploy(BAD, NOW) is None
            if isinstance(store, SqliteStore):
                look = functools.partial(store.newer_deploy, BAD, NOW)
                cost[name] = await sqlite_steps(store, look)
                plan = await sqlite_plan(store)
            else:
                cost[name] = await postgres_windows_read(store)
    # 4,990 older windows of the environment more cost nothing; before, each look read them
    assert cost["many"] <= cost["few"] + 2, cost
    if isinstance(store, SqliteStore):
        assert any("newer USING INDEX windows_by_env_deployed" in step for step in plan), plan

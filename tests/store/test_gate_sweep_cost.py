"""Retention's sweep of protection rules' requests, answered gates and idempotency keys
(`prune_gates`, `prune_idempotency`: once a minute, in a write transaction that every
round's store waits behind) reads what it deletes, not every row kept: requests and
answered gates are kept 90 days, and an idempotency key for each hook delivery (every
GitHub `deployment_status`, every Vercel event), and each pass read all of them.

Counted in the store's own work: SQLite's virtual-machine steps (a progress handler on
the writer) and the rows PostgreSQL's plan reads (EXPLAIN ANALYZE), never time."""

from __future__ import annotations

import json
from typing import Any

from agent.store.base import Store
from agent.store.sql import PRUNE_ANSWERED_GATES, PRUNE_GATE_REQUESTS, PRUNE_IDEMPOTENCY
from agent.store.sqlite import SqliteStore
from tests.store.peek import rows
from tests.store.test_prune_cost import steps

FEW, MANY = 10, 5000
CUTOFF = 1_000_000.0
SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"


async def kept(store: Store, recent: int) -> None:
    """`recent` requests, answered gates and idempotency keys newer than `CUTOFF` (kept),
    and two of each older (deleted)."""
    for old, count in ((False, recent), (True, 2)):
        at = "i" if old else f"{CUTOFF} + i"
        tag = "'old-' ||" if old else "'new-' ||"
        await rows(
            store,
            f"{SERIES} INSERT INTO gate_requests (request, callback_url, created_at)"
            f" SELECT {tag} i, 'https://api.github.test/runs/' || i, {at} FROM n",
            count,
        )
        await rows(
            store,
            f"{SERIES} INSERT INTO gates_by_environment (callback_url, github_environment,"
            " environment, sha, deadline, created_at, answer, result, answered_at)"
            f" SELECT {tag} i, 'Production', 'production', 'abc', {at} + 60, {at},"
            f" 'approved', 'delivered', {at} FROM n",
            count,
        )
        await rows(
            store,
            f"{SERIES} INSERT INTO idempotency (key, request_hash, status, body, created_at)"
            f" SELECT {tag} i, 'h', 202, '{{}}', {at} FROM n",
            count,
        )


def rows_read(plan: dict[str, Any], tables: tuple[str, ...]) -> int:
    """Rows the plan's nodes on `tables` read: kept, and thrown away by a filter."""
    read = 0
    if plan.get("Relation Name") in tables:
        read += plan["Actual Rows"] * plan.get("Actual Loops", 1)
        read += plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    return read + sum(rows_read(p, tables) for p in plan.get("Plans", ()))


async def postgres_rows_read(store: Store) -> int:
    """What the sweep's deletes read on PostgreSQL (EXPLAIN ANALYZE runs them)."""
    tables = ("gate_requests", "gates_by_environment", "idempotency")
    for table in tables:  # as autovacuum would have: a planner without statistics guesses
        await rows(store, f"ANALYZE {table}")
    read = 0
    for sql, args in (
        (PRUNE_GATE_REQUESTS, (CUTOFF,)),
        (PRUNE_ANSWERED_GATES.format(table="gates_by_environment"), (CUTOFF,)),
        (PRUNE_IDEMPOTENCY, (CUTOFF, CUTOFF, 5000)),
    ):
        found = await rows(store, f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        plan = found[0][0]
        read += rows_read((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"], tables)
    return read


async def test_the_gate_and_key_sweep_reads_no_row_it_keeps(backend: Any) -> None:
    cost = {}
    for name, recent in (("few", FEW), ("many", MANY)):
        store: Store = backend.make()
        await store.open()
        try:
            for table in ("gate_requests", "gates_by_environment", "idempotency"):
                await rows(store, f"DELETE FROM {table}")
            await kept(store, recent)
            if isinstance(store, SqliteStore):

                async def sweep(store: Store = store) -> None:
                    assert await store.prune_gates(CUTOFF) == 4  # two requests, two gates
                    assert await store.prune_idempotency(CUTOFF) == 2

                cost[name] = await steps(store, sweep)
            else:
                cost[name] = await postgres_rows_read(store)
            for table in ("gate_requests", "gates_by_environment", "idempotency"):
                assert await rows(store, f"SELECT COUNT(*) FROM {table}") == [(recent,)]
        finally:
            await store.close()
    # 14,970 rows more kept cost nothing; before, each pass read every one of them
    assert cost["many"] <= cost["few"] + 5, cost

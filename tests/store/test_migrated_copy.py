"""The PostgreSQL store tests' schemas are copies of one migrated once a process
(`PgCluster.create_migrated_database`): a copy must be what the store's own migrations
make on an empty schema, or those tests would test another store."""

from __future__ import annotations

import asyncio

from agent.store.postgres import PostgresStore
from tests.pg import PgCluster, _dump


def _schema(url: str) -> str:
    return url.rsplit("search_path=", 1)[1]


async def _as_dumped(cluster: PgCluster, schema: str) -> list[str]:
    """`schema`'s tables, indexes and rows as `pg_dump` writes them, its name left out
    (and psql's `\\restrict` lines, which carry a random key)."""
    dumped = await asyncio.to_thread(_dump, cluster, schema)
    return [
        line.replace(f'"{schema}"', "S").replace(schema, "S")
        for line in dumped.splitlines()
        if not line.startswith("\\")
    ]


async def test_a_migrated_copy_is_what_the_migrations_make(
    pg_cluster: PgCluster, pg_url: str
) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    copy = await pg_cluster.create_migrated_database()
    migrated = await _as_dumped(pg_cluster, _schema(pg_url))
    assert any(line.startswith("CREATE TABLE S.windows") for line in migrated), migrated
    assert await _as_dumped(pg_cluster, _schema(copy)) == migrated

"""Store fixtures: every contract test runs against SQLite and a real, throwaway PostgreSQL.

PostgreSQL is started once per session from the machine's server binaries (initdb,
pg_ctl, postgres), in a temporary directory, on a free port of 127.0.0.1 with trust
authentication, and torn down at the end. PostgreSQL refuses to run as root, so when the
tests run as root the cluster belongs to an unprivileged user (`postgres`, else `nobody`).
Each test gets a fresh database, so tests neither share state nor wait for each other.

Without the binaries the PostgreSQL half is skipped with the reason (and fails under
POSTFLIGHT_REQUIRE_ALL=1, see tests/conftest.py); SQLite tests never need them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from agent.store.base import Store
from agent.store.sqlite import SqliteStore
from tests.pg import PgCluster

# the contract: one suite, both backends ------------------------------------------


class Backend(Protocol):
    """How a contract test reaches its backend, beyond the Store protocol itself."""

    name: str

    def make(self) -> Store:
        """A new, unopened store on this test's database (a "restart" or a replica)."""
        ...

    async def set_schema_version(self, version: int) -> None: ...


@dataclass
class SqliteBackend:
    path: Path
    name: str = "sqlite"

    def make(self) -> Store:
        return SqliteStore(self.path)

    async def set_schema_version(self, version: int) -> None:
        db = sqlite3.connect(self.path)
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        db.commit()
        db.close()


@dataclass
class PostgresBackend:
    url: str
    name: str = "postgres"

    def make(self) -> Store:
        from agent.store.postgres import PostgresStore

        return PostgresStore(self.url)

    async def set_schema_version(self, version: int) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(
                "UPDATE meta SET value = $1 WHERE key = 'schema_version'", str(version)
            )
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "pf.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return PostgresBackend(await cluster.create_migrated_database())


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = backend.make()
    await s.open()
    yield s
    await s.close()

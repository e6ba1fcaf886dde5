"""The embedded store: SQLite in WAL mode through aiosqlite (one connection, its own thread).

Only what SQLite does its own way lives here: opening the file, and serialising every
transaction (`BEGIN IMMEDIATE` under one asyncio lock, so a crash leaves all of a change
or none of it). The schema and every method are `agent.store.sql`'s.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from agent.store.base import Conflict, StoreError
from agent.store.sql import SCHEMA_VERSION, Connection, SqlStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


@dataclass
class _Connection:
    """`agent.store.sql.Connection` on aiosqlite; a unique violation is a `Conflict`."""

    db: aiosqlite.Connection

    async def execute(self, sql: str, *args: Any) -> int:
        try:
            cursor = await self.db.execute(sql, args)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        return cursor.rowcount

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        cursor = await self.db.execute(sql, args)
        return list(await cursor.fetchall())


class SqliteStore(SqlStore):
    """`Store` on one SQLite file (WAL: readers never block the writer)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._lock_all = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(url.removeprefix("sqlite:///") or "postflight.db")

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=5000"):
                await self._db.execute(f"PRAGMA {pragma}")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
        except (sqlite3.Error, StoreError) as exc:
            await self.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> bool:
        try:
            return await self._fetchone("SELECT 1") is not None
        except (sqlite3.Error, StoreError, ValueError):
            return False

    async def _lock(self, db: Connection, namespace: int, key: str) -> None:
        """Nothing to take: one writer (`BEGIN IMMEDIATE`) already serialises every change."""

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Connection]:
        async with self._lock_all:
            if self._db is None:
                raise StoreError("the store is not open")
            yield _Connection(self._db)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Connection]:
        async with self._read() as db:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            else:
                await db.execute("COMMIT")

"""The embedded store: SQLite in WAL mode through aiosqlite (one connection, its own thread).

Only what SQLite does its own way lives here: opening the file, and serialising every
transaction (`BEGIN IMMEDIATE` under one asyncio lock, so a crash leaves all of a change
or none of it). The schema and every method are `agent.store.sql`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._group: asyncio.Future[None] | None = None
        """The open transaction changes join until it is committed (see `_tx`)."""
        self._committer: asyncio.Task[None] | None = None

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
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
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
        """One change, all or nothing, durable when the block is left.

        Group commit: changes that queue up while one is written share its transaction
        (each in a savepoint of its own, so one that fails is undone alone) and its one
        COMMIT, whose fsync is what a write costs. Every caller still returns only once
        its change is committed, so nothing is acted on before it is stored; with a
        round per window per second this is what keeps hundreds of windows on time."""
        async with self._read() as db:
            group = await self._join_group(db)
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK TO change")
                await db.execute("RELEASE change")
                raise
            else:
                await db.execute("RELEASE change")
        await asyncio.shield(group)

    async def _join_group(self, db: Connection) -> asyncio.Future[None]:
        """Open the group transaction if none is, and a savepoint for this change in it.
        A caller cancelled on the way in undoes what it started: aiosqlite runs a
        statement to its end in its own thread even when its awaiter is cancelled."""
        group = self._group
        try:
            if group is None:
                await db.execute("BEGIN IMMEDIATE")
                group = self._group = asyncio.get_running_loop().create_future()
                # queued now, the committer follows the changes already waiting
                self._committer = asyncio.create_task(self._commit_group())
            await db.execute("SAVEPOINT change")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if group is None:
                    await db.execute("ROLLBACK")
                else:
                    await db.execute("ROLLBACK TO change")
                    await db.execute("RELEASE change")
            raise
        return group

    async def _commit_group(self) -> None:
        async with self._read() as db:
            group, self._group = self._group, None
            if group is None:
                return
            try:
                await db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
                group.set_exception(StoreError(f"cannot commit to the SQLite store: {exc}"))
                if not isinstance(exc, Exception):
                    raise
            else:
                group.set_result(None)

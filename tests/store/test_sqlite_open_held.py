"""`run` waiting for a SQLite file another process holds tries to open it again and again
(`agent.app.open_when_it_answers`), and a stop is seen between two tries: each try waited
the whole `busy_timeout` (5 s) for the lock, so a stop took up to 5 s. A try after one that
found the file held waits `HELD_BUSY_TIMEOUT_MS`; the store, once open, waits 5 s again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from agent.store.base import StoreUnreachable
from agent.store.sqlite import BUSY_TIMEOUT_MS, HELD_BUSY_TIMEOUT_MS, SqliteStore


async def test_a_try_after_the_file_was_found_held_waits_briefly_for_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "postflight.db"
    waits: list[float] = []  # each connection's wait for the lock, as SQLite is told it
    execute = aiosqlite.Connection.execute

    async def recorded(self: aiosqlite.Connection, sql: str, *args: Any) -> Any:
        if sql.startswith("PRAGMA busy_timeout="):
            waits.append(int(sql.partition("=")[2]) / 1000)
        return await execute(self, sql, *args)

    connect = aiosqlite.connect

    def connecting(database: Any, **kwargs: Any) -> Any:
        waits.append(kwargs.get("timeout", 5.0))  # sqlite3's own default: 5 s
        return connect(database, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "execute", recorded)
    monkeypatch.setattr("agent.store.sqlite.aiosqlite.connect", connecting)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    store = SqliteStore(str(path))
    try:
        with pytest.raises(StoreUnreachable):
            await store.open()
        assert max(waits) == BUSY_TIMEOUT_MS / 1000, waits  # the first try: 5 s
        waits.clear()
        with pytest.raises(StoreUnreachable):
            await store.open()
        assert waits and max(waits) == HELD_BUSY_TIMEOUT_MS / 1000, waits
        holder.execute("COMMIT")
        waits.clear()
        await store.open()
        assert store._db is not None
        cursor = await store._db.execute("PRAGMA busy_timeout")
        assert await cursor.fetchone() == (BUSY_TIMEOUT_MS,)  # open: 5 s again
        assert len(store._readers) == 1  # the first reader opens with the store
        cursor = await store._readers[0].execute("PRAGMA busy_timeout")
        assert await cursor.fetchone() == (BUSY_TIMEOUT_MS,)
    finally:
        holder.close()
        await store.close()

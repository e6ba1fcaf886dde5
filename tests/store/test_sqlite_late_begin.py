"""A watch's batch waiting behind a change whose `BEGIN IMMEDIATE` SQLite already ran, its
answer read late by a stalled event loop, is not told the file is held by another process:
on the real daemon at load 27 (2 cores) it was (`SQLite: database is locked (another process
holds the file's write lock)`), and the watch's rounds and their rollbacks waited 20.9 s for
a file nothing else had open. A BEGIN SQLite has not begun within the wait is still held."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.records import RoundRecord
from agent.store.base import StoreHeld
from agent.store.sqlite import WATCH_BUSY_TIMEOUT_MS, SqliteStore
from tests.store.test_sqlite_busy_timeout import window

pytestmark = pytest.mark.timeout(20)

LATE_S = 3 * WATCH_BUSY_TIMEOUT_MS / 1000
"""How late the loop reads the BEGIN's answer: past a watch's wait for the writer."""


async def test_a_begin_answered_late_by_the_loop_is_not_a_file_held_elsewhere(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "late.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        [w] = await store.claim_windows("me", 0.0, 1e12)
        assert store._db is not None
        execute = store._db.execute
        late = asyncio.Event()

        async def read_late(sql: str, *args: Any, **kwargs: Any) -> Any:
            answer = await execute(sql, *args, **kwargs)  # SQLite's thread ran it
            if sql == "BEGIN IMMEDIATE" and not late.is_set():
                late.set()
                await asyncio.sleep(LATE_S)  # its answer read late, as a late loop does
            return answer

        store._db.execute = read_late  # type: ignore[method-assign,assignment]
        api_change = asyncio.create_task(store.create_window(window("dep_1")))
        await late.wait()
        stored = await store.record_round(RoundRecord("dep_0", 1, 1.0, {}), None, w.fence)
        assert stored is True
        await api_change
    finally:
        await store.close()


async def test_a_begin_sqlite_waits_on_for_another_process_is_still_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "held.db"
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        [w] = await store.claim_windows("me", 0.0, 1e12)
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")  # an operator's sqlite3 holding the file
            api_change = asyncio.create_task(store.create_window(window("dep_1")))
            await asyncio.sleep(0.05)  # it waits in BEGIN IMMEDIATE, holding the writer
            with pytest.raises(StoreHeld, match="another process holds"):
                await store.record_round(RoundRecord("dep_0", 1, 1.0, {}), None, w.fence)
            other.execute("COMMIT")
        await api_change
    finally:
        await store.close()

"""SQLite-only checks; the behaviour every backend shares is in test_store_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from agent.store.base import StoreError
from agent.store.sql import MIGRATIONS
from agent.store.sqlite import HELD_BUSY_TIMEOUT_MS, SCHEMA_VERSION, SqliteStore
from tests.store.test_sqlite_group_commit import window


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "pf.db")
    await s.open()
    yield s
    await s.close()


async def test_uses_wal_and_records_schema_version(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    rows = sqlite3.connect(tmp_path / "pf.db").execute("PRAGMA journal_mode").fetchall()
    assert rows[0][0] == "wal"
    version = (
        sqlite3.connect(tmp_path / "pf.db")
        .execute("SELECT value FROM meta WHERE key='schema_version'")
        .fetchone()
    )
    assert int(version[0]) == SCHEMA_VERSION


async def test_a_refused_open_leaves_the_store_closed(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "pf.db")
    await s.open()
    await s.close()
    db = sqlite3.connect(tmp_path / "pf.db")
    db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    refused = SqliteStore(tmp_path / "pf.db")
    with pytest.raises(StoreError, match="newer"):
        await refused.open()
    assert not await refused.ping()


async def test_a_store_that_cannot_be_opened_leaves_no_thread_behind(tmp_path: Path) -> None:
    """aiosqlite stops its thread after a failed connect without waiting for it: the
    thread then told a loop `run` had closed meanwhile, and its traceback (`Event loop is
    closed`) came before the store error on stderr, one exit 2 in two."""
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await SqliteStore(tmp_path).open()  # a directory
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    assert workers == []


async def test_a_store_from_before_fingerprints_keeps_its_runs_unmatched(tmp_path: Path) -> None:
    """The migration adds the column; runs stored before it stay, with no fingerprint,
    so a baseline asking for its checks' fingerprints leaves them out."""
    s = SqliteStore(tmp_path / "pf.db")
    await s.open()
    await s.close()
    db = sqlite3.connect(tmp_path / "pf.db")
    # the store as it was before the fingerprint's migration (and the thirteen after it)
    before = next(i for i, m in enumerate(MIGRATIONS) if "fingerprint" in m)
    db.execute("ALTER TABLE probe_summaries DROP COLUMN fingerprint")
    db.execute("DROP INDEX windows_by_env_version")
    db.execute("DROP INDEX windows_by_env_commit")
    db.execute("DROP INDEX alerts_retry_due")
    db.execute("ALTER TABLE alerts DROP COLUMN retry_at")
    db.execute("ALTER TABLE alerts DROP COLUMN retries")
    db.execute("DROP TABLE background_leases")
    db.execute("DROP INDEX windows_ended")
    db.execute("DROP INDEX rollbacks_pending")
    db.execute("ALTER TABLE alerts DROP COLUMN attempts")
    db.execute("DROP TABLE gate_requests")
    db.execute("DROP TABLE gates_by_environment")
    db.execute("DROP INDEX idempotency_by_created")  # gate_requests' went with its table
    db.execute("ALTER TABLE alerts DROP COLUMN claimed_by")
    db.execute("ALTER TABLE alerts DROP COLUMN claimed_run")
    # (gates_by_environment's claimer columns went with its table)
    db.execute("ALTER TABLE rollbacks DROP COLUMN look_ups")
    db.execute("DROP INDEX windows_by_env_deployed")
    db.execute("DROP INDEX windows_by_env_registered")
    db.execute("ALTER TABLE windows DROP COLUMN registered")
    db.execute("ALTER TABLE rollbacks DROP COLUMN requested_after")
    assert before == SCHEMA_VERSION - 15, "a migration after these fifteen: undo it here too"
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (before,))
    db.execute(
        "INSERT INTO probe_summaries (environment, check_name, at, summary)"
        " VALUES ('production', 'api', 10.0, '{\"ok\": [0]}')"
    )
    db.commit()
    db.close()
    upgraded = SqliteStore(tmp_path / "pf.db")
    await upgraded.open()
    try:
        assert await upgraded.probe_summaries("production", 0, 100) == [("api", 10.0, {"ok": [0]})]
        assert await upgraded.probe_summaries("production", 0, 100, ["fp"]) == []
        with closing(sqlite3.connect(tmp_path / "pf.db")) as db:
            indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        made = {"windows_ended", "rollbacks_pending", "idempotency_by_created"}
        assert made | {"windows_by_env_deployed"} <= indexes
    finally:
        await upgraded.close()


async def busy_timeout(store: SqliteStore) -> int:
    assert store._db is not None
    [(timeout,)] = await (await store._db.execute("PRAGMA busy_timeout")).fetchall()
    return int(timeout)


async def test_changes_queued_behind_a_file_held_elsewhere_fail_after_one_busy_timeout(
    tmp_path: Path,
) -> None:
    """An operator's `sqlite3 postflight.db` left in `BEGIN EXCLUSIVE` beside a live agent:
    each change queued on the one writer waited the whole `busy_timeout` in turn, and a
    registration behind the watcher's rounds and claims got its 503 after 21 s (a live
    audit), past a pipeline's timeout. Now the first waits it, those behind it fail at
    once while the file is held, and the first change after it is released waits in full
    again."""
    store = SqliteStore(tmp_path / "held.db")
    store.busy_timeout_ms = 1000
    await store.open()
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        changes = [store.create_window(window(f"dep_{i}")) for i in range(6)]
        results = await asyncio.gather(*changes, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results), results
        # how long each waits, as SQLite is told (not a wall-clock figure, which a loaded
        # machine moves): the first the full busy_timeout, those behind it 100 ms
        assert await busy_timeout(store) == HELD_BUSY_TIMEOUT_MS
        holder.execute("ROLLBACK")
        await store.create_window(window("dep_after"))
        assert await busy_timeout(store) == store.busy_timeout_ms
    finally:
        holder.close()
        await store.close()


async def test_a_group_left_without_its_connection_still_tells_its_changes(
    tmp_path: Path,
) -> None:
    """Every change of a group waits on its future until the committer settles it. The
    committer took the connection through `_read`, and when that failed (the store closed
    under a pending group; in the outage tests, a store made not to answer) the future was
    never settled and its changes waited for good: the watcher's claim hung for 10 s."""
    store = SqliteStore(tmp_path / "pf.db")
    await store.open()
    group = asyncio.get_running_loop().create_future()
    store._group = group
    db, store._db = store._db, None  # closed under it
    try:
        await store._commit_group()
        assert group.done()
        with pytest.raises(StoreError, match="not open"):
            group.result()
    finally:
        store._db = db
        await store.close()

"""SQLite-only checks; the behaviour every backend shares is in test_store_contract.py."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.store.base import StoreError
from agent.store.sql import MIGRATIONS
from agent.store.sqlite import SCHEMA_VERSION, SqliteStore


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


async def test_a_store_from_before_fingerprints_keeps_its_runs_unmatched(tmp_path: Path) -> None:
    """The migration adds the column; runs stored before it stay, with no fingerprint,
    so a baseline asking for its checks' fingerprints leaves them out."""
    s = SqliteStore(tmp_path / "pf.db")
    await s.open()
    await s.close()
    db = sqlite3.connect(tmp_path / "pf.db")
    # the store as it was before the fingerprint's migration (and the three after it)
    before = next(i for i, m in enumerate(MIGRATIONS) if "fingerprint" in m)
    db.execute("ALTER TABLE probe_summaries DROP COLUMN fingerprint")
    db.execute("DROP INDEX windows_by_env_version")
    db.execute("DROP INDEX windows_by_env_commit")
    db.execute("DROP INDEX alerts_retry_due")
    db.execute("ALTER TABLE alerts DROP COLUMN retry_at")
    db.execute("ALTER TABLE alerts DROP COLUMN retries")
    db.execute("DROP TABLE background_leases")
    assert before == SCHEMA_VERSION - 4, "a migration after these four: undo it here too"
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
    finally:
        await upgraded.close()

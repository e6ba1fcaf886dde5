"""A group of changes SQLite undoes itself (SQLITE_FULL on a statement rolls the whole
transaction back, as SQLITE_IOERR may): every change of it is told it failed as the file's
refusal for now (`StoreHeld`, its cause said), none stored. Before, the failing change's
`ROLLBACK TO` raised a bare `no such savepoint: change` (a watch's round not kept, an API
change a 500) and the others `cannot commit - no transaction is active`, the cause lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.records import DeployWindow, RoundRecord
from agent.store.base import StoreHeld
from agent.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(10)


def window(wid: str, now: float) -> DeployWindow:
    return DeployWindow(wid, wid, "v1", None, None, {}, "watching", now, now + 600, 0.0)


async def test_a_group_sqlite_undid_for_a_full_disk_fails_whole_as_the_files_refusal(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    now = time.time()
    try:
        await store.create_window(window("dep_b", now))
        (claimed,) = await store.claim_windows("test", now, 60.0)
        writer = store._db  # the page limit is the writer connection's own
        assert writer is not None
        row = await (await writer.execute("PRAGMA page_count")).fetchone()
        assert row is not None
        await writer.execute(f"PRAGMA max_page_count = {row[0] + 20}")  # ~80 KB more at most
        big = RoundRecord("dep_b", 1, now, {"checks": "x" * 400_000})
        told = await asyncio.gather(  # one group: each joins it while it is open
            store.create_window(window("dep_x", now)),
            store.record_round(big, None, claimed.fence),
            store.create_window(window("dep_y", now)),
            return_exceptions=True,
        )
        assert [type(t) for t in told] == [StoreHeld] * 3, told
        assert {t.why for t in told if isinstance(t, StoreHeld)} == {
            "the SQLite file's disk is full"
        }
        assert await store.rounds("dep_b") == []
        assert [await store.get_window(w) for w in ("dep_x", "dep_y")] == [None, None]
        await writer.execute("PRAGMA max_page_count = 1000000")  # space again: all go in
        await store.create_window(window("dep_x", now))
        assert await store.record_round(big, None, claimed.fence) is True
        assert [r.number for r in await store.rounds("dep_b")] == [1]
    finally:
        await store.close()

"""SQLite reads outside a transaction go to a second connection: a read never waits behind
the writer (a change being written, a group's commit), and it sees only committed changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.records import DeployWindow
from agent.store.sqlite import SqliteStore


def window(wid: str, version: str = "v1") -> DeployWindow:
    return DeployWindow(wid, f"env-{wid}", version, None, None, {}, "watching", 0.0, 60.0, 0.0)


async def test_a_read_goes_on_while_a_change_holds_the_writer_and_sees_only_commits(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        async with store._tx() as db:  # the writer is held until the block is left
            await db.execute("UPDATE windows SET version = 'v2' WHERE id = 'dep_0'")
            # one connection: this read would wait for the block to end, which never would
            during = await asyncio.wait_for(store.get_window("dep_0"), timeout=5.0)
            assert during is not None and during.version == "v1"  # not committed yet
        after = await store.get_window("dep_0")
        assert after is not None and after.version == "v2"  # committed when the block ended
        await store.create_window(window("dep_1"))
        assert [w.id for w in await store.get_windows(["dep_0", "dep_1"])] == ["dep_0", "dep_1"]
    finally:
        await store.close()


async def test_an_in_memory_store_reads_its_own_connection() -> None:
    store = SqliteStore(":memory:")  # a second connection would be another, empty store
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        found = await store.get_window("dep_0")
        assert found is not None and found.id == "dep_0"
        assert await store.ping()
    finally:
        await store.close()

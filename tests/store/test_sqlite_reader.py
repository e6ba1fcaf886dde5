"""SQLite reads outside a transaction go to connections of their own: a read never waits
behind the writer (a change being written, a group's commit), nor behind another read
still running, and it sees only committed changes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from agent.records import DeployWindow
from agent.store import sqlite
from agent.store.base import StoreError
from agent.store.sqlite import READERS, SqliteStore


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


class HeldReads:
    """`SELECT held()` on any of a store's connections runs until `release` is set: a
    slow read (a page's rounds, a long list) held open as long as a test wants."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self.running = 0
        self.changed = threading.Condition()
        self.release = threading.Event()

    def held(self) -> int:
        with self.changed:
            self.running += 1
            self.changed.notify_all()
        try:
            self.release.wait(30.0)
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()
        return 1

    def hold(self, store: SqliteStore) -> None:
        """One more read held open on `store`, as a task (`tasks`)."""
        self.tasks.append(asyncio.create_task(store._fetchall("SELECT held()")))

    async def until_running(self, count: int) -> None:
        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(lambda: self.running == count, 10.0)

        assert await asyncio.to_thread(wait), f"{self.running} reads running, not {count}"

    def on_every_connection(self, monkeypatch: pytest.MonkeyPatch) -> None:
        connect = sqlite._connected

        async def connected(path: str, *args: Any) -> aiosqlite.Connection:
            connection = await connect(path, *args)
            await connection.create_function("held", 0, self.held)
            return connection

        monkeypatch.setattr(sqlite, "_connected", connected)


@pytest.fixture
async def held_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[SqliteStore, HeldReads]]:
    """A store holding one window, `dep_0`, whose connections answer `SELECT held()`;
    every held read let go and the store closed at the end."""
    reads = HeldReads()
    reads.on_every_connection(monkeypatch)
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        yield store, reads
    finally:
        reads.release.set()
        await asyncio.gather(*reads.tasks, return_exceptions=True)
        await store.close()


async def test_reads_held_open_hold_up_no_other_read_up_to_the_readers(
    held_store: tuple[SqliteStore, HeldReads],
) -> None:
    """Failed before (one reader behind one lock): the second held read waited for the
    first to end ("1 reads running, not 2"), as a page's read queued behind every read
    before it."""
    store, reads = held_store
    for n in range(1, READERS):  # all but one reader held, each by a read of its own
        reads.hold(store)
        await reads.until_running(n)
    found = await asyncio.wait_for(store.get_window("dep_0"), timeout=5.0)
    assert found is not None and found.id == "dep_0"
    reads.hold(store)
    await reads.until_running(READERS)  # every reader running a read at once
    late = asyncio.create_task(store.get_window("dep_0"))  # one more waits for a reader
    await asyncio.sleep(0.2)
    assert not late.done()
    assert len(store._readers) == READERS  # the readers are opened as reads overlap
    reads.release.set()
    assert await asyncio.wait_for(asyncio.gather(*reads.tasks), 10.0) == [[(1,)]] * READERS
    found = await asyncio.wait_for(late, timeout=5.0)
    assert found is not None and found.id == "dep_0"
    await store.close()
    assert store._readers == []


async def test_a_reader_that_cannot_open_is_a_store_error_and_the_others_read_on(
    held_store: tuple[SqliteStore, HeldReads], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader opened as reads overlap, on a file it cannot open now (no descriptor
    left, say): the read is told a `StoreError` (the API's 503), not a bare sqlite3 error
    (a 500), and the reader already open reads on."""
    store, reads = held_store
    reads.hold(store)
    await reads.until_running(1)

    async def refused(path: str, *args: Any) -> aiosqlite.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite, "_connected", refused)
    with pytest.raises(StoreError, match="cannot open a reader"):
        await store.get_window("dep_0")
    reads.release.set()
    assert await asyncio.wait_for(reads.tasks[0], 10.0) == [(1,)]
    found = await asyncio.wait_for(store.get_window("dep_0"), timeout=5.0)
    assert found is not None and found.id == "dep_0"

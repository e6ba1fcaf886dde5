"""A stop gives up the background leases (`BackgroundProber.release`) only after it
stopped the windows, and within `RELEASE_TIMEOUT_S`: a store that does not answer (a
partitioned PostgreSQL: asyncpg waits up to its 10 s connect and 30 s command timeouts)
held every window's watch running past `server.shutdown_timeout` (at most 10 s, the
contract's bound). The release is best effort: a lease not given up lapses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from agent.records import Fence
from agent.store.sqlite import SqliteStore
from tests.rollback.support import make_window
from tests.test_watcher_claims import quiet_watcher


class Partitioned(SqliteStore):
    """Shared like PostgreSQL's; once `cut`, giving up the leases never gets an answer."""

    shared = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.cut = False

    async def release_background(self, owner: str) -> None:
        if self.cut:
            await asyncio.Event().wait()
        await super().release_background(owner)

    async def release_leases(self, leases: Sequence[tuple[str, Fence]]) -> None:
        if self.cut:
            await asyncio.Event().wait()
        await super().release_leases(leases)


async def test_a_store_that_cannot_answer_the_release_does_not_hold_the_windows_stop(
    tmp_path: Path,
) -> None:
    store = Partitioned(tmp_path / "postflight.db")
    await store.open()
    watcher = quiet_watcher(store, poll_interval=0.05)
    t0 = time.time()
    await store.create_window(make_window("w1", deployed_at=t0, ends_at=t0 + 600, created_at=t0))
    running = asyncio.create_task(watcher.run())
    try:
        for _ in range(200):
            if "w1" in watcher.tasks:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the window was never watched")
        watch = watcher.tasks["w1"]
        store.cut = True
        running.cancel()
        for _ in range(300):  # 3 s: well within any shutdown_timeout
            if watch.done():
                break
            await asyncio.sleep(0.01)
        assert watch.done(), "the window's watch still runs, behind the lease's release"
        for _ in range(300):  # and the stop ends: the windows' leases are bounded too
            if running.done():
                break
            await asyncio.sleep(0.01)
        assert running.done(), "the stop is held by a release the store does not answer"
    finally:
        store.cut = False
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        for task in watcher.tasks.values():
            task.cancel()
        await asyncio.gather(*watcher.tasks.values(), return_exceptions=True)
        await store.close()

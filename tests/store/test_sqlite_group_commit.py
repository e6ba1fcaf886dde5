"""SQLite group commit: changes that queue up share one COMMIT, each one all or nothing,
and a caller cancelled at any point leaves the store usable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.records import DeployWindow, RoundRecord
from agent.store.base import Conflict
from agent.store.sqlite import SqliteStore


def window(wid: str) -> DeployWindow:
    return DeployWindow(wid, f"env-{wid}", "v1", None, None, {}, "watching", 0.0, 60.0, 0.0)


async def test_concurrent_changes_all_land_and_a_failing_one_is_undone_alone(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        rounds = [
            store.record_round(RoundRecord("dep_0", n, float(n), {"n": n}), None)
            for n in range(1, 21)
        ]
        duplicate = store.create_window(window("dep_0"))  # fails inside the same group
        results = await asyncio.gather(*rounds, duplicate, return_exceptions=True)
        assert results[:20] == [True] * 20
        assert isinstance(results[20], Conflict | Exception)
        assert [r.number for r in await store.rounds("dep_0")] == list(range(1, 21))
    finally:
        await store.close()
    reopened = SqliteStore(tmp_path / "g.db")  # committed: on disk, not only in memory
    await reopened.open()
    assert len(await reopened.rounds("dep_0")) == 20
    await reopened.close()


@pytest.mark.parametrize("ticks", range(6))
async def test_a_caller_cancelled_at_any_step_leaves_the_store_usable(
    tmp_path: Path, ticks: int
) -> None:
    store = SqliteStore(tmp_path / "c.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        write = asyncio.create_task(store.record_round(RoundRecord("dep_0", 1, 1.0, {}), None))
        for _ in range(ticks):
            await asyncio.sleep(0)
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        assert await store.record_round(RoundRecord("dep_0", 2, 2.0, {}), None)
        await store.create_window(window("dep_1"))
        assert await store.get_window("dep_1") is not None
    finally:
        await store.close()

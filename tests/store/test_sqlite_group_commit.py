"""SQLite group commit: changes that queue up share one COMMIT, each one all or nothing,
and a caller cancelled at any point leaves the store usable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.records import DeployWindow, Fence, RoundRecord
from agent.store.base import Conflict
from agent.store.sqlite import SqliteStore


def window(wid: str) -> DeployWindow:
    return DeployWindow(wid, f"env-{wid}", "v1", None, None, {}, "watching", 0.0, 60.0, 0.0)


async def claimed_with_dep_4_ended(store: SqliteStore, windows: int) -> dict[str, Fence]:
    """`windows` windows claimed by "me" (leases until 60.0), dep_4 then ended: their fences."""
    for i in range(windows):
        await store.create_window(window(f"dep_{i}"))
    fences = {w.id: w.fence for w in await store.claim_windows("me", 0.0, 60.0)}
    await store.finish_window("dep_4", "passed", None, 1.0)
    return fences


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


async def test_rounds_written_together_get_the_answers_they_would_get_alone(
    tmp_path: Path,
) -> None:
    """Rounds of many windows share a batch; one refused round (window ended, not our
    claim, already stored) is refused alone and the others are stored."""
    store = SqliteStore(tmp_path / "b.db")
    await store.open()
    try:
        fences = await claimed_with_dep_4_ended(store, 6)
        await store.record_round(RoundRecord("dep_5", 1, 1.0, {}), None, fences["dep_5"])
        writes = [
            store.record_round(RoundRecord(f"dep_{i}", 1, 1.0, {"i": i}), None, fences[f"dep_{i}"])
            for i in range(4)
        ]
        stale = Fence("me", fences["dep_3"].epoch + 1)
        refused = [
            store.record_round(RoundRecord("dep_3", 2, 2.0, {}), None, stale),  # not our claim
            store.record_round(RoundRecord("dep_4", 1, 1.0, {}), None, fences["dep_4"]),  # ended
            store.record_round(RoundRecord("dep_5", 1, 1.0, {}), None, fences["dep_5"]),  # again
        ]
        assert await asyncio.gather(*writes, *refused) == [True] * 4 + [False] * 3
        for i in range(4):
            assert [r.summary for r in await store.rounds(f"dep_{i}")] == [{"i": i}]
            stored = await store.get_window(f"dep_{i}")
            assert stored is not None and stored.rounds == 1
        assert await store.rounds("dep_4") == []
        assert len(await store.rounds("dep_5")) == 1
    finally:
        await store.close()


async def test_lease_renewals_written_together_get_the_answers_they_would_get_alone(
    tmp_path: Path,
) -> None:
    """Renewals of many windows share a batch; one refused (the window ended, or another
    claim holds it) is refused alone and the others extend their leases."""
    store = SqliteStore(tmp_path / "l.db")
    await store.open()
    try:
        fences = await claimed_with_dep_4_ended(store, 5)
        renewals = [store.renew_lease(f"dep_{i}", fences[f"dep_{i}"], 100.0 + i) for i in range(3)]
        refused = [
            store.renew_lease("dep_3", Fence("me", fences["dep_3"].epoch + 1), 500.0),  # not ours
            store.renew_lease("dep_4", fences["dep_4"], 500.0),  # ended
        ]
        assert await asyncio.gather(*renewals, *refused) == [True] * 3 + [False] * 2
        for i in range(3):
            stored = await store.get_window(f"dep_{i}")
            assert stored is not None and stored.lease_until == 100.0 + i
        untouched = await store.get_window("dep_3")
        assert untouched is not None and untouched.lease_until == 60.0
        again = [store.renew_lease(f"dep_{i}", fences[f"dep_{i}"], 200.0) for i in range(3)]
        assert await asyncio.gather(*again) == [True] * 3  # all in one statement
        for i in range(3):
            stored = await store.get_window(f"dep_{i}")
            assert stored is not None and stored.lease_until == 200.0
    finally:
        await store.close()

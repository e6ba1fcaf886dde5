"""The writer's `busy_timeout` is set only when the change beginning wants another: each
BEGIN still waits what its kind waits (a watch's batch 250 ms, any other change the full
`busy_timeout`), and a watch's batches in a row send no PRAGMA. Each batch sent two (250,
then back), two more trips to SQLite's thread (~80 µs of CPU) a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.records import DeployWindow, RoundRecord
from agent.store.sqlite import BUSY_TIMEOUT_MS, WATCH_BUSY_TIMEOUT_MS, SqliteStore


def window(wid: str) -> DeployWindow:
    return DeployWindow(wid, f"env-{wid}", "v1", None, None, {}, "watching", 0.0, 1e12, 0.0)


async def test_each_begin_waits_its_kind_and_watch_batches_send_no_pragma(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "b.db")
    await store.open()
    try:
        await store.create_window(window("dep_0"))
        [w] = await store.claim_windows("me", 0.0, 1e12)
        assert store._db is not None
        sent: list[str] = []
        execute = store._db.execute

        async def spied(sql: str, *args: Any, **kwargs: Any) -> Any:
            if sql.startswith(("PRAGMA busy_timeout", "BEGIN")):
                sent.append(sql)
            return await execute(sql, *args, **kwargs)

        # a spy: aiosqlite's execute returns an awaitable that is also a context manager,
        # and the store only awaits it
        store._db.execute = spied  # type: ignore[method-assign,assignment]

        async def stored_round(n: int) -> None:
            assert await store.record_round(RoundRecord("dep_0", n, float(n), {}), None, w.fence)

        await stored_round(1)
        await stored_round(2)
        assert await store.renew_lease("dep_0", w.fence, 1e12)
        await store.create_window(window("dep_1"))  # the API's: the full busy_timeout
        await stored_round(3)
        watch, full = (
            f"PRAGMA busy_timeout={WATCH_BUSY_TIMEOUT_MS}",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
        )
        begin = "BEGIN IMMEDIATE"
        assert sent == [watch, begin, begin, begin, full, begin, watch, begin], sent
    finally:
        await store.close()

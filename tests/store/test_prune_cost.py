"""A retention pass reads the rounds it deletes, not every round stored: it runs once a
minute in the write transaction every round's store waits behind, and read the key of
each round kept a week (720,000 an hour at 200 windows @1 s: 0.9-1.8 s a pass on this
machine). Its work is counted in SQLite's own steps (a progress handler), not in time."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from agent.retention import StorePruner
from agent.store.sqlite import SqliteStore

DAY = 86400.0
NOW = 100 * DAY
CUTOFF = NOW - 7 * DAY


async def stored(path: Path, *, live_rounds: int, swept_windows: int) -> SqliteStore:
    """One window ended 30 days ago with 3 rounds, two live windows with `live_rounds`
    rounds each, and `swept_windows` windows ended 30 days ago whose rounds are gone."""
    store = SqliteStore(path)
    await store.open()
    await store.close()
    db = sqlite3.connect(path)
    ended = NOW - 30 * DAY
    summary = json.dumps({"observations": {}})
    rows = [("dep_old", "passed", ended, 3), ("dep_a", "watching", None, live_rounds)]
    rows += [("dep_b", "watching", None, live_rounds)]
    rows += [(f"dep_gone{i:05d}", "passed", ended - i, 0) for i in range(swept_windows)]
    for wid, state, ended_at, rounds in rows:
        db.execute(
            "INSERT INTO windows (id, environment, version, labels, state, deployed_at,"
            " ends_at, created_at, ended_at) VALUES (?, 'web', 'v1', '{}', ?, 0, 60, 0, ?)",
            (wid, state, ended_at),
        )
        db.executemany(
            "INSERT INTO rounds VALUES (?, ?, ?, ?)",
            ((wid, n, float(n), summary) for n in range(1, rounds + 1)),
        )
    db.commit()
    db.close()
    store = SqliteStore(path)
    await store.open()
    return store


async def steps(store: SqliteStore, work: Callable[[], Awaitable[object]]) -> int:
    """SQLite's virtual-machine steps (in hundreds) that `work` took on the writer."""
    assert store._db is not None
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    await store._db.set_progress_handler(count, 100)
    try:
        await work()
    finally:
        await store._db.set_progress_handler(cast(Any, None), 100)  # none
    return counted[0]


async def test_a_pass_reads_no_round_of_a_live_window(tmp_path: Path) -> None:
    few = await stored(tmp_path / "few.db", live_rounds=10, swept_windows=0)
    many = await stored(tmp_path / "many.db", live_rounds=5000, swept_windows=0)
    try:
        cost = {}
        for name, store in (("few", few), ("many", many)):
            cost[name] = await steps(store, functools.partial(store.prune_rounds, CUTOFF))
            assert await store.rounds("dep_old") == []
            assert len(await store.rounds("dep_a")) == len(await store.rounds("dep_b"))
        # 10,000 rounds of live windows more cost nothing; before, each was read
        assert cost["many"] <= cost["few"] + 5, cost
    finally:
        await few.close()
        await many.close()


async def test_a_later_pass_leaves_the_windows_an_earlier_one_swept(tmp_path: Path) -> None:
    few = await stored(tmp_path / "few.db", live_rounds=0, swept_windows=10)
    many = await stored(tmp_path / "many.db", live_rounds=0, swept_windows=5000)
    try:
        cost = {}
        for name, store in (("few", few), ("many", many)):
            pruner = StorePruner(store, rounds_s=7 * DAY, probe_summaries_s=DAY, clock=lambda: NOW)
            assert (await pruner.prune_once()).rounds == 3  # the first pass: all of them
            cost[name] = await steps(store, pruner.prune_once)
        assert cost["many"] <= cost["few"] + 5, cost
    finally:
        await few.close()
        await many.close()

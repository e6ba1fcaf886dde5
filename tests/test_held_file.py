"""`HeldFile`: a watch's write refused because another process holds the SQLite file
(`StoreHeld`) is tried again until it is taken, said once each way for the whole agent
(`HeldFiles`), each window's own at DEBUG; any other failure is raised at once; rounds go
ahead of the store only up to `HELD_ROUNDS_MAX`."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.records import DeployWindow, RoundRecord
from agent.settings import EnvironmentSettings
from agent.store.base import StoreError, StoreHeld
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.held import HELD_ROUNDS_MAX, HeldFile, HeldFiles
from agent.windows.lifecycle import WindowWatch
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.alerting.test_window_alerts import services

pytestmark = pytest.mark.timeout(10)


def held_file(metrics: Metrics) -> HeldFile:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    log = logging.LoggerAdapter(logging.getLogger("postflight.window"), {})
    return HeldFile(log, HeldFiles(metrics), sleep=no_wait)


def store_up(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("postflight_store_up") or 0.0


async def test_a_held_write_is_tried_until_taken_and_said_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.store_up.set(1)
    held, refusals, seen_down = held_file(metrics), [3], []

    async def write() -> bool:
        seen_down.append(store_up(metrics))
        if refusals[0]:
            refusals[0] -= 1
            raise StoreHeld("SQLite: database is locked")
        return True

    with caplog.at_level(logging.DEBUG, "postflight"):
        assert await held.written(write, "round 7") is True
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(seen_down) == 4 and seen_down[1:] == [0.0, 0.0, 0.0]  # said down while held
    assert store_up(metrics) == 1.0 and held.waiting == 0
    assert [level for level, _ in said] == [
        logging.DEBUG,
        logging.WARNING,
        logging.DEBUG,
        logging.INFO,
    ], said
    assert said[0][1].startswith("round 7 waits for the store"), said  # the window's own
    assert said[1][1].startswith("1 window's rounds wait for the store"), said
    assert "takes this window's writes again" in said[2][1], said
    assert said[3][1].startswith("the SQLite file takes the windows' writes again"), said
    assert "3 rounds" not in said[3][1] and "of 1 window" in said[3][1], said


async def test_any_other_failure_is_raised_at_once() -> None:
    held, tries = held_file(Metrics()), []

    async def write() -> bool:
        tries.append(1)
        raise StoreError("cannot commit to the SQLite store: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O"):
        await held.written(write, "round 1")
    assert tries == [1] and held.waiting == 0


async def test_rounds_go_ahead_of_a_held_write_up_to_the_bound() -> None:
    held, let_go = held_file(Metrics()), asyncio.Event()

    async def write() -> bool:
        if not let_go.is_set():
            raise StoreHeld("SQLite: database is locked")
        return True

    settling = asyncio.create_task(held.written(write, "round 1"))
    await held.settled_or_held(settling)  # returns once the write is refused, not taken
    assert not settling.done() and held.goes_on(settling)
    for _ in range(HELD_ROUNDS_MAX):
        held.chain()
    assert not held.goes_on(settling)  # past the bound: the watch waits for the oldest
    let_go.set()
    assert await settling is True


WINDOWS = 60


async def test_a_held_file_is_said_once_for_all_the_windows_it_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Many windows' rounds refused by one lock (another connection's `BEGIN EXCLUSIVE` on
    the real file, past a watch's 250 ms): one warning naming how many windows wait, one
    line once the file is let go naming the rounds kept, the windows' own at DEBUG. Each
    window said both (60 warnings and 60 lines for one lock here)."""
    metrics = Metrics()
    store = SqliteStore(tmp_path / "h.db")
    await store.open()
    now = time.time()
    try:
        for i in range(WINDOWS):
            await store.create_window(
                DeployWindow(
                    f"dep_{i}", f"env-{i}", "v1", None, None, {}, "watching", now, now + 600, 0.0
                )
            )
        claimed = await store.claim_windows("test", now, 60.0)
        notifier = Notifier([], timeout=1.0, redact=Redactor(), metrics=metrics)
        s = services(store, WindowAlerts(store, notifier), metrics)
        env = EnvironmentSettings(base_url="http://127.0.0.1:9")
        watches = [WindowWatch(w, env, None, s) for w in claimed]  # type: ignore[arg-type]

        def write(watch: WindowWatch) -> Callable[[], Awaitable[bool]]:
            w = watch.window
            return lambda: store.record_round(RoundRecord(w.id, 1, now, {}), None, w.fence)

        with (
            closing(sqlite3.connect(tmp_path / "h.db", isolation_level=None)) as other,
            caplog.at_level(logging.DEBUG, "postflight"),
        ):
            other.execute("BEGIN EXCLUSIVE")
            first = [asyncio.create_task(w.held.written(write(w), "round 1")) for w in watches]
            for _ in range(500):  # 10 s at most
                if all(w.held.waiting for w in watches):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("not every window waits for the held file")
            for w in watches:
                w.held.chain()  # round 2 measured, handed to the store behind round 1
            assert store_up(metrics) == 0.0
            other.execute("COMMIT")
            assert await asyncio.gather(*first) == [True] * WINDOWS
        said = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
        own = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert [level for level, _ in said] == [logging.WARNING, logging.INFO], said
        assert said[0][1].startswith(f"{WINDOWS} windows' rounds wait for the store"), said
        assert f"{WINDOWS} rounds of {WINDOWS} windows measured meanwhile kept" in said[1][1]
        assert len([m for m in own if "round 1 waits for the store" in m]) == WINDOWS
        assert len([m for m in own if "takes this window's writes again" in m]) == WINDOWS
        assert store_up(metrics) == 1.0
        for w in watches:
            assert [r.number for r in await store.rounds(w.window.id)] == [1]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("refuse", "let_go", "why"),
    [
        ("PRAGMA max_page_count = {pages}", "PRAGMA max_page_count = 9999", "file's disk is full"),
        ("PRAGMA query_only = 1", "PRAGMA query_only = 0", "file is read-only"),
    ],
    ids=["full", "read-only"],
)
async def test_a_round_the_file_refuses_for_want_of_space_or_write_access_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, refuse: str, let_go: str, why: str
) -> None:
    """SQLite's own SQLITE_FULL (the file may not grow: a full disk) and SQLITE_READONLY
    (a remount) on the real store's writer, as the watch writes a round: kept and stored
    once the file takes writes again, said with its cause. Before, the write raised at
    once (a `StoreError`, not `StoreHeld`): the watch ended and the rounds it measured
    until the watcher claimed it again were lost (a real daemon's 6 s of full disk: 0 of
    12 rounds stored, 12 slots passed over)."""
    metrics = Metrics()
    store = SqliteStore(tmp_path / "f.db")
    await store.open()
    now = time.time()
    try:
        await store.create_window(
            DeployWindow("dep_f", "staging", "v1", None, None, {}, "watching", now, now + 600, 0.0)
        )
        (window,) = await store.claim_windows("test", now, 60.0)
        writer = store._db  # the limits are the writer connection's own
        assert writer is not None
        (pages,) = await (await writer.execute("PRAGMA page_count")).fetchone()  # type: ignore[misc]
        await writer.execute(refuse.format(pages=pages))
        held = held_file(metrics)
        big = {"checks": "x" * 20_000}  # past the file's free pages: it must grow
        with caplog.at_level(logging.DEBUG, "postflight"):
            record = RoundRecord(window.id, 1, now, big)
            write = asyncio.create_task(
                held.written(lambda: store.record_round(record, None, window.fence), "round 1")
            )
            for _ in range(250):  # 5 s at most
                if held.waiting or write.done():
                    break
                await asyncio.sleep(0.02)
            assert not write.done(), write.result() if not write.exception() else write.exception()
            assert store_up(metrics) == 0.0
            await writer.execute(let_go)
            assert await write is True
        said = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
        assert len(said) == 2 and f"(the SQLite {why})" in said[0], said
        assert "held by another process" not in said[0], said
        assert "the SQLite file takes the windows' writes again" in said[1], said
        assert store_up(metrics) == 1.0
        assert [r.number for r in await store.rounds(window.id)] == [1]
    finally:
        await store.close()

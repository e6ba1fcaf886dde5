"""`postflight run` on SQLite while another process holds the file (`BEGIN EXCLUSIVE` from
Python's sqlite3 module in a process of its own, as an operator's `sqlite3` or a backup
tool would): the window goes on measuring, keeps the rounds it measured while the file
was held, stores them in order once it is let go, and ends on time, passed. Before, the
round the file refused past `busy_timeout` ended the watch, the rounds measured were
dropped, and none was measured until the watcher claimed the window again after the
lock (a 10 s lock cost 20 of a 40-round window's rounds at 500 ms, a 20 s lock 27)."""

from __future__ import annotations

import asyncio
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.crash import TOKEN, free_port, request_json, start_agent
from tests.thread_target import thread_target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SECRET = "held-rollback-secret"
HOLD_S = 8.0
"""Past the store's 5 s `busy_timeout`: a round's write is refused, then held."""
WINDOW = "12s"
"""Four rounds stored (2 s), the file held or refused for `HOLD_S` at most, and a few
seconds after it before the window's end, which each test waits for: 16 s left some 6 s
more than that, each test's wait."""


def config(workdir: Path, port: int, target: str, receiver: str, lease: str) -> Path:
    path = workdir / "postflight.yaml"
    path.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{workdir / 'postflight.db'}\n  lease: {lease}\n"
        f"""environments:
  staging:
    base_url: {target}
    window: {WINDOW}
    interval: 500ms
    probes_per_round: 3
    checks:
      - {{name: health, type: http, path: /health, timeout: 200ms}}
    analysis: {{policy: threshold, failure_limit: 2}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.5}}
    rollback: {{url: {receiver}, secret: {SECRET}}}
"""
    )
    return path


def hold(db: Path, seconds: float) -> tuple[float, float]:
    """The file's write lock held by another process for `seconds`: when it was taken and
    when let go (wall clock, as the rounds' `started_at`)."""
    script = (
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        "db.execute('BEGIN EXCLUSIVE'); print(time.time(), flush=True)\n"
        "time.sleep(float(sys.argv[2])); db.execute('COMMIT'); print(time.time())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(db), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return float(out[0]), float(out[1])


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return list(conn.execute(sql, args).fetchall())


async def until_ended(db: Path, window_id: str) -> tuple[Any, ...]:
    for _ in range(600):  # 60 s at most
        found = await asyncio.to_thread(
            rows, db, "SELECT state, rounds, ends_at, ended_at FROM windows WHERE id = ?", window_id
        )
        if found and found[0][0] != "watching":
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the window never ended")


@pytest.mark.parametrize("lease", ["30s", "4s"], ids=["lease-outlasts-it", "lease-lapses"])
async def test_rounds_measured_while_another_process_holds_the_file_are_kept(
    tmp_path: Path, rollback_receiver: Callable[..., Any], lease: str
) -> None:
    """With a lease shorter than the lock, the watch is not stopped as one whose lease may
    have lapsed (no other agent takes it: one agent per SQLite file), and its renewal is
    stored before any claim, which took the lapsed lease afresh and refused the rounds
    kept as another claim's."""
    receiver = await rollback_receiver(SECRET)
    db = tmp_path / "postflight.db"
    port = free_port()
    log = tmp_path / "agent.log"
    with thread_target() as target:
        path = config(tmp_path, port, target.url, receiver.url, lease)
        agent = await asyncio.to_thread(start_agent, path, port, log)
        try:
            body = {"environment": "staging", "version": "v2"}
            url = f"http://127.0.0.1:{port}/v1/deploys"
            deploy = await asyncio.to_thread(request_json, "POST", url, body)
            window_id = deploy["id"]
            for _ in range(300):  # a few rounds stored first
                stored = await asyncio.to_thread(
                    rows, db, "SELECT count(*) FROM rounds WHERE window_id = ?", window_id
                )
                if stored[0][0] >= 4:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"fewer than 4 rounds stored: {stored}")
            held_at, let_go_at = await asyncio.to_thread(hold, db, HOLD_S)
            state, rounds, ends_at, ended_at = await until_ended(db, window_id)
        finally:
            agent.send_signal(signal.SIGTERM)
            await asyncio.to_thread(agent.wait, 30)
    text = log.read_text()
    kept = rows(db, "SELECT number, started_at FROM rounds WHERE window_id = ?", window_id)
    numbers = [n for n, _ in kept]
    started = [s for _, s in kept]
    during = [s for s in started if held_at < s < let_go_at]
    assert state == "passed", text
    assert numbers == list(range(1, rounds + 1)), numbers  # in order, none refused
    # measured while the file was held, kept, stored once it was let go (before: none, the
    # watch had ended and was claimed again only after the lock)
    assert len(during) >= 2, (held_at, let_go_at, started, text)
    # from its first seconds, not only once `busy_timeout` (5 s) had passed: the first
    # write refused waited that long, and the watch with it
    assert len([s for s in during if s < held_at + 4.0]) >= 3, (held_at, started)
    assert ended_at >= ends_at - 1.0, (ended_at, ends_at)  # judged to its end
    # said once for the agent (each window's own at DEBUG)
    assert text.count("1 window's rounds wait for the store") == 1, text
    assert text.count("the SQLite file takes the windows' writes again") == 1, text
    assert "watching the window: the store does not answer" not in text, text
    assert "lease may have lapsed" not in text, text
    assert receiver.attempts == []  # a held file never rolls back


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="prlimit is Linux's")
async def test_rounds_measured_while_the_files_disk_refuses_writes_are_kept(
    tmp_path: Path, rollback_receiver: Callable[..., Any]
) -> None:
    """The daemon's file size limit lowered to the store's size for 6 s (`prlimit` on its
    process, as a full disk or a remount refuses writes; SIGXFSZ is ignored by Python, so
    SQLite's writes fail: `disk I/O error`; a real full tmpfs says SQLITE_FULL, `database
    or disk is full`, and went the same way): the rounds measured meanwhile are kept and
    stored in order once it is raised again. Before, the refused round ended the watch:
    20 of 32 rounds stored, 0 of the 12 slots in those 6 s, "12 slots passed over"."""
    receiver = await rollback_receiver(SECRET)
    db = tmp_path / "postflight.db"
    wal = tmp_path / "postflight.db-wal"
    port = free_port()
    log = tmp_path / "agent.log"
    with thread_target() as target:
        path = config(tmp_path, port, target.url, receiver.url, "30s")
        agent = await asyncio.to_thread(start_agent, path, port, log)
        try:
            body = {"environment": "staging", "version": "v2"}
            url = f"http://127.0.0.1:{port}/v1/deploys"
            window_id = (await asyncio.to_thread(request_json, "POST", url, body))["id"]
            for _ in range(300):  # a few rounds stored first
                stored = await asyncio.to_thread(
                    rows, db, "SELECT count(*) FROM rounds WHERE window_id = ?", window_id
                )
                if stored[0][0] >= 4:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"fewer than 4 rounds stored: {stored}")
            _, hard = resource.prlimit(agent.pid, resource.RLIMIT_FSIZE)
            size = max(wal.stat().st_size, db.stat().st_size, log.stat().st_size) + 100
            refused_at = time.time()
            resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (size, hard))
            await asyncio.sleep(6.0)
            resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (hard, hard))
            taken_at = time.time()
            state, rounds, _, _ = await until_ended(db, window_id)
        finally:
            agent.send_signal(signal.SIGTERM)
            await asyncio.to_thread(agent.wait, 30)
    text = log.read_text()
    kept = rows(db, "SELECT number, started_at FROM rounds WHERE window_id = ?", window_id)
    during = [s for _, s in kept if refused_at < s < taken_at]
    assert state == "passed", text
    assert [n for n, _ in kept] == list(range(1, rounds + 1)), kept  # in order, none lost
    assert len(during) >= 6, (refused_at, taken_at, kept)  # 12 slots; load may pass some
    assert text.count("1 window's rounds wait for the store") == 1, text
    assert "(the SQLite file's disk fails writes)" in text, text
    assert text.count("the SQLite file takes the windows' writes again") == 1, text
    assert "slots passed over" not in text, text
    assert receiver.attempts == []

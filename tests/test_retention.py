"""Store retention: what is deleted in the background, when, and what must stay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from agent.app import build_app
from agent.appkeys import STORE
from agent.records import DeployWindow, RoundRecord
from agent.retention import StorePruner
from agent.settings_file import ConfigError, load_settings_text
from agent.store.sqlite import SqliteStore

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
store:
  url: sqlite:///{db}
  {retention}
environments:
  production:
    base_url: http://127.0.0.1:9
    lookback: 2h
"""


def test_defaults_keep_rounds_a_week_and_probe_summaries_the_longest_lookback(
    tmp_path: Path,
) -> None:
    s = load_settings_text(CONFIG.format(db=tmp_path / "x.db", retention=""))
    assert s.store.retention.rounds == 7 * 86400
    assert s.probe_summary_retention == 2 * 3600 + 60


def test_probe_summaries_cannot_be_kept_shorter_than_a_lookback(tmp_path: Path) -> None:
    text = CONFIG.format(db=tmp_path / "x.db", retention="retention: {probe_summaries: 30m}")
    with pytest.raises(ConfigError) as info:
        load_settings_text(text)
    (problem,) = info.value.problems
    assert problem.path == "store.retention.probe_summaries"
    assert "environments.production.lookback (2h)" in problem.message


async def test_the_daemon_prunes_ended_windows_rounds_in_the_background(tmp_path: Path) -> None:
    db = tmp_path / "postflight.db"
    seed = SqliteStore(db)
    await seed.open()
    for wid, ended in (("dep_ended", 1_000.0), ("dep_recent", 99_000.0)):
        await seed.create_window(
            DeployWindow(wid, f"env-{wid}", "v1", None, None, {}, "watching", 0.0, 60.0, 0.0)
        )
        await seed.record_round(RoundRecord(wid, 1, 1.0, {"observations": {}}), None)
        await seed.finish_window(wid, "passed", None, ended)
    await seed.add_probe_summary("production", "health", 500.0, {"ok": [1]})
    await seed.close()

    app = build_app(
        load_settings_text(CONFIG.format(db=db, retention="retention: {rounds: 1d}")),
        clock=lambda: 100_000.0,
        background_probing=False,
    )
    runner = web.AppRunner(app)
    await runner.setup()  # the cleanup contexts start: the first pass runs at once
    try:
        store = app[STORE]
        for _ in range(500):  # rounds first, then probe summaries: wait for both
            if not await store.rounds("dep_ended") and not await store.probe_summaries(
                "production", 0, 1e9
            ):
                break
            await asyncio.sleep(0.02)
        assert await store.rounds("dep_ended") == []
        assert len(await store.rounds("dep_recent")) == 1  # ended 1,000 s ago: kept
        assert await store.probe_summaries("production", 0, 1e9) == []
    finally:
        await runner.cleanup()


async def test_a_failing_store_is_retried_on_the_next_pass(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "never-opened.db")
    pruner = StorePruner(store, rounds_s=1.0, probe_summaries_s=1.0, every=0.01)
    task = asyncio.create_task(pruner.run())
    await asyncio.sleep(0.05)
    assert not task.done()  # logged and retried, never raised
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

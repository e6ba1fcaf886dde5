"""Store retention: what is deleted in the background, when, and what must stay."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web

from agent.app import build_app
from agent.appkeys import STORE
from agent.records import DeployWindow, IdempotentResponse, PendingGate, RoundRecord
from agent.retention import GATES_KEPT_S, StorePruner
from agent.settings_file import ConfigError, load_settings_text
from agent.store.sqlite import SqliteStore
from tests.test_store_outage_logs import DOWN, TURN, Restarting

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


async def test_a_store_outage_is_one_warning_and_its_end_one_info_not_a_traceback_a_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL restart under `postflight run` (a live audit) logged the pass's ERROR
    with a full traceback (`retention pass failed; retrying in 60s`), at every pass the
    outage lasted, where each other loop says it once as a WARNING and once that the store
    answers again (`agent.store.outages`, tests/test_store_outage_logs.py). A failure that
    is not the store's keeps its traceback (the other test here)."""
    store = Restarting(tmp_path / "postflight.db")
    await store.open()
    pruner = StorePruner(store, rounds_s=1.0, probe_summaries_s=1.0, every=TURN)
    store.down = True
    task = asyncio.create_task(pruner.run())
    try:
        with caplog.at_level(logging.INFO, logger="postflight.retention"):
            await asyncio.sleep(10 * TURN)  # some ten passes while it is down
            store.down = False
            await asyncio.sleep(5 * TURN)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("postflight")]
    assert not [r for r in caplog.records if r.exc_info], said
    assert said == [
        (logging.WARNING, f"retention pass: the store does not answer ({DOWN}); retrying"),
        (logging.INFO, "retention pass: the store answers again"),
    ], said


@pytest.mark.parametrize("rounds_days", [1, 120])
async def test_gate_requests_go_after_ninety_days_or_the_rounds_retention(
    tmp_path: Path, rounds_days: int
) -> None:
    """A protection rule's requests (kept to tell a replay) and its answered gate were
    kept for good: they go with the pass once older than 90 days (GitHub's job waits 30
    at most), or `store.retention.rounds` if longer, as the idempotency keys beside them."""
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        url = "https://api.github.com/repos/acme/web/actions/runs/1/deployment_protection_rule"
        key = "hook:github:gate:1"
        ask = IdempotentResponse(key, key, 202, {"gate": "pending"})
        await store.add_gate(PendingGate(url, "production", "a" * 40, "Production", 60.0, 0.0), ask)
        assert await store.claim_gate(url, "Production", 10.0, 40.0)
        await store.answer_gate(url, "Production", "approved", "HTTP 204", 10.0)
        kept = max(GATES_KEPT_S, rounds_days * 86400.0)
        assert GATES_KEPT_S == 90 * 86400.0

        async def pass_at(now: float) -> int:
            pruner = StorePruner(
                store, rounds_s=rounds_days * 86400.0, probe_summaries_s=3600.0, clock=lambda: now
            )
            return (await pruner.prune_once()).gates

        assert await pass_at(kept + 5.0) == 1  # the request, asked at 0; answered at 10
        assert await store.gate_state(key, url, "Production") is not None
        assert await pass_at(kept + 20.0) == 1
        assert await store.gate_state(key, url, "Production") is None
    finally:
        await store.close()

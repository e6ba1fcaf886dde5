"""A watch's own GitHub status (the deployment's `in_progress`) that GitHub could not
take is tried again only within its window and the wait GitHub asked for past its end,
counted at the fake GitHub. Before, it was tried again every `STATUS_RETRY_S` for an hour
after the deploy (`STATUS_RETRY_FOR_S`), its window long over: posts and warnings went
on for a window nobody watched any more."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.integrations.clients import CALL_ATTEMPTS
from agent.store.sqlite import SqliteStore
from agent.windows import integrations as module
from tests.fakes.github import FakeGitHub
from tests.test_status_store_blip import TOKEN, integrations_on, watching_window

pytestmark = pytest.mark.timeout(60)
RETRY_S = 0.2
"""`STATUS_RETRY_S` here: a retry would come within the test."""


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=TOKEN) as server:
        yield server


async def _posts(store: SqliteStore, github: FakeGitHub, run_s: float) -> int:
    """How many posts of the watch's status GitHub got in `run_s` seconds of scans, each
    refused by a secondary rate limit asking for 1 s (a call: its attempts 1 s apart)."""
    github.fail("secondary_rate_limit", reset_in=1, match="/statuses")
    integrations = integrations_on(store, github)
    scans = asyncio.create_task(integrations.run())
    try:
        await asyncio.sleep(run_s)
    finally:
        scans.cancel()
        await asyncio.gather(scans, return_exceptions=True)
        await integrations.aclose()
    return len(github.seen("/deployments/42/statuses"))


async def test_a_watch_status_is_not_tried_again_past_its_windows_end(
    tmp_path: Path,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its window ended 5 s ago (the store still says watching: its last round not yet
    stored, or no agent left to end it): one call (its attempts, 1 s apart), then no retry, a
    warning said once. Before: a call every `RETRY_S`, each warned `tried again in`."""
    monkeypatch.setattr(module, "STATUS_RETRY_S", RETRY_S)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        await watching_window(store, ends_in=-5.0)
        with caplog.at_level(logging.WARNING, logger="agent.windows.integrations"):
            posts = await _posts(store, github, 6.5)
    finally:
        await store.close()
    assert 1 <= posts <= CALL_ATTEMPTS, posts
    said = [r.getMessage() for r in caplog.records if "in_progress" in r.getMessage()]
    assert not [m for m in said if "tried again in" in m], said


async def test_a_watch_status_is_tried_again_while_its_window_runs(
    tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: a window with a minute to go is tried again after `RETRY_S`, as before."""
    monkeypatch.setattr(module, "STATUS_RETRY_S", RETRY_S)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        await watching_window(store, ends_in=60.0)
        posts = await _posts(store, github, 6.5)
    finally:
        await store.close()
    assert posts > CALL_ATTEMPTS, posts

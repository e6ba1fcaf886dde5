"""A window of a Rolling Release's canary notes, at open, the stage it watches
(`Integrations._note_stage`, `vercel.rolling_stage`), reading the release from Vercel. A
stop while that read is out lets it go (`CallResult.left`) and hands its claim back: the
next start reads it again and notes the stage. Before, the claim had no lease: left
without an outcome by the stop, it was final, and the stage was never noted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.records import DeployWindow
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.integrations import STAGE_KEY, STAGE_LABEL, Integrations
from tests.fakes.vercel import NEW, OLD, PROJECT, FakeVercel
from tests.test_watcher_claims import quiet_integrations, quiet_watcher

TOKEN = "vercel-token"
READ = "/rolling-release"


@pytest.fixture
async def fake() -> AsyncIterator[FakeVercel]:
    async with FakeVercel(token=TOKEN) as server:
        server.start_rolling_release(PROJECT, NEW, active=1)
        yield server


def integrations_on(store: SqliteStore, fake: FakeVercel) -> Integrations:
    watcher = quiet_watcher(store, background_probing=False)
    watcher.settings = load_settings_text(
        f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations: {{vercel: {{api_url: '{fake.url}', token: {TOKEN}}}}}
environments:
  production:
    base_url: http://127.0.0.1:9
    sources: {{vercel: {{project: {PROJECT}, rolling_release: true}}}}
"""
    )
    return quiet_integrations(watcher, poll_interval=60.0)


async def settled(integrations: Integrations, window: DeployWindow) -> None:
    """Until the stage's claim is no longer being worked on by `integrations`."""
    mark = (window.id, STAGE_KEY)
    for _ in range(4000):
        if mark not in integrations._busy:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("still busy")


async def test_a_stop_while_the_stage_is_read_leaves_it_to_the_next_start(
    tmp_path: Path, fake: FakeVercel
) -> None:
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    now = time.time()
    window = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        "production",
        "v2",
        "v1",
        None,
        {"vercel.deployment": NEW, "vercel.previous": OLD},
        "watching",
        now,
        now + 60,
        now,
    )
    await store.create_window(window)
    fake.fail("hang", match=READ, times=1)  # Vercel slow to answer the first read
    first = integrations_on(store, fake)
    try:
        first._act(window)
        for _ in range(4000):  # its read is out
            if fake.seen(READ):
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("its read never went out")
        first.leave_waits()  # the stop
        await settled(first, window)
    finally:
        await first.aclose()
    again = integrations_on(store, fake)  # the next start
    try:
        again._act(window)
        await settled(again, window)
        events = await store.alert_events(window.id)
        stored = await store.get_window(window.id)
    finally:
        await again.aclose()
        await store.close()
    # before: the stop waited for the read, then its claim was final: read once, never noted
    assert len(fake.seen(READ)) == 2
    assert events[STAGE_KEY] == "sent", events
    assert stored is not None and stored.labels[STAGE_LABEL] == "1"

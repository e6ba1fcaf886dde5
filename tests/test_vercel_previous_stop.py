"""A window opened by a Vercel deployment asks Vercel which production deployment came
before it (`Integrations._look_up_previous`, `look_up_previous`); a stop while that look
waits to try again (a 503's `Retry-After`) leaves it at once, with nothing asked since and
nothing recorded, as Postflight's other calls to Vercel and GitHub leave
(`CallResult.left`). Before, it waited the wait out inside the stop's grace and asked
Vercel a second time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.records import DeployWindow
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.integrations import PREVIOUS_KEY, Integrations
from tests.fakes.vercel import NEW, OLD, PROJECT, FakeVercel, listed_deployment
from tests.test_watcher_claims import quiet_integrations, quiet_watcher

TOKEN = "vercel-token"


@pytest.fixture
async def fake() -> AsyncIterator[FakeVercel]:
    async with FakeVercel(token=TOKEN) as server:
        server.listed[PROJECT] = [
            listed_deployment(NEW, 1764460800000),
            listed_deployment(OLD, 1764374400000),
        ]
        yield server


async def integrations_on(store: SqliteStore, fake: FakeVercel) -> Integrations:
    watcher = quiet_watcher(store, background_probing=False)
    watcher.settings = load_settings_text(
        f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations: {{vercel: {{api_url: '{fake.url}', token: {TOKEN}}}}}
environments:
  production:
    base_url: http://127.0.0.1:9
    sources: {{vercel: {{project: {PROJECT}}}}}
"""
    )
    return quiet_integrations(watcher, poll_interval=60.0)


async def created(store: SqliteStore, now: float) -> DeployWindow:
    """A window of Vercel's deployment NEW, watched from `now`."""
    window = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        "production",
        "v2",
        "v1",
        None,
        {"vercel.deployment": NEW},
        "watching",
        now,
        now + 60,
        now,
    )
    await store.create_window(window)
    return window


async def opened(store: SqliteStore) -> DeployWindow:
    now = time.time()
    window = await created(store, now)
    assert await store.claim_alert(window.id, PREVIOUS_KEY, now)  # as `_once` claims it
    return window


async def test_a_stop_leaves_the_look_up_of_the_previous_deployment_at_once(
    tmp_path: Path, fake: FakeVercel
) -> None:
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    integrations = await integrations_on(store, fake)
    try:
        window = await opened(store)
        fake.fail("unavailable", times=1, reset_in=1.0)  # a 503 asking for a second's wait
        looking = asyncio.create_task(integrations._look_up_previous(window))
        for _ in range(2000):  # its first ask answered
            if fake.seen("/v6/deployments"):
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("its first ask never came")
        integrations.leave_waits()  # the stop, while the look waits to ask again
        done = await looking
        events = await store.alert_events(window.id)
        stored = await store.get_window(window.id)
    finally:
        await integrations.aclose()
        await store.close()
    # before: asked again after the wait (it found OLD, then stored and recorded it)
    assert len(fake.seen("/v6/deployments")) == 1
    assert done is False  # not done: nothing recorded, no label of a look not made
    assert events[PREVIOUS_KEY] == "claimed", events
    assert stored is not None and "vercel.previous" not in stored.labels


async def test_without_a_stop_the_look_up_asks_again_after_the_wait(
    tmp_path: Path, fake: FakeVercel
) -> None:
    """The same 503 without a stop: asked again, and the previous deployment kept."""
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    integrations = await integrations_on(store, fake)
    try:
        window = await opened(store)
        fake.fail("unavailable", times=1, reset_in=0.05)
        assert await integrations._look_up_previous(window) is True
        events = await store.alert_events(window.id)
        stored = await store.get_window(window.id)
    finally:
        await integrations.aclose()
        await store.close()
    assert len(fake.seen("/v6/deployments")) == 2
    assert events[PREVIOUS_KEY] == "sent", events
    assert stored is not None and stored.labels["vercel.previous"] == OLD


async def test_a_dead_agents_look_up_is_asked_again_once_its_claim_lapses(
    tmp_path: Path, fake: FakeVercel
) -> None:
    """A claim of the look-up with no outcome, made longer ago than the look-up's lease
    (an agent killed mid look-up), is taken over and asked again; a newer one (a live
    agent's, asking) is left to it. Before, a claim was final: never asked again."""
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    integrations = await integrations_on(store, fake)
    try:
        now = time.time()
        window = await created(store, now)
        lease = integrations._previous_lease()
        assert await store.claim_alert(window.id, PREVIOUS_KEY, now - 1.0)  # a live agent's
        integrations._act(window)
        mark = (window.id, PREVIOUS_KEY)
        for _ in range(2000):  # its claim looked at
            if mark not in integrations._busy:
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("its claim was never looked at")
        assert fake.seen("/v6/deployments") == []  # left to it
        assert await store.take_alert(window.id, PREVIOUS_KEY, now - lease - 1.0, now)
        integrations._done.discard(mark)  # its next scan: still owed
        integrations._act(window)  # the claim is now older than the lease: a dead agent's
        for _ in range(2000):
            events = await store.alert_events(window.id)
            if events[PREVIOUS_KEY] != "claimed":
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError(f"the look-up was not taken over: {events}")
        stored = await store.get_window(window.id)
    finally:
        await integrations.aclose()
        await store.close()
    assert len(fake.seen("/v6/deployments")) == 1
    assert events[PREVIOUS_KEY] == "sent", events
    assert stored is not None and stored.labels["vercel.previous"] == OLD

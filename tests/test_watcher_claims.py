"""The watcher keeps a watch its own lease renewals hold, however long ago its last claim
pass read the lease (thousands of windows starting make one pass slow); a claim that really
lapsed (the process paused past its lease) still stops the watch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.base import Store
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.integrations import Integrations
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor

CONFIG = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks: [{name: health, type: http, path: /health}]
"""
T0 = 1_000_000.0
LEASE_S = 30.0  # the default `store.lease`


def quiet_watcher(
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    sessions: TargetSessions | None = None,
    **options: Any,
) -> Watcher:
    """A watcher of `CONFIG`'s one environment, owner "a": no alert channels, no providers;
    `options` as `Watcher` takes them (`poll_interval`, `background_probing`)."""
    metrics = Metrics()
    return Watcher(
        load_settings_text(CONFIG),
        store,
        metrics,
        alerts=WindowAlerts(store, Notifier([], timeout=1, redact=Redactor(), metrics=metrics)),
        delivery=RollbackDelivery(store, metrics, clock=clock, owner="a"),
        providers={},
        sessions=TargetSessions() if sessions is None else sessions,
        owner="a",
        clock=clock,
        **options,
    )


def integrations_of(store: Store, config: str, poll_interval: float) -> Integrations:
    """`quiet_integrations` beside a `quiet_watcher` of `config` (YAML) in place of
    `CONFIG`: the integrations and environments a test configures."""
    watcher = quiet_watcher(store, background_probing=False)
    watcher.settings = load_settings_text(config)
    return quiet_integrations(watcher, poll_interval=poll_interval)


def quiet_integrations(watcher: Watcher, poll_interval: float) -> Integrations:
    """The integrations beside `watcher`, as the daemon sets them up (none configured)."""
    return Integrations(
        watcher.settings,
        watcher.services,
        watcher,
        public_url="http://127.0.0.1:8080",
        redact=str,
        poll_interval=poll_interval,
    )


async def test_a_watch_renewing_its_own_lease_is_not_stopped_and_started_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [T0]
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    sessions = TargetSessions()
    watcher = quiet_watcher(
        store, clock=lambda: now[0], sessions=sessions, background_probing=False
    )
    # scheduled ten minutes ahead: its watch only renews its lease until then
    window = DeployWindow(
        id="w1",
        environment="production",
        version="v2",
        previous_version="v1",
        commit=None,
        labels={},
        state="watching",
        deployed_at=T0 + 600,
        ends_at=T0 + 1200,
        created_at=T0,
    )
    await store.create_window(window)
    try:
        await watcher._claim()
        watch = watcher.tasks["w1"]
        for _ in range(200):  # the watch's first renewal: to T0 + lease + a 10 s step
            stored = await store.get_window("w1")
            if stored is not None and (stored.lease_until or 0) > T0 + LEASE_S:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"the lease was not renewed: {stored}")
        renewed = stored.lease_until if stored is not None else None
        assert renewed is not None and renewed > T0 + LEASE_S

        # the next pass comes after the first claim's lease, within the watch's renewal
        now[0] = T0 + LEASE_S + 1
        assert now[0] < renewed
        await watcher._claim()
        assert watcher.tasks["w1"] is watch and not watch.done()  # the same watch goes on
        assert "stopped watching" not in caplog.text

        # paused past every lease: that watch stops (another one may hold the window now)
        held = await store.get_window("w1")
        assert held is not None and held.lease_until is not None
        now[0] = max(held.lease_until, renewed) + 1
        with caplog.at_level(logging.WARNING, "postflight.watcher"):
            await watcher._claim()
        assert watch.done()
        assert watcher.tasks["w1"] is not watch
        # said, where the watch stopped without a word (a 69 s gap under load 19 showed
        # only as the resumed watch's "slots passed over")
        assert "stopped watching 1 window (w1): its lease may have lapsed 1.0s ago" in caplog.text
    finally:
        await watcher._stop_windows()
        await sessions.aclose()
        await store.close()

"""A window's end alert and a settled rollback's alert survive a kill -9 right after the
change that calls for them (contract §4: one notification per deploy and event).

The crash is simulated where it hurts: the process dies just after the store's commit,
before anything it spawned runs (`Crashed.spawn` drops the work). A fresh agent on the
same store, past the alert lease, must send the alert, once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from agent.analysis.types import Verdict
from agent.metrics import Metrics
from agent.settings import AlertChannel, AlertRouting, EnvironmentSettings
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WatchServices, WindowWatch
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.alerting.test_window_alerts import window
from tests.receivers import JsonSink

LEASE_S = 2.0
TITLE = "[postflight] production v2.4.1: deploy passed"


def notifier(sink: JsonSink, metrics: Metrics) -> Notifier:
    channels = [AlertChannel(url=sink.url(), tags=["oncall"])]
    return Notifier(channels, timeout=5.0, redact=Redactor([sink.url()]), metrics=metrics)


class Crashed(WatchServices):
    """Services of a process killed right after its last store write: nothing it
    spawns ever runs."""

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert isinstance(coro, Coroutine)
        coro.close()
        return asyncio.ensure_future(asyncio.sleep(0))


async def watch(
    store: SqliteStore, alerts: WindowAlerts, metrics: Metrics, *, crash: bool
) -> WindowWatch:
    """A watch of the window, holding its lease as a watcher's would."""
    kind = Crashed if crash else WatchServices
    services = kind(
        store=store,
        metrics=metrics,
        alerts=alerts,
        delivery=None,  # type: ignore[arg-type]
        providers={},
        owner="test",
        lease_s=30.0,
        clock=time.time,
    )
    env = EnvironmentSettings(base_url="http://127.0.0.1:9", alerts=AlertRouting(tags=["oncall"]))
    [held] = await store.claim_windows("test", time.time(), 30.0)
    return WindowWatch(held, env, None, services)  # type: ignore[arg-type]


async def pass_window(path: Path, sink: JsonSink, metrics: Metrics, *, crash: bool) -> None:
    """Open the window and end it `passed` (crashing after the commit, with `crash`)."""
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_window(window())
        alerts = WindowAlerts(store, notifier(sink, metrics), lease_s=LEASE_S)
        w = await watch(store, alerts, metrics, crash=crash)
        await w._end("pass", Verdict("pass", "every rule passed", ()), {"outcome": "pass"})
        await w.s.drain(5.0)
    finally:
        await store.close()


async def recovered(path: Path, sink: JsonSink, metrics: Metrics) -> int:
    """A fresh agent past the lease: how many cut-off alerts its recovery sent."""
    store = SqliteStore(path)
    await store.open()
    try:
        clock = lambda: time.time() + LEASE_S + 1  # noqa: E731
        alerts = WindowAlerts(store, notifier(sink, metrics), clock=clock, lease_s=LEASE_S)
        return await alerts.recover()
    finally:
        await store.close()


async def test_a_crash_right_after_a_window_ends_does_not_lose_its_alert(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The end and its alert's claim were two writes: a kill between them left a passed
    window whose `deploy passed` nobody would ever send."""
    path = tmp_path / "end.db"
    await pass_window(path, json_sink, metrics, crash=True)
    assert json_sink.notifications == []

    assert await recovered(path, json_sink, metrics) == 1
    assert await recovered(path, json_sink, metrics) == 0
    assert [n.title for n in json_sink.notifications] == [TITLE]


async def test_a_window_that_ends_normally_sends_its_alert_once(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Its claim is stored with the end and sent by the watch at once; recovery, even
    past the lease, finds nothing to send again."""
    path = tmp_path / "end.db"
    await pass_window(path, json_sink, metrics, crash=False)
    assert [n.title for n in json_sink.notifications] == [TITLE]

    assert await recovered(path, json_sink, metrics) == 0
    assert [n.title for n in json_sink.notifications] == [TITLE]

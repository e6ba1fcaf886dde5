"""A stop cancels the daemon's background loops (the watcher, the integrations, alert
recovery) and awaits them. Each loop pauses on an event that news sets ("a window opened",
"a retry is owed"); cancelled in the same turn as that event was set, a pause built on
`asyncio.wait_for` returned "woken" and dropped the cancellation on Python 3.11 (CPython
gh-86296), so the loop ran on and the stop hung for good. Found as a test of alert retries
that hung to its timeout in a full run, then in 1 of 2 runs alone (its drain cancelled the
loop as a failed send woke it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.supervisor import Watcher
from tests.test_watcher_claims import quiet_integrations, quiet_watcher

pytestmark = pytest.mark.timeout(30)


async def cancelled_as_woken(
    loop: Coroutine[Any, Any, None], pause: asyncio.Event, wake: Callable[[], None]
) -> None:
    """Run `loop` until it waits on `pause`, then wake it and cancel it in one turn: it
    must end (with CancelledError) within a few seconds."""
    task = asyncio.create_task(loop)
    try:
        for _ in range(1000):
            # asyncio.Event keeps its waiters' futures here: the loop is in its pause
            if pause._waiters:
                break
            assert not task.done(), task
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the loop never paused")
        wake()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)  # a TimeoutError: it ran on, cancelled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def parts(store: SqliteStore) -> tuple[Watcher, WindowAlerts]:
    watcher = quiet_watcher(store, poll_interval=30.0, background_probing=False)
    return watcher, watcher.services.alerts


async def test_the_watcher_cancelled_as_a_window_opens_stops(store: SqliteStore) -> None:
    watcher, _ = parts(store)
    await cancelled_as_woken(watcher.run(), watcher._wake, lambda: watcher.window_opened("w1"))


async def test_alert_recovery_cancelled_as_a_retry_falls_due_stops(store: SqliteStore) -> None:
    watcher, alerts = parts(store)
    await cancelled_as_woken(
        alerts.run(watcher.services.spawn, interval=30.0), alerts._wake, alerts._wake.set
    )


async def test_the_integrations_cancelled_as_they_are_woken_stop(store: SqliteStore) -> None:
    watcher, _ = parts(store)
    integrations = quiet_integrations(watcher, poll_interval=30.0)
    try:
        await cancelled_as_woken(integrations.run(), integrations._wake, integrations.wake)
    finally:
        await integrations.aclose()

"""A stopped watch leaves no reference cycle: its window's state is freed with it, not by
the collector, which the daemon runs rarely (`agent.windows.heap`)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
import weakref
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.providers.provider_settings import SentrySettings
from agent.providers.sentry import SentryProvider
from agent.settings import EnvironmentSettings
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WindowWatch
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.alerting.test_window_alerts import services, window
from tests.providers.support import SENTRY_TOKEN
from tests.receivers import HangingServer


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_watch_stopped_while_a_provider_hangs_leaves_no_cycle(
    tmp_path: Path, hanging_server: HangingServer, metrics: Metrics
) -> None:
    """Its provider fetches are cancelled when the watch ends, and a cancelled task keeps
    its CancelledError, whose traceback holds the fetch's frames, which hold the watch and
    through it the task (`common.tracebacks.drop_cancellation`): every window that ended
    while Sentry hung went, whole, to the collector (a soak's census: ~230 objects each)."""
    store = SqliteStore(tmp_path / "watch.db")
    await store.open()
    sentry = SentryProvider(
        SentrySettings.model_validate(
            {
                "base_url": f"http://127.0.0.1:{hanging_server.port}",
                "org": "acme",
                "token": SENTRY_TOKEN,
                "timeout": "30s",
            }
        ),
        metrics=metrics,
    )
    try:
        now = time.time()
        await store.create_window(
            dataclasses.replace(
                window(), deployed_at=now - 1, ends_at=now + 600, created_at=now - 1
            )
        )
        s = services(
            store,
            WindowAlerts(store, Notifier([], timeout=1.0, redact=Redactor(), metrics=metrics)),
            metrics,
        )
        s.providers = {"sentry": sentry}
        env = EnvironmentSettings.model_validate(
            {
                "base_url": "http://127.0.0.1:9",
                "interval": "1s",
                "baseline": {"sentry": {"project": "web", "environment": "production"}},
                "rules": [
                    {"name": "errors", "source": "sentry", "metric": "error_rate", "max": 0.5}
                ],
            }
        )
        [held] = await store.claim_windows("test", time.time(), 30.0)
        gc.collect()
        gc.disable()
        try:
            w = WindowWatch(held, env, None, s)  # type: ignore[arg-type]
            running = asyncio.ensure_future(w.run())
            for _ in range(200):
                if w.refetching or w.fetching:
                    break
                await asyncio.sleep(0.02)
            assert w.refetching or w.fetching
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            # this watch, not every WindowWatch in the process: an earlier test's may be
            # alive for good here (its app, in aiohttp's module-level middleware cache,
            # keeps its cancelled watcher task, whose traceback's frames hold its watches)
            watch = weakref.ref(w)
            del w, running
            # the cancelled fetches finish (50 ms on an idle machine; a loaded CI run's
            # took longer): with the collector off, a cycle keeps it however long this waits
            for _ in range(100):
                await asyncio.sleep(0.02)
                if watch() is None:
                    break
        finally:
            gc.enable()
        assert watch() is None
    finally:
        await sentry.aclose()
        await store.close()

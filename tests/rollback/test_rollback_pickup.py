"""A rollback whose sender died is picked up by a survivor's sweep as its lease lapses, not
at the sweep's next poll after that: the poll here is a minute, the lease two seconds.

Counted at the receiver: the survivor's watcher loop, run as the daemon runs it, sends it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.metrics import Metrics
from agent.rollback.contract import rollback_intent
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from tests.receivers import RollbackReceiver
from tests.rollback.support import BREACH, REQUESTED_AT, SECRET, make_window

POLL_S = 60.0
LEASE_LEFT_S = 2.0


def survivor(store: SqliteStore, url: str) -> Watcher:
    config = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks: [{{name: health, type: http, path: /health}}]
    rollback: {{url: '{url}', secret: {SECRET}}}
"""
    metrics = Metrics()
    notifier = Notifier([], timeout=1.0, redact=str, metrics=metrics)
    return Watcher(
        load_settings_text(config),
        store,
        metrics,
        alerts=WindowAlerts(store, notifier),
        delivery=RollbackDelivery(store, metrics, owner="replica-b"),
        providers={},
        sessions=TargetSessions(),
        owner="replica-b",
        poll_interval=POLL_S,
        background_probing=False,
    )


async def test_a_dead_senders_rollback_is_swept_up_as_its_lease_lapses(
    store: SqliteStore, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    window = make_window()
    await store.create_window(window)
    intent = rollback_intent(window, "probe-errors failed", [BREACH], REQUESTED_AT)
    # handed to replica-a's sender with the verdict; replica-a died before its first attempt
    intent.lease_owner, intent.lease_epoch = "replica-a", 1
    intent.lease_until = time.time() + LEASE_LEFT_S
    assert await store.finish_window(window.id, "failed", None, REQUESTED_AT, rollback=intent)

    watcher = survivor(store, receiver.url)
    running = asyncio.create_task(watcher.run())
    try:
        # its first sweep finds the lease held; the next one, a poll later, was the first
        # to take it (POLL_S >> this wait)
        await receiver.wait_for_attempts(1, within=POLL_S / 3)
        for _ in range(500):
            stored = await store.get_rollback(window.id)
            if stored is not None and stored.state != "pending":
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError(f"the swept rollback never left pending: {stored}")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await watcher.drain(5.0)
        await watcher.services.delivery.aclose()

    assert sum(a.accepted for a in receiver.attempts) == 1
    assert stored is not None and (stored.state, stored.lease_owner) == ("delivered", "replica-b")

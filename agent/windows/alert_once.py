"""One notification per deploy and event, across rounds and restarts.

`WindowAlerts` puts the store's alert claims in front of the `Notifier`: a breach
that persists for ten rounds pages once, a restarted agent does not page again,
and a resolve is sent only for a breach that was. Alerts are at most once: the
claim is stored before sending, so a crash between the two loses that alert
rather than repeating it. A breach's result is stored only once its slowest
channel has answered (seconds, for a slow mail server), so a resolve first waits
for this process's sends of that breach: a breach that clears within those
seconds still gets its resolve.

What it must not do: raise into a round, or make a rollback wait. `emit` never
raises (but `CancelledError`); the window runs it through `WatchServices.spawn`
(`agent.windows.lifecycle`), off the round's hot path, and the watcher's `drain`
finishes it on shutdown within a bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from agent.records import DeployWindow, Fence
from agent.store.base import Store
from alerting.events import Alert, breach_key
from alerting.notifier import Notifier

log = logging.getLogger("postflight.alerting")

DELIVERED_RESULTS = frozenset({"sent", "partial"})
"""Stored results meaning someone was told (a resolve is owed for such a breach)."""


class WindowAlerts:
    """Deduplicated alerts for deploy windows; safe to share between windows."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        *,
        clock: Callable[[], float] = time.time,
        link: Callable[[DeployWindow], str | None] | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._link = link
        """The deploy's page, for every alert body (`agent.web.links.deploy_page_url`)."""
        self._sending: dict[tuple[str, str], list[asyncio.Event]] = {}
        """This process's emits in flight, by (deploy, key): what a resolve waits for."""

    async def emit(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        *,
        key: str | None = None,
        fence: Fence | None = None,
    ) -> bool:
        """Send `alert` unless this deploy already had it; True if this call sent it
        to at least one channel.

        `key` defaults to the event (`passed`, `rollback_requested`…). Per-rule events
        use `breach:<rule>` and `resolved:<rule>` (see `alerting.events.breach_key`);
        a `resolved:<rule>` goes out only if `breach:<rule>` reached a channel.
        With `fence` (a window's watch), only while that lease still holds the window.
        Never raises, except `CancelledError`.
        """
        key = key or alert.event
        # registered before the first await: a resolve spawned a round later finds it
        slot, done = (window.id, key), asyncio.Event()
        self._sending.setdefault(slot, []).append(done)
        try:
            return await self._emit(window, alert, tags, key, fence)
        finally:
            done.set()
            flights = self._sending[slot]
            flights.remove(done)
            if not flights:
                del self._sending[slot]

    async def _emit(
        self,
        window: DeployWindow,
        alert: Alert,
        tags: Sequence[str],
        key: str,
        fence: Fence | None,
    ) -> bool:
        context = {"deploy_id": window.id, "environment": window.environment, "event": key}
        try:
            if key.startswith("resolved:"):
                breach = breach_key(key.removeprefix("resolved:"))
                # each send is bounded by the notifier's timeout, so this wait is too
                for sending in list(self._sending.get((window.id, breach), ())):
                    await sending.wait()
                events = await self._store.alert_events(window.id)
                if events.get(breach) not in DELIVERED_RESULTS:
                    return False
            if not await self._store.claim_alert(window.id, key, self._clock(), fence):
                return False
            if alert.link is None and self._link is not None:
                alert = dataclasses.replace(alert, link=self._link(window))
            outcome = await self._notifier.send(alert, tags)
            await self._store.record_alert(window.id, key, outcome.result, outcome.describe())
            return outcome.delivered
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert %s for %s not sent", key, window.id, extra=context)
            return False

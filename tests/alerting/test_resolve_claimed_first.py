"""A window's last round clears a breach whose alert is still being sent: the end waits
for the resolve's claim, not for that send (a hung channel would hold the end and its
rollback), so the resolve is claimed first and sent, or not, once the breach's send is
done: a kill just after the end was stored lost a resolve left unclaimed behind it
(`tests/e2e/test_crash_end.py`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from agent.metrics import Metrics
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts, dump_payload
from alerting.events import Alert, breach_key, resolved_key
from tests.alerting.test_window_alerts import make_notifier, rule, window
from tests.receivers import JsonSink, Reply

RESOLVED = resolved_key("errors")
HELD_S = 60.0
"""The notifier's timeout: longer than any wait here, the held breach is still in flight."""


class HeldSink(JsonSink):
    """A `json://` sink that holds every request until `release`, then answers it as
    scripted: an alert still being sent for as long as a test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    async def _serve(self, reply: Reply) -> web.Response | None:
        await self.released.wait()
        return await super()._serve(reply)


def resolve_of(w: Any) -> Any:
    def make(keys: list[str]) -> Alert:
        return Alert.for_window(w, "resolved", rules=[rule("errors")])

    return make


async def resolved_beside_a_held_breach(
    store: SqliteStore, metrics: Metrics, sink: HeldSink
) -> tuple[bool, bool]:
    """The breach sent to `sink` (held), then the window's last round's resolve, emitted
    as the end emits it (`claimed`): its claim is stored while the breach is held. What
    each send returned once `sink` answers."""
    await sink.start()
    try:
        notifier = make_notifier([sink.url()], metrics, timeout=HELD_S)
        alerts = WindowAlerts(store, notifier, retry_delays=())
        w = window()
        breach = Alert.for_window(w, "breach", rules=[rule("errors")])
        sending = asyncio.ensure_future(
            alerts.emit(w, breach, ["oncall"], key=breach_key("errors"))
        )
        await sink.wait_arrived(1)
        claimed = asyncio.get_running_loop().create_future()
        resolving = asyncio.ensure_future(
            alerts.emit_group(w, [RESOLVED], resolve_of(w), ["oncall"], claimed=claimed)
        )
        await asyncio.wait_for(claimed, 10)  # not held behind the breach's send (HELD_S)
        assert not sending.done()
        assert (await store.alert_events(w.id))[RESOLVED] == "claimed"
        sink.released.set()
        return await sending, await resolving
    finally:
        sink.released.set()
        await sink.stop()


async def test_a_resolve_the_end_waits_for_is_claimed_before_its_breach_is_sent(
    store: SqliteStore, metrics: Metrics
) -> None:
    sink = HeldSink()
    assert await resolved_beside_a_held_breach(store, metrics, sink) == (True, True)
    assert [n.title for n in sink.notifications] == [
        "[postflight] production v2.4.1: errors breached",
        "[postflight] production v2.4.1: errors resolved",
    ]
    events = await store.alert_events(window().id)
    assert events == {breach_key("errors"): "sent", RESOLVED: "sent"}


async def test_a_resolve_claimed_first_is_not_sent_when_its_breach_reached_no_one(
    store: SqliteStore, metrics: Metrics
) -> None:
    """A resolve only for a breach someone got: the claim is closed unsent."""
    sink = HeldSink()
    sink.fail_always(503)
    assert await resolved_beside_a_held_breach(store, metrics, sink) == (False, False)
    assert sink.notifications == []
    events = await store.alert_events(window().id)
    assert events == {breach_key("errors"): "failed", RESOLVED: "dropped"}


async def test_a_resolve_claimed_first_and_cut_off_is_not_sent_after_its_breach_failed(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The sender killed with the resolve claimed, its breach's failure stored: the
    restart's take-over closes the claim unsent, where it sent a resolve of a breach no
    channel had."""
    w = window()
    await store.create_window(w)
    assert await store.claim_alert(w.id, breach_key("errors"), time.time())
    await store.record_alert(w.id, breach_key("errors"), "failed", "0 of 1 channel(s) sent")
    resolved = Alert.for_window(w, "resolved", rules=[rule("errors")])
    payload = dump_payload(resolved, ["oncall"])
    lapsed = time.time() - 3600  # its sender's lease long over
    assert await store.claim_alert(w.id, RESOLVED, lapsed, None, payload)

    alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics))
    assert await alerts.recover() == 1

    assert json_sink.notifications == []
    assert (await store.alert_events(w.id))[RESOLVED] == "dropped"

"""One notification per deploy and event, across rounds and restarts (contract §4)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.settings import AlertChannel
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WatchServices
from alerting.events import Alert, breach_key, resolved_key
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.receivers import HangingServer, JsonSink, Reply


def window(window_id: str = "dep_01JDTEST") -> DeployWindow:
    return DeployWindow(
        id=window_id,
        environment="production",
        version="v2.4.1",
        previous_version="v2.4.0",
        commit="9fceb02",
        labels={},
        state="watching",
        deployed_at=0.0,
        ends_at=600.0,
        created_at=0.0,
    )


def rule(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": "checks",
        "metric": "error_rate",
        "observed": 0.2,
        "baseline": 0.01,
        "threshold": "max 0.05",
        "detail": "",
    }


def make_notifier(urls: list[str], metrics: Metrics, timeout: float = 5.0) -> Notifier:
    channels = [AlertChannel(url=u, tags=["oncall"]) for u in urls]
    return Notifier(channels, timeout=timeout, redact=Redactor(urls), metrics=metrics)


async def test_one_notification_per_deploy_and_event_across_a_restart(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    path = tmp_path / "alerts.db"
    notifier = make_notifier([json_sink.url()], metrics)
    w = window()

    first = SqliteStore(path)
    await first.open()
    alerts = WindowAlerts(first, notifier)
    assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is True
    assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False  # next round
    await first.close()

    second = SqliteStore(path)  # the agent restarted
    await second.open()
    try:
        again = WindowAlerts(second, notifier)
        assert await again.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
        assert await second.alert_events(w.id) == {"passed": "sent"}
    finally:
        await second.close()
    assert len(json_sink.notifications) == 1


async def test_each_rule_breaches_once_and_resolves_once(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics))
    w = window()

    def breach(name: str) -> Alert:
        return Alert.for_window(w, "breach", rules=[rule(name)])

    for _ in range(3):  # three rounds of the same two breaches
        await alerts.emit(w, breach("errors"), ["oncall"], key=breach_key("errors"))
        await alerts.emit(w, breach("p95"), ["oncall"], key=breach_key("p95"))
    resolved = Alert.for_window(w, "resolved", rules=[rule("errors")])
    assert await alerts.emit(w, resolved, ["oncall"], key=resolved_key("errors")) is True
    assert await alerts.emit(w, resolved, ["oncall"], key=resolved_key("errors")) is False

    titles = [n.title for n in json_sink.notifications]
    assert titles == [
        "[postflight] production v2.4.1: errors breached",
        "[postflight] production v2.4.1: p95 breached",
        "[postflight] production v2.4.1: errors resolved",
    ]


async def test_no_resolve_without_a_breach_that_reached_someone(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    w = window()
    resolved = Alert.for_window(w, "resolved", rules=[rule("errors")])
    alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics))
    assert await alerts.emit(w, resolved, ["oncall"], key=resolved_key("errors")) is False

    broken = JsonSink()
    broken.fail_always(503)
    await broken.start()
    try:
        failing = WindowAlerts(store, make_notifier([broken.url()], metrics))
        breach = Alert.for_window(w, "breach", rules=[rule("p95")])
        assert await failing.emit(w, breach, ["oncall"], key=breach_key("p95")) is False
        assert await failing.emit(w, resolved, ["oncall"], key=resolved_key("p95")) is False
    finally:
        await broken.stop()

    assert json_sink.notifications == []
    events = await store.alert_events(w.id)
    assert events == {"breach:p95": "failed"}


def services(store: SqliteStore, alerts: WindowAlerts, metrics: Metrics) -> WatchServices:
    return WatchServices(
        store=store,
        metrics=metrics,
        alerts=alerts,
        delivery=None,  # type: ignore[arg-type]
        providers={},
        owner="test",
        lease_s=30.0,
        clock=time.time,
    )


async def test_spawned_alerts_leave_the_caller_free_and_drain_on_shutdown(
    store: SqliteStore, hanging_server: HangingServer, json_sink: JsonSink, metrics: Metrics
) -> None:
    notifier = make_notifier([hanging_server.smtp_url(), json_sink.url()], metrics, timeout=1.0)
    alerts = WindowAlerts(store, notifier)
    s = services(store, alerts, metrics)
    w = window()

    task = s.spawn(alerts.emit(w, Alert.for_window(w, "rollback_requested"), ["oncall"]))
    await asyncio.sleep(0)
    assert not task.done() and len(s.background) == 1  # the caller went on at once

    await s.drain(grace=10.0)

    assert task.done() and task.result() is True  # the json channel got it
    assert not s.background
    assert (await store.alert_events(w.id))["rollback_requested"] == "partial"


async def test_drain_cancels_what_outlives_its_grace(store: SqliteStore, metrics: Metrics) -> None:
    class Stuck:
        worst_case_s = 1.0

        async def send(self, alert: Alert, tags: Any, **how: Any) -> Any:
            await asyncio.Event().wait()

    alerts = WindowAlerts(store, Stuck())  # type: ignore[arg-type]
    s = services(store, alerts, metrics)
    w = window()
    task = s.spawn(alerts.emit(w, Alert.for_window(w, "passed"), []))
    await asyncio.sleep(0)

    await s.drain(grace=0.05)

    assert task.cancelled() and not s.background


async def test_a_store_failure_never_raises_into_the_round(
    json_sink: JsonSink, metrics: Metrics
) -> None:
    class DownStore:
        async def claim_alert(self, *args: Any) -> bool:
            raise RuntimeError("database is locked")

    alerts = WindowAlerts(DownStore(), make_notifier([json_sink.url()], metrics))  # type: ignore[arg-type]
    w = window()
    assert await alerts.emit(w, Alert.for_window(w, "passed"), []) is False
    assert json_sink.notifications == []


async def test_a_breach_that_clears_while_its_alert_is_sending_still_gets_its_resolve(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The breach's channel answers after 0.5 s; the rule is back within bounds a round
    (0.1 s) later, while the breach is still being sent: the resolve follows the breach
    instead of being dropped as owed to no one."""
    json_sink.script(Reply(status=200, delay=0.5))
    alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics))
    s = services(store, alerts, metrics)
    w = window()
    breach = Alert.for_window(w, "breach", rules=[rule("errors")])
    resolved = Alert.for_window(w, "resolved", rules=[rule("errors")])

    sent_breach = s.spawn(alerts.emit(w, breach, ["oncall"], key=breach_key("errors")))
    await asyncio.sleep(0.1)
    assert not sent_breach.done()
    sent_resolve = s.spawn(alerts.emit(w, resolved, ["oncall"], key=resolved_key("errors")))
    await s.drain(grace=10.0)

    assert sent_breach.result() is True and sent_resolve.result() is True
    assert [n.title for n in json_sink.notifications] == [
        "[postflight] production v2.4.1: errors breached",
        "[postflight] production v2.4.1: errors resolved",
    ]


# -- an alert cut off by a crash -----------------------------------------------------


LEASE_S = 2.0


async def crash_mid_send(
    path: Path, w: DeployWindow, sinks: list[JsonSink], metrics: Metrics, noted: int = 0
) -> None:
    """Emit `w`'s `passed` alert to `sinks` and kill the sender (its task is cancelled,
    its store closed, nothing after) once every sink had its request, and `noted`
    channels' acceptance was stored."""
    store = SqliteStore(path)
    await store.open()
    await store.create_window(w)
    alerts = WindowAlerts(store, make_notifier([s.url() for s in sinks], metrics), lease_s=LEASE_S)
    sending = asyncio.ensure_future(alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]))
    for sink in sinks:
        await sink.wait_arrived(1)
    for _ in range(1000):  # a channel's acceptance is stored just after its answer
        if await sent_to(store) >= noted:
            break
        await asyncio.sleep(0.01)
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    await store.close()


async def sent_to(store: SqliteStore) -> int:
    return sum(len(c.sent_to) for c in await store.unsettled_alerts(claimed_before=1e12))


async def restarted(path: Path, sinks: list[JsonSink], metrics: Metrics, *, after: float) -> int:
    """A new process on the same store, `after` seconds later: how many alerts its
    recovery took over (sent before returning)."""
    store = SqliteStore(path)
    await store.open()
    try:
        notifier = make_notifier([s.url() for s in sinks], metrics)
        clock = lambda: time.time() + after  # noqa: E731
        alerts = WindowAlerts(store, notifier, clock=clock, lease_s=LEASE_S)
        return await alerts.recover()
    finally:
        await store.close()


async def test_an_alert_cut_off_by_a_crash_is_sent_once_after_the_restart(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The sender died while the channel held the alert (no answer yet): the claim was
    final, and no restart ever sent it. Once its lease lapsed, the restarted agent sends
    it, once, with the same words; a second look finds nothing left to send."""
    path, w = tmp_path / "alerts.db", window()
    json_sink.script("hang")
    await crash_mid_send(path, w, [json_sink], metrics)
    assert json_sink.notifications == []

    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 1) == 1
    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 2) == 0

    assert [n.title for n in json_sink.notifications] == [
        "[postflight] production v2.4.1: deploy passed"
    ]
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.alert_events(w.id) == {"passed": "sent"}
    finally:
        await store.close()


async def test_a_claim_younger_than_its_lease_is_not_taken_over(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Its sender may still be sending (another replica, a slow mail server): taking it
    over would page twice."""
    path, w = tmp_path / "alerts.db", window()
    json_sink.script("hang")
    await crash_mid_send(path, w, [json_sink], metrics)

    assert await restarted(path, [json_sink], metrics, after=0.0) == 0
    assert json_sink.notifications == []


async def test_a_channel_that_took_it_before_the_crash_does_not_get_it_again(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Chat took the alert at once, the mail server was still on it at the crash: after
    the restart only the mail server gets it."""
    path, w = tmp_path / "alerts.db", window()
    slow = JsonSink(["hang"])
    await slow.start()
    try:
        await crash_mid_send(path, w, [json_sink, slow], metrics, noted=1)
        assert len(json_sink.notifications) == 1 and slow.notifications == []

        assert await restarted(path, [json_sink, slow], metrics, after=LEASE_S + 1) == 1
        assert len(json_sink.notifications) == 1 and len(slow.notifications) == 1
    finally:
        await slow.stop()


async def test_a_cut_off_alert_of_a_superseded_window_is_dropped(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """A superseded window fires nothing more (contract §2), a late alert included."""
    path, w = tmp_path / "alerts.db", window()
    json_sink.script("hang")
    await crash_mid_send(path, w, [json_sink], metrics)
    store = SqliteStore(path)
    await store.open()
    try:
        newer = dataclasses.replace(window("dep_01JDNEWER"), created_at=1.0)
        assert [old.id for old in (await store.create_window(newer)).superseded] == [w.id]
    finally:
        await store.close()

    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 1) == 1
    assert json_sink.notifications == []

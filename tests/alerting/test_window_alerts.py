"""One notification per deploy and event, across rounds and restarts (contract §4)."""

from __future__ import annotations

import asyncio
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
        async def send(self, alert: Alert, tags: Any) -> Any:
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

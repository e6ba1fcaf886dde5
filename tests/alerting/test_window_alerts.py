"""One notification per deploy and event, across rounds and restarts (contract §4)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.rollback.delivery import RollbackDelivery
from agent.settings import AlertChannel
from agent.store.base import Store, StoreUnreachable
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WatchServices
from alerting.events import Alert, breach_key, resolved_key
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.receivers import HangingServer, JsonSink, Reply
from tests.store.peek import rows


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

    async with opened(path) as second:  # the agent restarted
        again = WindowAlerts(second, notifier)
        assert await again.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
        assert await second.alert_events(w.id) == {"passed": "sent"}
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


def services(
    store: Store,
    alerts: WindowAlerts,
    metrics: Metrics,
    delivery: RollbackDelivery | None = None,
    *,
    kind: type[WatchServices] = WatchServices,
) -> WatchServices:
    """What a watch needs, its alerts through `alerts` (`kind`: a subclass, e.g. one that
    crashes); no `delivery` where no rollback is sent."""
    return kind(
        store=store,
        metrics=metrics,
        alerts=alerts,
        delivery=delivery,  # type: ignore[arg-type]
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
    else:
        raise AssertionError(f"{noted} channels' acceptance never stored: {await sent_to(store)}")
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    await store.close()


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteStore]:
    """The store at `path`, as a process (re)started on it opens it, closed after."""
    store = SqliteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def sent_to(store: SqliteStore) -> int:
    return sum(len(c.sent_to) for c in await store.unsettled_alerts(claimed_before=1e12))


async def restarted(path: Path, sinks: list[JsonSink], metrics: Metrics, *, after: float) -> int:
    """A new process on the same store, `after` seconds later: how many alerts its
    recovery took over (sent before returning)."""
    async with opened(path) as store:
        notifier = make_notifier([s.url() for s in sinks], metrics)
        clock = lambda: time.time() + after  # noqa: E731
        alerts = WindowAlerts(store, notifier, clock=clock, lease_s=LEASE_S)
        return await alerts.recover()


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
    async with opened(path) as store:
        assert await store.alert_events(w.id) == {"passed": "sent"}


async def test_an_alert_about_no_window_is_sent_once_per_mark_and_taken_over_after_a_crash(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """`notify` (a gate given up with no window to answer from) is claimed under its mark
    as a window's alert is: a second call under the same mark sends nothing, and one cut
    off mid-send is sent once by the restarted agent, not dropped as a window gone."""
    path = tmp_path / "alerts.db"
    alert = dataclasses.replace(
        Alert.for_window(window(), "integration_failed", reason="gate refused", call="gate"),
        deploy_id="none (staging window ended in time)",
    )
    json_sink.script("hang")
    async with opened(path) as store:
        notifier = make_notifier([json_sink.url()], metrics)
        alerts = WindowAlerts(store, notifier, lease_s=LEASE_S)
        sending = asyncio.ensure_future(alerts.notify("production:gate:7", alert, ["oncall"]))
        await json_sink.wait_arrived(1)
        sending.cancel()  # the sender killed mid-send
        with contextlib.suppress(asyncio.CancelledError):
            await sending
    assert json_sink.notifications == []
    json_sink.script()
    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 1) == 1
    async with opened(path) as store:
        alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics), lease_s=LEASE_S)
        assert not await alerts.notify("production:gate:7", alert, ["oncall"])
        assert await alerts.notify("production:gate:8", alert, ["oncall"])
        assert await store.alert_events("no-window:production:gate:7") == {
            "integration_failed": "sent"
        }
    assert len(json_sink.notifications) == 2  # gate 7 once (taken over), gate 8 once


class AwayStore(SqliteStore):
    """A store that some writes fail while `away` (which, says the subclass)."""

    away = False


@contextlib.asynccontextmanager
async def sending_while_away(
    store: AwayStore, sink: JsonSink, metrics: Metrics
) -> AsyncIterator[asyncio.Future[bool]]:
    """`window()`'s `passed` alert being sent to `sink`, `store` (opened here, closed
    after) away from its claim on."""
    await store.open()
    try:
        w = window()
        await store.create_window(w)
        alerts = WindowAlerts(store, make_notifier([sink.url()], metrics), lease_s=LEASE_S)
        store.away = True
        yield asyncio.ensure_future(alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]))
    finally:
        await store.close()


class ReadOnlyAfterTheClaim(AwayStore):
    """A store that takes the alert's claim, then no write while `away` (a PostgreSQL
    failover's read-only spell, a restart) as the channel takes the alert."""

    async def note_alert_channel(self, window_id: str, event: str, channel: str) -> None:
        if self.away:
            raise StoreUnreachable("cannot reach the store: read-only")
        await super().note_alert_channel(window_id, event, channel)

    async def record_alert(self, *args: Any, **kwargs: Any) -> None:
        if self.away:
            raise StoreUnreachable("cannot reach the store: read-only")
        await super().record_alert(*args, **kwargs)


async def test_a_sent_alert_whose_outcome_the_store_could_not_take_is_not_sent_again(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The channel took the alert while the store took no writes: the live sender holds
    its outcome and stores it once the store answers, so a replica looking after the
    lease finds nothing to take over. Counted at the sink: 1, where the sender gave up
    ("not sent") and the replica sent it again (2; `bench/ha_faults.py` seed 704)."""
    path = tmp_path / "alerts.db"
    store = ReadOnlyAfterTheClaim(path)
    async with sending_while_away(store, json_sink, metrics) as sending:
        await json_sink.wait_arrived(1)
        await asyncio.sleep(0.5)  # the store away a while after the send
        store.away = False
        delivered = await asyncio.wait_for(sending, 10)
        # a replica (or this agent restarted) looks once the claim's lease lapsed
        taken = await restarted(path, [json_sink], metrics, after=LEASE_S + 1)
        events = await store.alert_events(window().id)
    assert [n.title for n in json_sink.notifications] == [
        "[postflight] production v2.4.1: deploy passed"
    ]
    assert (delivered, taken, events) == (True, 0, {"passed": "sent"})


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
    async with opened(path) as store:
        newer = dataclasses.replace(window("dep_01JDNEWER"), created_at=1.0)
        assert [old.id for old in (await store.create_window(newer)).superseded] == [w.id]

    assert await restarted(path, [json_sink], metrics, after=LEASE_S + 1) == 1
    assert json_sink.notifications == []


# -- a channel that failed is retried ------------------------------------------------


RETRY_DELAYS = (0.1, 0.2, 0.3)
"""The retries' backoff here: sub-second, the daemon's (5 s, 30 s, 2 min) scaled down."""


@contextlib.asynccontextmanager
async def retrying(alerts: WindowAlerts, s: WatchServices) -> Any:
    """`alerts`' background loop (the daemon's `alert-recovery` task), then a drain."""
    task = asyncio.create_task(alerts.run(s.spawn, interval=0.1))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.drain(grace=10.0)


async def settled(store: Any, within: float = 20.0) -> None:
    """Until no retry is owed (the daemon's timing is not the test's subject)."""
    for _ in range(int(within / 0.05)):
        if await store.next_alert_retry() is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"retries still owed after {within}s")


def count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("postflight_alerts_total", {"result": result}) or 0.0


async def test_a_sink_down_for_the_first_attempts_gets_the_alert_once_it_is_back(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics, caplog: Any
) -> None:
    """The audit's case: the sink was down while the breach went out, and the alert was
    lost for good. It is retried in the background, and arrives once the sink is back,
    once; `failed` counted the first failure, `sent` the delivery."""
    caplog.set_level("INFO", logger="postflight.alerting")
    json_sink.script(503, 503)  # down for the first attempt and the first retry
    alerts = WindowAlerts(
        store, make_notifier([json_sink.url()], metrics), retry_delays=RETRY_DELAYS
    )
    s = services(store, alerts, metrics)
    w = window()
    await store.create_window(w)
    breach = Alert.for_window(w, "breach", rules=[rule("errors")])

    async with retrying(alerts, s):
        assert await alerts.emit(w, breach, ["oncall"], key=breach_key("errors")) is False
        await json_sink.wait_for(1)
        await settled(store)
        await asyncio.sleep(0.5)  # longer than every delay: nothing more comes

    assert [n.title for n in json_sink.notifications] == [
        "[postflight] production v2.4.1: errors breached"
    ]
    assert json_sink.arrived == 3
    assert await store.alert_events(w.id) == {"breach:errors": "sent"}
    assert count(metrics, "failed") == 1 and count(metrics, "sent") == 1
    lines = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("postflight")
    ]
    assert [m for lvl, m in lines if lvl == "WARNING"] == [
        m for _, m in lines if "failed on json://127.0.0.1:" in m and "retry" not in m
    ] and len([m for lvl, m in lines if lvl == "WARNING"]) == 1, lines
    assert sum("delivered on retry 2 to json://127.0.0.1:" in m for _, m in lines) == 1, lines
    assert not [m for lvl, m in lines if lvl == "ERROR"], lines


async def test_a_sink_down_throughout_gets_nothing_and_is_retried_a_bounded_number_of_times(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics, caplog: Any
) -> None:
    """Three retries, then one error naming the channel by scheme and host only."""
    caplog.set_level("INFO", logger="postflight.alerting")
    json_sink.fail_always(503)
    url = json_sink.url("hooks/tok-1a2b3c4d5e")
    alerts = WindowAlerts(store, make_notifier([url], metrics), retry_delays=RETRY_DELAYS)
    s = services(store, alerts, metrics)
    w = window()
    await store.create_window(w)

    async with retrying(alerts, s):
        await alerts.emit(w, Alert.for_window(w, "rollback_requested"), ["oncall"])
        await settled(store)
        await asyncio.sleep(0.5)

    assert json_sink.notifications == []
    assert json_sink.arrived == 1 + len(RETRY_DELAYS)
    assert await store.alert_events(w.id) == {"rollback_requested": "failed"}
    assert count(metrics, "failed") == 1 and count(metrics, "sent") == 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "after 3 retries" in errors[0], errors
    assert f"json://127.0.0.1:{json_sink.port}" in errors[0] and "tok-1a2b" not in errors[0]


async def test_two_channels_one_failing_the_other_gets_exactly_one(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The retry goes to the failed channel only: the one that took it is never sent it
    again."""
    flaky = JsonSink([503, 503])
    await flaky.start()
    try:
        notifier = make_notifier([json_sink.url(), flaky.url()], metrics)
        alerts = WindowAlerts(store, notifier, retry_delays=RETRY_DELAYS)
        s = services(store, alerts, metrics)
        w = window()
        await store.create_window(w)
        async with retrying(alerts, s):
            assert await alerts.emit(w, Alert.for_window(w, "rollback_requested"), []) is True
            await flaky.wait_for(1)
            await settled(store)
            await asyncio.sleep(0.5)
        assert len(json_sink.notifications) == 1 and json_sink.arrived == 1
        assert len(flaky.notifications) == 1 and flaky.arrived == 3
    finally:
        await flaky.stop()
    assert await store.alert_events(w.id) == {"rollback_requested": "sent"}
    assert count(metrics, "sent") == 2 and count(metrics, "failed") == 1


async def test_a_retry_owed_at_a_stop_is_sent_once_by_the_restarted_agent(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The retry schedule is in the store: an agent stopped (or killed) while a retry was
    owed leaves it to the next one, or to any replica."""
    path, w = tmp_path / "alerts.db", window()
    json_sink.script(503)
    first = SqliteStore(path)
    await first.open()
    await first.create_window(w)
    slow = (30.0, 30.0, 30.0)  # this agent stops long before its first retry
    alerts = WindowAlerts(first, make_notifier([json_sink.url()], metrics), retry_delays=slow)
    assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
    await first.close()
    assert json_sink.notifications == []

    async with opened(path) as second:
        later = lambda: time.time() + 31.0  # noqa: E731
        again = WindowAlerts(
            second, make_notifier([json_sink.url()], metrics), clock=later, retry_delays=slow
        )
        assert await again.retry() == 1
        assert await again.retry() == 0
        assert await second.alert_events(w.id) == {"passed": "sent"}
    assert len(json_sink.notifications) == 1


async def test_a_retry_of_a_window_cancelled_meanwhile_is_dropped(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """A cancelled or superseded window fires nothing more (contract §2), as a cut-off
    alert of it is dropped: its failed alert is not retried either."""
    json_sink.script(503)
    alerts = WindowAlerts(
        store, make_notifier([json_sink.url()], metrics), retry_delays=RETRY_DELAYS
    )
    s = services(store, alerts, metrics)
    w = window()
    await store.create_window(w)
    breach = Alert.for_window(w, "breach", rules=[rule("errors")])
    await alerts.emit(w, breach, ["oncall"], key=breach_key("errors"))
    await store.cancel_window(w.id, time.time())

    async with retrying(alerts, s):
        await settled(store)

    assert json_sink.notifications == [] and json_sink.arrived == 1
    assert await store.alert_events(w.id) == {"breach:errors": "failed"}


async def test_a_retry_cut_off_by_a_crash_is_taken_over_without_resending_to_who_took_it(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Both channels failed the alert; at its first retry chat took it, the mail server
    was still on it when the agent died. Once that retry's lease lapsed, the restarted
    agent retries the mail server only."""
    path, w = tmp_path / "alerts.db", window()
    slow = JsonSink([503, "hang"])
    await slow.start()
    json_sink.script(503)
    try:
        urls = [json_sink.url(), slow.url()]
        store = SqliteStore(path)
        await store.open()
        await store.create_window(w)
        now = (0.0, 0.0, 0.0)  # every retry due at once
        alerts = WindowAlerts(
            store, make_notifier(urls, metrics), lease_s=LEASE_S, retry_delays=now
        )
        assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
        sending = asyncio.ensure_future(alerts.retry())
        await slow.wait_arrived(2)
        for _ in range(1000):  # chat's acceptance is stored just after its answer
            if (await rows(store, "SELECT sent_to FROM alerts"))[0][0]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("chat's acceptance was never stored")
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        await store.close()
        assert len(json_sink.notifications) == 1 and slow.notifications == []

        async with opened(path) as again:
            later = lambda: time.time() + LEASE_S + 1  # noqa: E731
            restarted = WindowAlerts(
                again, make_notifier(urls, metrics), clock=later, retry_delays=now
            )
            assert await restarted.retry() == 1
            assert await again.alert_events(w.id) == {"passed": "sent"}
        assert len(json_sink.notifications) == 1 and len(slow.notifications) == 1
    finally:
        await slow.stop()


async def replicas_retry_once(stores: list[Store], json_sink: JsonSink, metrics: Metrics) -> None:
    """Three agents on `stores` (one database), each with its retry loop: the channel,
    down for the first attempt, gets the alert once."""
    w = window()
    json_sink.script(503)
    for each in stores:
        await each.open()
    await stores[0].create_window(w)
    replicas = [
        WindowAlerts(each, make_notifier([json_sink.url()], metrics), retry_delays=(0.05,))
        for each in stores
    ]
    loops = [retrying(r, services(st, r, metrics)) for r, st in zip(replicas, stores, strict=True)]
    try:
        async with loops[0], loops[1], loops[2]:
            await replicas[0].emit(w, Alert.for_window(w, "passed"), ["oncall"])
            await json_sink.wait_for(1)
            await settled(stores[0])
            await asyncio.sleep(0.5)
    finally:
        for each in stores:
            await each.close()
    assert len(json_sink.notifications) == 1 and json_sink.arrived == 2


async def test_replicas_retry_a_failed_alert_once_between_them(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    stores: list[Store] = [SqliteStore(tmp_path / "alerts.db") for _ in range(3)]
    await replicas_retry_once(stores, json_sink, metrics)


async def test_replicas_on_postgresql_retry_a_failed_alert_once_between_them(
    pg_url: str, json_sink: JsonSink, metrics: Metrics
) -> None:
    stores: list[Store] = [PostgresStore(pg_url) for _ in range(3)]
    await replicas_retry_once(stores, json_sink, metrics)

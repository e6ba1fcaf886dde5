"""A window's end alert and a settled rollback's alert survive a kill -9 right after the
change that calls for them (contract §4: one notification per deploy and event).

The crash is simulated where it hurts: the process dies just after the store's commit,
before anything it spawned runs (`Crashed.spawn` drops the work). A fresh agent on the
same store, past the alert lease, must send the alert, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from agent.analysis.types import RuleVerdict, Verdict
from agent.analysis.verdicts import Glance
from agent.metrics import Metrics
from agent.records import DeployWindow, RollbackIntent, RoundRecord
from agent.rollback.delivery import RollbackDelivery
from agent.settings import AlertChannel, AlertRouting, EnvironmentSettings
from agent.store.base import Taken
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WatchServices, WindowWatch, deliver_rollback
from alerting.notifier import Notifier
from common.redaction import Redactor
from tests.alerting.test_window_alerts import services, window
from tests.receivers import JsonSink, RollbackReceiver
from tests.rollback.support import (
    REQUESTED_AT,
    SECRET,
    make_window,
    settings,
    stored_intent,
)
from tests.rollback.test_rollback_delivery import NewerDeployDuringBackoff, the_fix

LEASE_S = 2.0
TITLE = "[postflight] production v2.4.1: deploy passed"
FAILED_TITLE = "[postflight] production v2.4.1: ROLLBACK FAILED, act now"


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
    watching = services(store, alerts, metrics, kind=Crashed if crash else WatchServices)
    env = EnvironmentSettings(base_url="http://127.0.0.1:9", alerts=AlertRouting(tags=["oncall"]))
    [held] = await store.claim_windows("test", time.time(), 30.0)
    return WindowWatch(held, env, None, watching)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def a_watch(
    store: SqliteStore, sink: JsonSink, metrics: Metrics, *, crash: bool = False
) -> AsyncIterator[WindowWatch]:
    """`store` opened with the window in it and its watch (`watch`), alerts to `sink`;
    what the watch spawned is drained before the store closes."""
    await store.open()
    try:
        await store.create_window(window())
        alerts = WindowAlerts(store, notifier(sink, metrics), lease_s=LEASE_S)
        w = await watch(store, alerts, metrics, crash=crash)
        yield w
        with contextlib.suppress(asyncio.CancelledError):
            await w.s.drain(5.0)
    finally:
        await store.close()


async def pass_window(path: Path, sink: JsonSink, metrics: Metrics, *, crash: bool) -> None:
    """Open the window and end it `passed` (crashing after the commit, with `crash`)."""
    async with a_watch(SqliteStore(path), sink, metrics, crash=crash) as w:
        await w._end("pass", Verdict("pass", "every rule passed", ()), {"outcome": "pass"})


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


# -- the final round's own alerts ------------------------------------------------------


class DiesAtTheEnd(SqliteStore):
    """A loaded store (a round's alert claims come late) on a process killed the instant
    its window's end commits: no alert is claimed or taken over after that."""

    dead = False

    async def alert_events(self, window_id: str) -> dict[str, str]:
        await asyncio.sleep(0.2)  # the breach's claim queues behind the round's writes
        return await super().alert_events(window_id)

    async def claim_alert(self, *args: Any, **kwargs: Any) -> bool:
        if self.dead:
            raise asyncio.CancelledError  # the kill
        return await super().claim_alert(*args, **kwargs)

    async def take_alert(self, *args: Any, **kwargs: Any) -> Taken | None:
        if self.dead:
            raise asyncio.CancelledError
        return await super().take_alert(*args, **kwargs)

    async def finish_window(self, *args: Any, **kwargs: Any) -> bool:
        ended = await super().finish_window(*args, **kwargs)
        self.dead = True
        return ended


async def test_a_kill_as_the_window_fails_loses_none_of_its_last_rounds_alerts(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The final round's breach was claimed by a task spawned beside the window's end: a
    kill once the end was stored and before that claim lost the breach for good (no later
    round re-emits it; a CI run's kill -9 trial saw it). The end now waits for the round's
    claims: counted at the sink over the run and the restart, each once."""
    path = tmp_path / "end.db"
    async with a_watch(DiesAtTheEnd(path), json_sink, metrics) as w:
        failing = RuleVerdict("errors", "checks", "error_rate", "fail", 0.5, 0.0, "max 0.05", "")
        verdict = Verdict("fail", "errors breached", (failing,))
        record = RoundRecord(w.window.id, 1, time.time(), {})
        worded = (verdict, {"outcome": "fail", "rules": []})
        assert await w._settle(record, Glance("fail", ()), worded) is False
    await recovered(path, json_sink, metrics)  # whatever the kill cut off
    assert await recovered(path, json_sink, metrics) == 0
    assert sorted(n.title for n in json_sink.notifications) == [
        "[postflight] production v2.4.1: deploy failed (errors)",
        "[postflight] production v2.4.1: errors breached",
    ]


# -- a settled rollback ----------------------------------------------------------------


class DiesAfterSettle(SqliteStore):
    """A process killed the instant its rollback's outcome is committed."""

    async def settle_rollback(self, intent: RollbackIntent, *args: Any) -> bool:
        settled = await super().settle_rollback(intent, *args)
        if intent.state != "pending":
            raise asyncio.CancelledError  # the kill: nothing after the commit runs
        return settled


def rollback_services(
    store: SqliteStore, metrics: Metrics, sink: JsonSink, delivery: RollbackDelivery
) -> WatchServices:
    """What `deliver_rollback` needs, its alerts to `sink`."""
    alerts = WindowAlerts(store, notifier(sink, metrics), lease_s=LEASE_S)
    return services(store, alerts, metrics, delivery)


def rollback_env(url: str) -> EnvironmentSettings:
    """An environment whose rollback goes to `url`, its alerts to the `oncall` channels."""
    return EnvironmentSettings(
        base_url="http://127.0.0.1:9", rollback=settings(url), alerts=AlertRouting(tags=["oncall"])
    )


async def refused_rollback(
    path: Path, store: SqliteStore, sink: JsonSink, metrics: Metrics, url: str
) -> None:
    """A failed window's rollback, refused by its webhook (a 400: failed at once)."""
    await store.open()
    delivery = RollbackDelivery(store, metrics, owner="test")
    try:
        intent = await stored_intent(store)
        watching = rollback_services(store, metrics, sink, delivery)
        env = rollback_env(url)
        await deliver_rollback(make_window(), intent, env, watching)
    finally:
        await delivery.aclose()
        await store.close()


async def test_a_crash_right_after_a_rollback_failed_does_not_lose_its_page(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics, rollback_receiver: Any
) -> None:
    """The outcome, a window read and the alert's claim were separate steps: a kill in
    those milliseconds lost exactly the "ROLLBACK FAILED, act now" page."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    path = tmp_path / "rollback.db"
    with pytest.raises(asyncio.CancelledError):
        await refused_rollback(path, DiesAfterSettle(path), json_sink, metrics, receiver.url)
    assert json_sink.notifications == []

    assert await recovered(path, json_sink, metrics) == 1
    assert await recovered(path, json_sink, metrics) == 0
    assert [n.title for n in json_sink.notifications] == [FAILED_TITLE]
    assert "rollback NOT delivered after 1 attempt: HTTP 400" in json_sink.notifications[0].message


async def test_a_failed_rollback_pages_once(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Claimed with the outcome and sent at once by its sender; recovery, even past the
    lease, sends nothing again."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    path = tmp_path / "rollback.db"
    await refused_rollback(path, SqliteStore(path), json_sink, metrics, receiver.url)
    assert [n.title for n in json_sink.notifications] == [FAILED_TITLE]

    assert await recovered(path, json_sink, metrics) == 0
    assert [n.title for n in json_sink.notifications] == [FAILED_TITLE]


# -- a rollback given up for a newer deploy ----------------------------------------------


@pytest.mark.parametrize(
    ("first", "sent"),
    [
        ("503", "1 attempt sent, not accepted"),
        # a receiver stalled past the attempt's timeout: the attempt went out, and may
        # have been acted on, where the title said ROLLBACK NOT SENT
        ("hang", "1 attempt sent, its answer never came; the receiver may have acted on it"),
    ],
    ids=["answered-503", "unanswered"],
)
async def test_a_rollback_given_up_for_a_newer_deploy_does_not_say_roll_back_by_hand(
    first: str,
    sent: str,
    store: SqliteStore,
    json_sink: JsonSink,
    metrics: Metrics,
    rollback_receiver: Any,
) -> None:
    """v2.4.2 went out while the rollback of v2.4.1 waited out a 503 (or an attempt that
    timed out): rolling back by hand would undo v2.4.2 too, yet the page's headline and
    title said to ("act now"), and only its Why line told otherwise. What went out before
    is said as it is."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(first, 200))
    newer = make_window(
        "dep_01JDNEWER", version="v2.4.2", deployed_at=REQUESTED_AT + 20,
        ends_at=REQUESTED_AT + 620, created_at=REQUESTED_AT + 20,
    )  # fmt: skip
    delivery = RollbackDelivery(
        store,
        metrics,
        owner="test",
        sleep=NewerDeployDuringBackoff(store, newer),
        random=lambda: 0.5,
        clock=lambda: REQUESTED_AT + 30,
    )
    watching = rollback_services(store, metrics, json_sink, delivery)
    env = rollback_env(receiver.url)
    env = env.model_copy(update={"rollback": settings(receiver.url, timeout=0.3)})
    try:
        await deliver_rollback(make_window(), await stored_intent(store), env, watching)
    finally:
        await delivery.aclose()

    assert receiver.delivered == {}
    [page] = json_sink.notifications
    assert page.title == (
        f"[postflight] production v2.4.1: ROLLBACK GIVEN UP, v2.4.2 deployed since: {sent}"
    )
    headline = page.message.split("\n\n")[0]
    assert headline.startswith(
        f"**Rollback given up: v2.4.2 (dep_01JDNEWER) was deployed since.** {sent[0].upper()}"
        f"{sent[1:]}"
    ), headline
    assert "do not roll back by hand: v2.4.2's own window judges it" in headline
    assert "did not accept it" not in page.message


class RegisteredWhileTheAttemptIsOut:
    """The pipeline's registration of v2.4.2 commits once the sender's attempt is recorded
    and on its way: too late for `begin_attempt` to stop it (a real SQLite store under it)."""

    def __init__(self, inner: SqliteStore, newer: DeployWindow) -> None:
        self._inner, self.newer = inner, newer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def begin_attempt(self, *args: Any) -> int | None:
        number = await self._inner.begin_attempt(*args)
        await self._inner.create_window(self.newer)
        return number


async def test_a_rollback_delivered_after_a_newer_deploy_warns_it_may_have_undone_it(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics, rollback_receiver: Any
) -> None:
    """v2.4.2 registered while the attempt was out, and the receiver then answered 2xx:
    delivered (it was), but "rollback delivered" alone let on-call think all was well while
    the receiver may have rolled production back past v2.4.2. The alert names v2.4.2."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    newer = the_fix()
    delivery = RollbackDelivery(
        RegisteredWhileTheAttemptIsOut(store, newer),  # type: ignore[arg-type]
        metrics, owner="test", clock=lambda: REQUESTED_AT + 30,
    )  # fmt: skip
    watching = rollback_services(store, metrics, json_sink, delivery)
    try:
        env = rollback_env(receiver.url)
        await deliver_rollback(make_window(), await stored_intent(store), env, watching)
    finally:
        await delivery.aclose()

    assert len(receiver.delivered) == 1
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.state == "delivered"
    [page] = json_sink.notifications
    assert page.title == (
        "[postflight] production v2.4.1: rollback delivered after v2.4.2 was deployed:"
        " check what serves"
    )
    assert page.message.startswith(
        "**Rollback delivered after v2.4.2 (dep_01JDNEWER) was deployed.** The pipeline's"
        " webhook accepted it while v2.4.2 was already out: it may have rolled back past"
        " v2.4.2, to v2.4.0. Check which version serves, and deploy v2.4.2 again if it was"
        " rolled back."
    ), page.message
    assert page.type == "failure"


class ClaimsLate(DiesAtTheEnd):
    """`DiesAtTheEnd`, its alert claims queued behind other writes (a loaded store)."""

    async def claim_alert(self, *args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.2)
        return await super().claim_alert(*args, **kwargs)


async def test_a_kill_as_a_bug_ends_the_window_loses_none_of_its_last_rounds_alerts(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """A round whose judging raised (a bug) ends the window inconclusive (`_broken`):
    the alerts spawned in that round before it (a check's `check_bug`) were claimed beside
    that end, as a verdict's end's were, and a kill once it was stored lost them."""
    from alerting.events import check_bug_key

    path = tmp_path / "end.db"
    async with a_watch(ClaimsLate(path), json_sink, metrics) as w:
        w._alert("check_bug", key=check_bug_key("health"), reason="its bug", check="health")
        await w._broken("the judge", 1, ValueError("a bug"))
    await recovered(path, json_sink, metrics)  # whatever the kill cut off
    assert await recovered(path, json_sink, metrics) == 0
    titles = sorted(n.title for n in json_sink.notifications)
    assert len(titles) == 2 and any("health" in t for t in titles), titles

"""A later alert catches a channel up on the earlier one it still owes.

A breach that reached channel A but failed on B is retried on B later; a resolve raised
meanwhile goes to every channel, and the breach's retry then reached B after it: B's
newest alert said the window was breached when it had cleared. Likewise "rollback
requested" retried on a channel after "ROLLBACK FAILED" reached it. Now the later alert
first sends the earlier one to the channel that still owes it, once, then itself; the
earlier one is settled if delivered, keeps its retry if refused again (one notification
per deploy and event), and neither is counted failed twice. A retry pass sends a window's
retries in the order raised, so a channel down throughout gets each alert once, in order.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.store.base import AlertRetry, OwedRetry, Store
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from alerting.events import Alert, AlertEvent, breach_key, resolved_key
from tests.alerting.test_window_alerts import make_notifier, rule, window
from tests.receivers import JsonSink, SlowOnTitles

LATER_S = 30.0
"""The first retry's delay: far past the later alert, as a real 5 s one is past a resolve
a round later."""

TITLES: dict[str, str] = {
    "breach": "breached",
    "resolved": "resolved",
    "rollback_requested": "rollback requested",
    "rollback_failed": "ROLLBACK FAILED",
    "rollback_delivered": "rollback delivered",
}

PAIRS: dict[str, tuple[tuple[str, AlertEvent], tuple[str, AlertEvent]]] = {
    "breach, then its resolve": (
        (breach_key("error-rate"), "breach"),
        (resolved_key("error-rate"), "resolved"),
    ),
    "breach, then the rollback it called for": (
        (breach_key("error-rate"), "breach"),
        ("rollback_requested", "rollback_requested"),
    ),
    "request, then ROLLBACK FAILED": (
        ("rollback_requested", "rollback_requested"),
        ("rollback_failed", "rollback_failed"),
    ),
    "request, then rollback delivered": (
        ("rollback_requested", "rollback_requested"),
        ("rollback_delivered", "rollback_delivered"),
    ),
}


@pytest.fixture
async def refusing() -> AsyncIterator[JsonSink]:
    """Channel B: refuses its first request (the earlier alert), takes every other."""
    sink = JsonSink([503])
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


class HeldOnTitles(SlowOnTitles):
    """`SlowOnTitles` that counts the requests it began holding (`arrived` counts them
    only once held)."""

    def __init__(self, slow: list[str], delay: float) -> None:
        super().__init__(slow, delay)
        self.held = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            self.held += 1
            await self._notify()
        return await super()._handle(request)

    async def wait_held(self, n: int) -> None:
        await self._wait_until(lambda: self.held >= n, 10.0)


async def detail_of(store: SqliteStore, event: str) -> str:
    """The stored detail of the window's `event` alert."""
    row = await store._fetchone("SELECT detail FROM alerts WHERE event = ?", event)
    assert row is not None
    return str(row[0])


class SlowTaker(SqliteStore):
    """A busy store: a taken retry comes back late, and a window's owed retries are read
    late, so a retry pass's later task reads them after the pass took the earlier one and
    before that one's task began."""

    async def take_alert_retry(self, *args: Any, **kwargs: Any) -> AlertRetry | None:
        taken = await super().take_alert_retry(*args, **kwargs)
        await asyncio.sleep(0.3)
        return taken

    async def alert_retries_of(self, window_id: str) -> list[OwedRetry]:
        await asyncio.sleep(0.15)
        return await super().alert_retries_of(window_id)


def titles(sink: JsonSink) -> list[str]:
    return [n.title for n in sink.notifications]


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_later_alert_catches_a_channel_up_on_the_earlier_one_it_owes(
    store: SqliteStore, json_sink: JsonSink, refusing: JsonSink, metrics: Metrics, pair: str
) -> None:
    (first_key, first), (then_key, then) = PAIRS[pair]
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    notifier = make_notifier([json_sink.url(), refusing.url()], metrics)
    alerts = WindowAlerts(store, notifier, clock=clock, retry_delays=(LATER_S, LATER_S))
    w = window()
    await store.create_window(w)
    rules = [rule("error-rate")]

    earlier = Alert.for_window(w, first, rules=rules)
    assert await alerts.emit(w, earlier, ["oncall"], key=first_key) is True  # A took it
    assert refusing.arrived == 1 and refusing.notifications == []
    later = Alert.for_window(w, then, rules=rules)
    assert await alerts.emit(w, later, ["oncall"], key=then_key) is True

    offset[0] = LATER_S + 1  # the earlier alert's retry would be due now
    retried = [await alerts.retry()]
    offset[0] = 10 * LATER_S
    retried.append(await alerts.retry())

    expected = [TITLES[first], TITLES[then]]
    for sink in (json_sink, refusing):
        got = titles(sink)
        assert len(got) == 2, (sink is refusing, got)
        assert all(t in title for t, title in zip(expected, got, strict=True)), got
    assert refusing.arrived == 3  # the refused first, the catch-up, the later alert
    assert retried == [0, 0]  # superseded on B: nothing owed
    events = await store.alert_events(w.id)
    assert events[first_key] == "sent" and events[then_key] == "sent", events
    failed = metrics.registry.get_sample_value("postflight_alerts_total", {"result": "failed"})
    assert failed == 1  # the earlier alert's failure on B, counted once


async def breached(
    store: Store, sinks: list[JsonSink], metrics: Metrics, offset: list[float]
) -> tuple[WindowAlerts, DeployWindow]:
    """A window's breach of `error-rate`, emitted to `sinks` on `store` by alerts whose
    clock runs `offset[0]` seconds ahead (its retries `LATER_S` after a failure)."""
    clock = lambda: time.time() + offset[0]  # noqa: E731
    notifier = make_notifier([s.url() for s in sinks], metrics)
    alerts = WindowAlerts(store, notifier, clock=clock, retry_delays=(LATER_S, LATER_S))
    w = window()
    await store.create_window(w)
    breach = Alert.for_window(w, "breach", rules=[rule("error-rate")])
    assert await alerts.emit(w, breach, ["oncall"], key=breach_key("error-rate"))
    return alerts, w


async def breached_then_resolved(
    store: Store, sinks: list[JsonSink], metrics: Metrics, offset: list[float]
) -> tuple[WindowAlerts, DeployWindow]:
    """`breached`, then its resolve."""
    alerts, w = await breached(store, sinks, metrics, offset)
    resolve = Alert.for_window(w, "resolved", rules=[rule("error-rate")])
    assert await alerts.emit(w, resolve, ["oncall"], key=resolved_key("error-rate"))
    return alerts, w


async def test_a_channel_back_between_a_refused_catch_up_and_the_later_alert_gets_both_in_order(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The channel refused the breach and its catch-up, then was back for the resolve: it
    took the resolve, then the breach on its retry (its newest alert: breached). Now the
    resolve waits there for its own retry, and the retry pass sends the breach first (its
    retry kept as it was, its count too: the catch-up was the resolve's), then the resolve:
    each once, in order, each counted failed once (the channel did not have it when sent).
    The other channel took the resolve at once."""
    down = JsonSink([503, 503])  # refuses the breach and its catch-up
    await down.start()
    try:
        offset = [0.0]
        alerts, w = await breached_then_resolved(store, [json_sink, down], metrics, offset)
        assert (down.arrived, len(titles(json_sink))) == (2, 2), titles(json_sink)
        offset[0] = 10 * LATER_S
        retried = await alerts.retry()
        got = titles(down)
        assert len(got) == 2 and down.arrived == 4 and retried == 2, got
        assert TITLES["breach"] in got[0] and TITLES["resolved"] in got[1], got
        assert (await alerts.retry(), len(titles(down))) == (0, 2)  # once: nothing owed
    finally:
        await down.stop()
    events = await store.alert_events(w.id)
    assert events == {"breach:error-rate": "sent", "resolved:error-rate": "sent"}, events
    failed = metrics.registry.get_sample_value("postflight_alerts_total", {"result": "failed"})
    assert failed == 2
    detail = await detail_of(store, breach_key("error-rate"))
    assert "delivered on retry 1" in detail, detail


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_channel_down_throughout_gets_every_alert_once_in_order_when_back(
    tmp_path: Path, sqlite_template: Path, json_sink: JsonSink, metrics: Metrics, pair: str
) -> None:
    """Down for the earlier alert and its catch-up (the later one held there behind it,
    `tests/alerting/test_held_behind.py`): back up, the retry
    pass sends both, the earlier one first, though the later one's was due first (the
    earlier one's first retry failed too, and its next waits longer) and both run at once
    (spawned, as the daemon runs them) and the store is slow to hand the earlier one
    over: the later one's task began first, found the earlier one taken, not yet under
    way, and went to the channel first (`_in_raised_order`)."""
    (first_key, first), (then_key, then) = PAIRS[pair]
    down = JsonSink([503] * 3)  # the earlier, its retry 1, its catch-up
    shutil.copyfile(sqlite_template, tmp_path / "postflight.db")
    store = SlowTaker(tmp_path / "postflight.db")
    await store.open()
    store._held_as("web-1")  # as the daemon's: a taken retry is stamped with its run
    await down.start()
    try:
        offset = [0.0]
        clock = lambda: time.time() + offset[0]  # noqa: E731
        notifier = make_notifier([json_sink.url(), down.url()], metrics)
        alerts = WindowAlerts(store, notifier, clock=clock, retry_delays=(10.0, 100.0, 100.0))
        w = window()
        await store.create_window(w)
        rules = [rule("error-rate")]
        earlier = Alert.for_window(w, first, rules=rules)
        assert await alerts.emit(w, earlier, ["oncall"], key=first_key)
        offset[0] = 11.0
        assert await alerts.retry() == 1  # refused: its next is due at 111
        later = Alert.for_window(w, then, rules=rules)
        assert await alerts.emit(w, later, ["oncall"], key=then_key)  # due at 22
        assert down.notifications == [] and down.arrived == 3
        offset[0] = 200.0
        tasks: list[asyncio.Task[Any]] = []
        assert await alerts.retry(lambda work: tasks.append(asyncio.ensure_future(work))) == 2
        await asyncio.gather(*tasks)
        assert await alerts.retry() == 0
        got = titles(down)
        expected = [TITLES[first], TITLES[then]]
        assert len(got) == 2 and all(t in g for t, g in zip(expected, got, strict=True)), got
        events = await store.alert_events(w.id)
        assert events[first_key] == "sent" and events[then_key] == "sent", events
    finally:
        await down.stop()
        await store.close()


async def test_a_replica_s_later_alert_catches_up_on_the_retry_another_owes(
    store: SqliteStore, json_sink: JsonSink, refusing: JsonSink, metrics: Metrics
) -> None:
    """The retry owed is in the store: the replica (or the restarted agent) that sends
    the later alert catches the channel up, and the first one's scan finds nothing due."""
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    urls = [json_sink.url(), refusing.url()]
    delays = (LATER_S, LATER_S)
    one = WindowAlerts(store, make_notifier(urls, metrics), clock=clock, retry_delays=delays)
    other = WindowAlerts(store, make_notifier(urls, metrics), clock=clock, retry_delays=delays)
    w = window()
    await store.create_window(w)
    request = Alert.for_window(w, "rollback_requested", rules=[rule("error-rate")])
    assert await one.emit(w, request, ["oncall"]) is True
    failed = Alert.for_window(w, "rollback_failed")
    assert await other.emit(w, failed, ["oncall"]) is True
    offset[0] = 10 * LATER_S
    retried = [await one.retry(), await other.retry()]
    got = titles(refusing)
    assert len(got) == 2 and TITLES["rollback_requested"] in got[0], got
    assert TITLES["rollback_failed"] in got[1] and retried == [0, 0], (got, retried)


@pytest.mark.parametrize("refused_again", [False, True], ids=["retry taken", "refused again"])
async def test_a_later_alert_waits_for_the_earlier_one_s_retry_this_process_is_sending(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics, refused_again: bool
) -> None:
    """The earlier alert's retry under way here (a slow channel) is let end first, then
    the later alert goes: it would have overtaken the slow retry. (A resolve waited for
    its breach's sends already; the rollback the breach called for did not.) That retry
    was the channel's one catch-up: refused again, it keeps its next retry, and the later
    alert is held there behind it (`tests/alerting/test_held_behind.py`), where it went
    first and the breach's next retry came after it; the retry pass sends both, in
    order."""
    slow = HeldOnTitles([TITLES["breach"]], delay=0.6)
    slow.script(*[503] * (2 if refused_again else 1))  # the breach, maybe its retry
    await slow.start()
    try:
        offset = [0.0]
        alerts, w = await breached(store, [json_sink, slow], metrics, offset)
        offset[0] = LATER_S + 1
        tasks: list[asyncio.Task[Any]] = []
        assert await alerts.retry(lambda work: tasks.append(asyncio.ensure_future(work))) == 1
        await slow.wait_held(2)  # the retry is at the slow channel
        request = Alert.for_window(w, "rollback_requested", rules=[rule("error-rate")])
        assert await alerts.emit(w, request, ["oncall"])
        await asyncio.gather(*tasks)
        # not caught up again (the retry was its send); refused, the request waits there
        assert slow.arrived == (2 if refused_again else 3), titles(slow)
        offset[0] = 10 * LATER_S
        retried = await alerts.retry()
        got = titles(slow)
        assert retried == (2 if refused_again else 0), (got, retried)
        expected = [TITLES["breach"], TITLES["rollback_requested"]]
        assert len(got) == 2, got
        assert all(t in title for t, title in zip(expected, got, strict=True)), got
    finally:
        await slow.stop()
    detail = await detail_of(store, breach_key("error-rate"))
    assert ("delivered on retry 2" in detail) is refused_again, detail

"""A later alert never reaches a channel before an earlier one that channel is still owed.

A later alert first catches a channel up on the earlier one it owes
(`tests/alerting/test_retried_order.py`). Left open there: an earlier alert another
replica is retrying at that instant (its lease live, so left to it) reached the channel
after the later one this replica sent; and a catch-up the channel took as the store
stopped taking writes was not stored as settled, so its retry, its lease lapsed, sent it
to the channel again, after the later alert. Counted at the receiver (apprise `json://`).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from agent.metrics import Metrics
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from alerting.events import Alert, breach_key
from tests.alerting.test_held_outcome import LockedAsTheChannelTakesIt
from tests.alerting.test_retried_order import (
    LATER_S,
    TITLES,
    HeldOnTitles,
    breached_then_resolved,
    titles,
)
from tests.alerting.test_window_alerts import make_notifier, rule, window
from tests.receivers import JsonSink


async def test_a_later_alert_waits_on_a_channel_for_the_retry_another_replica_is_sending(
    pg_url: str, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Replica one retries the breach on a slow channel; replica two raises the rollback
    the breach called for meanwhile: the breach's retry, another's and under way, was
    left to it, and "rollback requested" reached the channel first. Now the request waits
    there for its own retry (the breach's retry settled by then), and goes to the other
    channels at once. One notification each, in raised order."""
    slow = HeldOnTitles([TITLES["breach"]], delay=0.6)
    slow.script(503)  # the breach's first send
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    for each, replica in zip(stores, ["web-1", "web-2"], strict=True):
        await each.open()
        each._held_as(replica)  # as the daemon's: a taken retry is stamped with its run
    await slow.start()
    try:
        offset = [0.0]
        clock = lambda: time.time() + offset[0]  # noqa: E731
        urls, delays = [json_sink.url(), slow.url()], (LATER_S, LATER_S)
        one, two = (
            WindowAlerts(each, make_notifier(urls, metrics), clock=clock, retry_delays=delays)
            for each in stores
        )
        w = window()
        await stores[0].create_window(w)
        rules = [rule("error-rate")]
        breach = Alert.for_window(w, "breach", rules=rules)
        assert await one.emit(w, breach, ["oncall"], key=breach_key("error-rate"))
        offset[0] = LATER_S + 1
        tasks: list[asyncio.Task[Any]] = []
        assert await one.retry(lambda work: tasks.append(asyncio.ensure_future(work))) == 1
        await slow.wait_held(2)  # replica one's retry is at the slow channel
        request = Alert.for_window(w, "rollback_requested", rules=rules)
        assert await two.emit(w, request, ["oncall"])
        await asyncio.gather(*tasks)
        offset[0] = 10 * LATER_S
        retried = [await two.retry(), await one.retry()]
        got = titles(slow)
        assert len(got) == 2, got
        assert TITLES["breach"] in got[0] and TITLES["rollback_requested"] in got[1], got
        assert [len(titles(json_sink)), retried] == [2, [1, 0]], titles(json_sink)
        events = await stores[0].alert_events(w.id)
        assert events == {"breach:error-rate": "sent", "rollback_requested": "sent"}, events
    finally:
        await slow.stop()
        for each in stores:
            await each.close()
    failed = metrics.registry.get_sample_value("postflight_alerts_total", {"result": "failed"})
    assert failed == 2  # each alert once on the slow channel: it had neither when sent


class LockedAsTheCatchUpIsTaken(LockedAsTheChannelTakesIt):
    """A store whose file another process takes (an operator's `sqlite3` in `BEGIN
    EXCLUSIVE`, a backup) as the second channel takes the breach (its catch-up), and lets
    go once two notes of it failed; its other writes are plain (and fail while held)."""

    async def note_alert_channel(self, window_id: str, event: str, channel: str) -> None:
        if event == breach_key("error-rate") and channel.startswith("1:"):
            await super().note_alert_channel(window_id, event, channel)
        else:
            await SqliteStore.note_alert_channel(self, window_id, event, channel)

    async def record_alert(self, *args: Any, **kwargs: Any) -> None:
        await SqliteStore.record_alert(self, *args, **kwargs)


async def test_a_catch_up_taken_as_the_store_is_locked_is_not_sent_again(
    tmp_path: Path, sqlite_template: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The channel took the breach's catch-up as the SQLite file was locked: that it was
    settled is held until the file takes it, as a sent alert's outcome is. Tried once, it
    was left unstored, the retry's lease lapsed, and the retry pass sent the breach there
    again, after its resolve (the channel's newest alert: breached)."""
    down = JsonSink([503])  # refuses the breach, takes the rest
    path = tmp_path / "postflight.db"
    shutil.copyfile(sqlite_template, path)
    store = LockedAsTheCatchUpIsTaken(path)
    await store.open()
    await down.start()
    try:
        offset = [0.0]
        alerts, w = await breached_then_resolved(store, [json_sink, down], metrics, offset)
        offset[0] = 10 * LATER_S  # the breach retry's lease long lapsed
        retried = await alerts.retry()
        got = titles(down)
        assert len(got) == 2, got
        assert TITLES["breach"] in got[0] and TITLES["resolved"] in got[1], got
        assert (retried, down.arrived, store.failed) == (0, 3, 2), got
        events = await store.alert_events(w.id)
        assert events == {"breach:error-rate": "sent", "resolved:error-rate": "sent"}, events
    finally:
        store.let_go()
        await down.stop()
        await store.close()

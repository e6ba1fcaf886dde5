"""A sent alert's outcome is held until the store takes it (`held_until_stored`, shared
with the rollback's 2xx): whatever outage the store is in, and however a stop falls
during it, the alert is not sent twice (a claim left without its outcome is taken over
once its lease lapses and sent again).

The sink is the judge: it counts every notification it took, duplicates included.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.store.base import StoreError, StoreUnreachable
from agent.store.outages import HELD_RETRY_S
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from alerting.events import Alert
from tests.alerting.test_window_alerts import (
    LEASE_S,
    AwayStore,
    ReadOnlyAfterTheClaim,
    make_notifier,
    restarted,
    sending_while_away,
    window,
)
from tests.receivers import JsonSink

PASSED = ["[postflight] production v2.4.1: deploy passed"]


class LockedAsTheChannelTakesIt(SqliteStore):
    """A store whose file another process takes (an operator's `sqlite3` left in `BEGIN
    EXCLUSIVE`, a backup) as the channel takes the alert, and lets go after `failures`
    writes failed on it: SQLite's "database is locked", a `StoreError` but not a
    `StoreUnreachable`, which the alert's hold alone did not wait through."""

    def __init__(self, path: Path, failures: int = 2) -> None:
        super().__init__(path)
        self.busy_timeout_ms = 50
        self.failures = failures
        self.failed = 0
        self._other_process: sqlite3.Connection | None = None
        self._taken = False

    async def _while_held(self, write: Callable[[], Awaitable[None]]) -> None:
        if not self._taken:
            self._taken = True
            self._other_process = sqlite3.connect(self.path, isolation_level=None)
            self._other_process.execute("BEGIN EXCLUSIVE")
        try:
            await write()
        except StoreError:
            self.failed += 1
            if self.failed == self.failures:
                self.let_go()
            raise

    def let_go(self) -> None:
        if self._other_process is not None:
            self._other_process.execute("ROLLBACK")
            self._other_process.close()
            self._other_process = None

    async def note_alert_channel(self, window_id: str, event: str, channel: str) -> None:
        await self._while_held(
            lambda: SqliteStore.note_alert_channel(self, window_id, event, channel)
        )

    async def record_alert(self, *args: Any, **kwargs: Any) -> None:
        await self._while_held(lambda: SqliteStore.record_alert(self, *args, **kwargs))


async def test_an_alert_sent_as_the_sqlite_file_is_locked_is_not_sent_again(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Its outcome is held through "database is locked" as through a PostgreSQL restart:
    the hold knew only `StoreUnreachable` (which SQLite never raises), so the sender gave
    up ("not sent") and the restart took the claim over and sent the alert again."""
    path, w = tmp_path / "alerts.db", window()
    store = LockedAsTheChannelTakesIt(path)
    await store.open()
    try:
        await store.create_window(w)
        alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics), lease_s=LEASE_S)
        delivered = await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"])
        events = await store.alert_events(w.id)
    finally:
        store.let_go()
        await store.close()
    taken = await restarted(path, [json_sink], metrics, after=LEASE_S + 1)
    assert [n.title for n in json_sink.notifications] == PASSED
    assert (delivered, events, taken, store.failed) == (True, {"passed": "sent"}, 0, 2)


async def test_a_channel_that_took_it_as_the_sqlite_file_is_locked_is_not_retried(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Chat took the alert, the mail server failed it, as the file was locked: chat's
    acceptance is held with the outcome, so the retry goes to the mail server alone. The
    note that chat took it was dropped (only `StoreUnreachable` was held), and the retry
    sent chat the alert again."""
    path, w = tmp_path / "alerts.db", window()
    failing = JsonSink([503])
    await failing.start()
    store = LockedAsTheChannelTakesIt(path)
    await store.open()
    try:
        await store.create_window(w)
        sinks = [json_sink.url(), failing.url()]
        delays = (5.0,)
        alerts = WindowAlerts(store, make_notifier(sinks, metrics), retry_delays=delays)
        assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is True
        later = lambda: time.time() + 6.0  # noqa: E731
        again = WindowAlerts(store, make_notifier(sinks, metrics), clock=later, retry_delays=delays)
        taken = await again.retry()
        events = await store.alert_events(w.id)
    finally:
        store.let_go()
        await store.close()
        await failing.stop()
    assert (taken, events, store.failed) == (1, {"passed": "sent"}, 2)
    assert [n.title for n in json_sink.notifications] == PASSED
    assert [n.title for n in failing.notifications] == PASSED


async def test_a_held_outcome_is_offered_to_the_store_at_most_a_second_apart(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The waits between tries are the rollback's (`HELD_RETRY_S`): stored within a
    second of the store's return, where a doubling up to 2 s left a replica's scan a
    second longer to find the claim lapsed and send it again."""
    waits: list[float] = []
    flaky = ReadOnlyAfterTheClaim(tmp_path / "alerts.db")
    await flaky.open()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        flaky.away = len(waits) < 6

    try:
        w = window()
        await flaky.create_window(w)
        notifier = make_notifier([json_sink.url()], metrics)
        alerts = WindowAlerts(flaky, notifier, lease_s=LEASE_S, sleep=sleep)
        flaky.away = True
        assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is True
        assert await flaky.alert_events(w.id) == {"passed": "sent"}
    finally:
        await flaky.close()
    assert waits == [*HELD_RETRY_S, HELD_RETRY_S[-1], HELD_RETRY_S[-1], HELD_RETRY_S[-1]]


class SlowToRecord(AwayStore):
    """A store that takes no outcome while `away` (read-only, as in a failover); once
    back, the write takes a moment (a commit behind another's fsync, a round trip).
    `failed` is set as a try fails, `recording` as one begins on the store back."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failed = asyncio.Event()
        self.recording = asyncio.Event()

    async def record_alert(self, *args: Any, **kwargs: Any) -> None:
        if self.away:
            self.failed.set()
            raise StoreUnreachable("cannot reach the store: read-only")
        self.recording.set()
        await asyncio.sleep(0.05)
        await super().record_alert(*args, **kwargs)


async def stopped_while_held(
    path: Path, sink: JsonSink, metrics: Metrics, stop: Callable[[SlowToRecord], Awaitable[None]]
) -> tuple[dict[str, str], int]:
    """A `passed` alert sent as the store is away, its send cancelled (the stop's drain,
    past its grace) once `stop(store)` returns: what the store says of it, and how many
    alerts a restart took over once the claim's lease lapsed."""
    store = SlowToRecord(path)
    async with sending_while_away(store, sink, metrics) as sending:
        await asyncio.wait_for(store.failed.wait(), 10)
        await stop(store)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        events = await store.alert_events(window().id)
    return events, await restarted(path, [sink], metrics, after=LEASE_S + 1)


async def test_a_stop_as_a_held_outcome_is_being_stored_lets_the_write_finish(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The store answers again during the agent's stop, which cancels the alert's send as
    its outcome is being written: the write goes on to its end (as a rollback's does).
    Cut, the claim was left without its outcome and the restart sent the alert again."""

    async def as_it_is_written(store: SlowToRecord) -> None:
        store.away = False  # the store answers again: the next try is the stop's to cut
        await asyncio.wait_for(store.recording.wait(), 10)

    path = tmp_path / "alerts.db"
    events, taken = await stopped_while_held(path, json_sink, metrics, as_it_is_written)
    assert [n.title for n in json_sink.notifications] == PASSED
    assert (events, taken) == ({"passed": "sent"}, 0)


async def test_a_stop_between_tries_gives_a_held_outcome_one_try_more(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The store came back during the stop, while the held outcome waited for its next
    try: the stop's cancellation gives it that try before going on. Without it, the
    outcome was left unstored as at a kill, and the restart sent the alert again."""

    async def as_it_waits(store: SlowToRecord) -> None:
        # the held outcome waits HELD_RETRY_S[0] for its next try: the store answers
        # again and the stop cuts the wait short, well within it (timers fire in order)
        await asyncio.sleep(HELD_RETRY_S[0] / 4)
        store.away = False

    path = tmp_path / "alerts.db"
    events, taken = await stopped_while_held(path, json_sink, metrics, as_it_waits)
    assert [n.title for n in json_sink.notifications] == PASSED
    assert (events, taken) == ({"passed": "sent"}, 0)


class AwayAsARetryIsSent(ReadOnlyAfterTheClaim):
    """A store that goes away (a restart, a failover) as a retry is taken: neither the
    channel's acceptance nor the retry's outcome can be stored until it answers."""

    async def take_alert_retry(self, *args: Any, **kwargs: Any) -> Any:
        taken = await super().take_alert_retry(*args, **kwargs)
        self.away = taken is not None
        return taken

    async def settle_alert_retry(self, *args: Any, **kwargs: Any) -> bool:
        if self.away:
            raise StoreUnreachable("cannot reach the store: read-only")
        return await super().settle_alert_retry(*args, **kwargs)


async def test_a_retry_delivered_as_the_store_goes_away_is_not_sent_again(
    tmp_path: Path, json_sink: JsonSink, metrics: Metrics
) -> None:
    """A retry's outcome is held as a first send's is: the retry that delivered the alert
    gave up ("retry 1 not sent") when the store did not answer, its lease lapsed and the
    next retry sent the channel the alert again."""
    w, delays = window(), (5.0, 5.0)
    json_sink.script(503)
    store = AwayAsARetryIsSent(tmp_path / "alerts.db")
    await store.open()

    def agent(later: float, **kwargs: Any) -> WindowAlerts:
        notifier = make_notifier([json_sink.url()], metrics)
        clock = lambda: time.time() + later  # noqa: E731
        return WindowAlerts(store, notifier, clock=clock, retry_delays=delays, **kwargs)

    async def store_back(seconds: float) -> None:
        store.away = False

    try:
        await store.create_window(w)
        assert await agent(0.0).emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
        retried = await agent(6.0, lease_s=LEASE_S, sleep=store_back).retry()
        again = await agent(6.0 + LEASE_S + 1, lease_s=LEASE_S).retry()
        events = await store.alert_events(w.id)
    finally:
        await store.close()
    assert [n.title for n in json_sink.notifications] == PASSED
    assert (retried, again, events) == (1, 0, {"passed": "sent"})


async def test_an_outcome_the_postgres_store_refused_for_now_is_held_and_said_busy(
    pg_url: str, json_sink: JsonSink, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    """Two deadlocks on the outcome's write (a trigger raising PostgreSQL's own SQLSTATE):
    held and stored at the third try, sent once, and said as what it is, a busy store, not
    one that does not answer."""
    import asyncpg

    store, w = PostgresStore(pg_url), window()
    await store.open()
    other = await asyncpg.connect(pg_url)
    try:
        await store.create_window(w)
        await other.execute(
            "CREATE SEQUENCE refusals; CREATE FUNCTION refuse() RETURNS trigger LANGUAGE"
            " plpgsql AS $$ BEGIN IF nextval('refusals') <= 2 THEN RAISE EXCEPTION"
            " 'deadlock as a test' USING ERRCODE = 'deadlock_detected'; END IF; RETURN NEW;"
            " END $$; CREATE TRIGGER refuse BEFORE UPDATE ON alerts FOR EACH ROW"
            " WHEN (NEW.result IS NOT NULL) EXECUTE FUNCTION refuse()"
        )
        caplog.set_level(logging.INFO)
        alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics), lease_s=LEASE_S)
        delivered = await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"])
        events = await store.alert_events(w.id)
        refused = await other.fetchval("SELECT last_value FROM refusals")
    finally:
        await other.close()
        await store.close()
    assert [n.title for n in json_sink.notifications] == PASSED
    assert (delivered, events) == (True, {"passed": "sent"}) and refused > 2, refused
    said = [r.getMessage() for r in caplog.records if r.name.startswith("postflight")]
    held = [line for line in said if "sent, but the store" in line]
    assert held and "the store is busy" in held[0] and "deadlock as a test" in held[0], said
    assert not [line for line in said if "does not answer" in line], said

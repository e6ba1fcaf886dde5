"""A receiver's answer is stored however the store or the process falters as it is: a 2xx
whose record is lost is sent again once the rollback is resumed (by this replica after a
restart, or by another after the lease), a second rollback at the receiver.

The receiver is the judge: it counts every request it accepted, duplicates included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from agent.metrics import Metrics
from agent.records import DeliveryAttempt, DeployWindow, RollbackIntent
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.base import AlertClaim, StoreUnreachable
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.integrations import Integrations, follow_up_lease
from agent.windows.lifecycle import FOLLOW_UPS
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor
from tests.pg import PgCluster
from tests.receivers import RollbackAttempt, RollbackReceiver
from tests.rollback.support import REQUESTED_AT, SECRET, settings, stored_intent
from tests.store.peek import rows
from tests.test_integration_calls import waits_asked_for
from tests.test_store_outage_logs import Restarting


async def resumed(sender: RollbackDelivery, store: Any, conf: Any) -> None:
    """What a sweep does once the lease is out: every pending rollback delivered again."""
    for pending in await store.pending_rollbacks():
        await sender.deliver(pending, conf, "production")


class Failover:
    """A database of its own whose primary steps down: its sessions are cut and the ones
    opened next are read-only (a managed PostgreSQL failing over, a client reconnecting to
    the old primary, now a standby), until `back()`."""

    def __init__(self, cluster: PgCluster) -> None:
        self.cluster = cluster
        self.name = f"t_{uuid.uuid4().hex[:16]}"
        self.url = cluster.url(self.name)

    async def create(self) -> None:
        await self._admin(f'CREATE DATABASE "{self.name}"')

    async def read_only(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on')
        await self._cut()

    async def back(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')
        await self._cut()

    @staticmethod
    async def reconnected(store: PostgresStore) -> None:
        """The pool's cut connections dropped: each fails its first use, then is replaced."""
        for _ in range(20):
            if await store.ping():
                return
        raise AssertionError("the store does not answer after the failover")

    async def _cut(self) -> None:
        await self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.cluster.url(), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


HELD_TIMEOUT = 30.0
"""The attempt's timeout while the receiver holds it for the store's step-down: with the
default 5 s, a step-down slower than that on a loaded machine timed the attempt out, the
rollback went out again and was stored with 2 attempts; 0.02-0.06 s measured here."""


async def test_a_2xx_answered_as_postgresql_fails_over_read_only_is_stored_once_it_can_be(
    pg_cluster: PgCluster, rollback_receiver: Any, metrics: Metrics
) -> None:
    """The store answered the 2xx's record with "cannot execute UPDATE in a read-only
    transaction": not taken for an outage, the delivery ended "interrupted, left pending"
    and the rollback was sent again once resumed, though the receiver had accepted it."""
    failover = Failover(pg_cluster)
    await failover.create()

    async def steps_down_as_it_answers(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:
            await failover.read_only()

    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, on_attempt=steps_down_as_it_answers
    )
    waits: list[float] = []

    async def new_primary_after_a_few_tries(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            await failover.back()

    store = PostgresStore(failover.url)
    await store.open()
    now = [REQUESTED_AT]
    sender = RollbackDelivery(
        store, metrics, clock=lambda: now[0], sleep=new_primary_after_a_few_tries
    )
    # the attempt waits on the step-down (PostgreSQL admin over asyncpg): the answer comes
    # once it is done, so a long timeout costs nothing and only the order decides
    conf = settings(receiver.url, timeout=HELD_TIMEOUT)
    try:
        intent = await stored_intent(store)  # type: ignore[arg-type]
        done = await sender.deliver(intent, conf, "production")
        await failover.back()  # over by now in any case
        await failover.reconnected(store)
        now[0] += 2 * sender.lease_s + conf.timeout
        await resumed(sender, store, conf)
        stored = await store.get_rollback(intent.window_id)
    finally:
        await sender.aclose()
        await store.close()

    assert sum(a.accepted for a in receiver.attempts) == 1
    assert done.state == "delivered" and len(waits) >= 3  # held through the read-only tries
    assert stored is not None and (stored.state, stored.attempts) == ("delivered", 1)


class SlowToSettle(SqliteStore):
    """A store whose record of an answered attempt takes a moment (a commit behind
    another's fsync, a PostgreSQL round trip): `settling` is set as it begins. While
    `away` (a restart, a failover's read-only spell), it takes none."""

    away = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.settling = asyncio.Event()

    async def settle_rollback(
        self,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Any = (),
    ) -> bool:
        if attempt is not None and intent.state == "delivered":
            if self.away:
                raise StoreUnreachable("cannot reach the store: read-only")
            self.settling.set()
            await asyncio.sleep(0.05)
        return await super().settle_rollback(intent, attempt, alerts)


async def stopped_then_restarted(
    sender: RollbackDelivery, store: SqliteStore, conf: Any, until: Awaitable[Any]
) -> RollbackIntent | None:
    """A stored rollback delivered by `sender`, cancelled (a stop past its grace) once
    `until` is done, then resumed by the restarted agent: the rollback as stored after."""
    try:
        intent = await stored_intent(store)
        sending = asyncio.create_task(sender.deliver(intent, conf, "production"))
        await asyncio.wait_for(until, 10)
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        restarted = RollbackDelivery(store, Metrics())  # same owner: takes its own at once
        try:
            await resumed(restarted, store, conf)
        finally:
            await restarted.aclose()
        return await store.get_rollback(intent.window_id)
    finally:
        await sender.aclose()


async def test_a_stop_as_a_2xx_is_being_stored_lets_the_write_finish(
    tmp_path: Any, rollback_receiver: Any, metrics: Metrics
) -> None:
    """A stop cancels deliveries still going after its grace; one cancelled as its 2xx was
    being stored lost the write (asyncpg rolls the transaction back, SQLite's change waits
    for the connection), and the restart sent the rollback again (same owner, at once)."""
    store = SlowToSettle(tmp_path / "slow.db")
    await store.open()
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    conf = settings(receiver.url)
    try:
        stored = await stopped_then_restarted(
            RollbackDelivery(store, metrics), store, conf, store.settling.wait()
        )
    finally:
        await store.close()

    assert sum(a.accepted for a in receiver.attempts) == 1
    assert stored is not None and (stored.state, stored.attempts) == ("delivered", 1)


async def test_a_stop_as_a_held_2xx_waits_for_its_next_try_gives_it_one_try_more(
    tmp_path: Any, rollback_receiver: Any, metrics: Metrics
) -> None:
    """The store came back during the agent's stop, while the held 2xx waited for its
    next try: the stop's cancellation gives it that try before going on. Without it the
    2xx was left unstored, as at a kill, and the restart sent the rollback again."""
    store = SlowToSettle(tmp_path / "away.db")
    await store.open()
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    conf = settings(receiver.url)
    waiting = asyncio.Event()

    async def store_back_during_the_stop(seconds: float) -> None:
        if store.away:  # the held 2xx's wait: the stop cuts it short
            store.away = False
            waiting.set()
            await asyncio.Event().wait()
        await asyncio.sleep(seconds)

    sender = RollbackDelivery(store, metrics, sleep=store_back_during_the_stop)
    store.away = True
    try:
        stored = await stopped_then_restarted(sender, store, conf, waiting.wait())
    finally:
        await store.close()

    assert sum(a.accepted for a in receiver.attempts) == 1
    assert stored is not None and (stored.state, stored.attempts) == ("delivered", 1)


FOLLOW_SECRET = "follow-up-secret"


def replica(store: SqliteStore, follow_url: str, owner: str, clock: Any) -> Integrations:
    """A replica's integrations: production rolls back to a webhook (not called here)
    followed up by `migrations` at `follow_url`; no alert channels."""
    config = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: http://127.0.0.1:9
    checks: [{{name: health, type: http, path: /health}}]
    rollback:
      url: http://127.0.0.1:9/rollback
      secret: {SECRET}
      then: [{{name: migrations, url: '{follow_url}', secret: {FOLLOW_SECRET}}}]
"""
    metrics = Metrics()
    watcher = Watcher(
        load_settings_text(config),
        store,
        metrics,
        alerts=WindowAlerts(store, Notifier([], timeout=1, redact=Redactor(), metrics=metrics)),
        delivery=RollbackDelivery(store, metrics, clock=clock, owner=owner),
        providers={},
        sessions=TargetSessions(),
        owner=owner,
        clock=clock,
    )
    return Integrations(
        watcher.settings,
        watcher.services,
        watcher,
        public_url="http://127.0.0.1:8080",
        redact=str,
        clock=clock,
    )


@asynccontextmanager
async def two_replicas(
    store: SqliteStore, follow_url: str
) -> AsyncIterator[tuple[Integrations, Integrations, list[float]]]:
    """Replicas "a" and "b" (`replica`) on `store` and one clock, `now[0]`; they and the
    store are closed on leaving."""
    now = [time.time()]
    first = replica(store, follow_url, "a", lambda: now[0])
    second = replica(store, follow_url, "b", lambda: now[0])
    try:
        yield first, second, now
    finally:
        await first.aclose()
        await second.aclose()
        await store.close()


async def delivered_with_follow_ups(store: SqliteStore) -> tuple[RollbackIntent, DeployWindow]:
    """A rollback delivered, its follow-ups claimed with it (as `settle_rollback` does)."""
    intent = await stored_intent(store)
    delivered = dataclasses.replace(intent, state="delivered", finished_at=REQUESTED_AT)
    assert await store.settle_rollback(delivered, None, [AlertClaim(FOLLOW_UPS)])
    window = await store.get_window(intent.window_id)
    assert window is not None
    return delivered, window


async def resumed_by_another(
    store: SqliteStore,
    replicas: tuple[Integrations, Integrations],
    window: DeployWindow,
    delivered: RollbackIntent,
    now: list[float],
) -> dict[str, str]:
    """The first replica's follow-up claim lapses and the second resumes the follow-ups:
    the outcomes then stored, by event."""
    first, second = replicas
    rollback = first.settings.environments["production"].rollback
    assert rollback is not None
    now[0] += follow_up_lease(rollback) + 1
    await second.after_rollback(window, delivered)
    return await store.alert_events(window.id)


async def test_a_follow_ups_2xx_answered_as_the_store_goes_away_is_stored_once_it_answers(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """The follow-up's receiver took it, and the store did not answer its record for a
    moment: the record was given up (the error ended the follow-ups), its claim stayed
    without an outcome, and once that lapsed (`follow_up_lease`) a restart or another
    replica sent the follow-up again. Held until the store takes it, as the rollback's own
    2xx is, the one sent is the one recorded."""
    store = Restarting(tmp_path / "postflight.db")
    await store.open()

    async def store_away_as_it_answers(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:
            store.down = True
            asyncio.get_running_loop().call_later(0.3, setattr, store, "down", False)

    follow: RollbackReceiver = await rollback_receiver(
        FOLLOW_SECRET, on_attempt=store_away_as_it_answers
    )
    delivered, window = await delivered_with_follow_ups(store)
    async with two_replicas(store, follow.url) as (first, second, now):
        # the rollback's sender follows it up (a spawned task: an error there is logged)
        await asyncio.gather(first.after_rollback(window, delivered), return_exceptions=True)
        store.down = False
        events = await resumed_by_another(store, (first, second), window, delivered, now)

    assert sum(a.accepted for a in follow.attempts) == 1, [a.status for a in follow.attempts]
    assert events["then:migrations"] == "delivered"


class SlowToRecord(SqliteStore):
    """A store whose record of a follow-up's outcome takes a moment: `recording` is set
    as it begins."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.recording = asyncio.Event()

    async def record_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> None:
        if event.startswith("then:"):
            self.recording.set()
            await asyncio.sleep(0.05)
        await super().record_alert(window_id, event, *args, **kwargs)


async def test_a_stop_as_a_follow_ups_2xx_is_being_stored_lets_the_write_finish(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """A stop cancels what is still going after its grace; a follow-up cancelled as its
    2xx was being stored lost the write, and once its claim lapsed the restart (or
    another replica) sent it again."""
    store = SlowToRecord(tmp_path / "slow.db")
    await store.open()
    follow: RollbackReceiver = await rollback_receiver(FOLLOW_SECRET)
    delivered, window = await delivered_with_follow_ups(store)
    async with two_replicas(store, follow.url) as (first, second, now):
        following = asyncio.create_task(first.after_rollback(window, delivered))
        await store.recording.wait()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        events = await resumed_by_another(store, (first, second), window, delivered, now)

    assert sum(a.accepted for a in follow.attempts) == 1, [a.status for a in follow.attempts]
    assert events["then:migrations"] == "delivered"


class DownAfterTheTake(Restarting):
    """A store that stops answering as soon as a follow-up is taken (`take_alert`), and
    answers again once the receiver has the follow-up, or the test says so."""

    async def take_alert(self, *args: Any, **kwargs: Any) -> Any:
        taken = await super().take_alert(*args, **kwargs)
        self.down = True
        return taken


async def test_a_store_that_goes_away_after_the_take_does_not_hold_the_follow_up(
    tmp_path: Any, rollback_receiver: Any
) -> None:
    """The follow-up's carried attempts were a second read after its take: a store that
    failed between the two ended the follow-ups with its claim held, and it went out only
    once the claim lapsed (`follow_up_lease`, 565 s at defaults). The take tells them: it
    goes out at once, its outcome held until the store answers."""
    store = DownAfterTheTake(tmp_path / "postflight.db")
    await store.open()

    async def store_back(attempt: RollbackAttempt) -> None:
        asyncio.get_running_loop().call_later(0.2, setattr, store, "down", False)

    follow: RollbackReceiver = await rollback_receiver(FOLLOW_SECRET, on_attempt=store_back)
    delivered, window = await delivered_with_follow_ups(store)
    async with two_replicas(store, follow.url) as (first, _, _):
        await asyncio.gather(first.after_rollback(window, delivered), return_exceptions=True)
        store.down = False
        events = await store.alert_events(window.id)

    assert [a.accepted for a in follow.attempts] == [True]
    assert events["then:migrations"] == "delivered"


async def test_a_follow_up_handed_back_waits_as_its_attempt_count_says(
    tmp_path: Any, rollback_receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow-up handed back after 2 attempts goes on at attempt 3, and its waits too:
    the next agent's began again at attempt 1's (1 s, 2 s at the defaults), its count
    and budget going on."""
    waits = waits_asked_for(monkeypatch, jitter=0.5)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    follow: RollbackReceiver = await rollback_receiver(FOLLOW_SECRET, [503, 503])
    delivered, window = await delivered_with_follow_ups(store)
    key = "then:migrations"
    assert await store.take_alert(window.id, key, 1.0, lapsed_before=0.0)
    assert await store.release_alert(window.id, key, 1.0, attempts=2)
    async with two_replicas(store, follow.url) as (first, _, _):
        await first.after_rollback(window, delivered)
        events = await store.alert_events(window.id)
        details = await rows(
            store, "SELECT detail FROM alerts WHERE window_id = ? AND event = ?", window.id, key
        )

    assert [a.status for a in follow.attempts] == [503, 503, 200]
    assert waits == [0.5 * 2**3, 0.5 * 2**4]  # backoff 1 s: attempts 3 and 4's
    assert events["then:migrations"] == "delivered"
    assert details == [("HTTP 200 after 5 attempt(s)",)]

"""A stop meets a rollback in its wait to retry (`RollbackDelivery.leave_waits`): it is
handed back at once, as stored, for the next start or another replica, and nothing more
is sent by this process (it waited out the stop's grace, or sent inside the stop)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.store.sqlite import SqliteStore
from tests.receivers import RollbackAttempt, RollbackReceiver
from tests.rollback.support import SECRET, settings, stored_intent
from tests.test_store_outage_logs import Restarting


async def waiting(store: SqliteStore, window_id: str) -> bool:
    stored = await store.get_rollback(window_id)
    return stored is not None and stored.next_attempt_at is not None


async def test_a_rollback_waiting_out_a_retry_after_is_left_at_once_to_another_sender(
    store: SqliteStore,
    metrics: Metrics,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("503:retry-after=600",))
    intent = await stored_intent(store)
    sender = RollbackDelivery(store, metrics, owner="replica-a")
    try:
        sending = asyncio.create_task(sender.deliver(intent, settings(receiver.url), "production"))
        await receiver.wait_for_attempts(1)
        for _ in range(1000):  # until it is in its wait, stored
            if await waiting(store, intent.window_id):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the rollback never stored its wait")
        caplog.set_level(logging.INFO, "postflight.rollback")
        sender.leave_waits()
        left = await asyncio.wait_for(sending, 30)  # a bound for a hung test only
    finally:
        await sender.aclose()
    assert (left.state, left.attempts) == ("pending", 1)
    assert len(receiver.attempts) == 1
    said = [r.getMessage() for r in caplog.records if "stopping while it waits" in r.getMessage()]
    assert said and "left pending to the next start or another replica" in said[0], said
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None and stored.next_attempt_at is not None
    assert stored.next_attempt_at > time.time() + 500  # the asked wait kept for the taker
    # its lease handed back: another sender takes it now, not a lease (30 s) later
    now = time.time()
    taken = await store.take_rollback(intent.window_id, "replica-b", now, now + 30)
    assert taken is not None and taken.attempts == 1


async def test_a_stopping_sender_sends_no_attempt_still_to_wait_for(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Resumed during the stop (its sweep, a take-over) with its next attempt not yet due:
    left as it is, where it waited and sent inside the stop."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("503:retry-after=2",))
    intent = await stored_intent(store)
    first = RollbackDelivery(store, metrics, owner="replica-a")
    sending = asyncio.create_task(first.deliver(intent, settings(receiver.url), "production"))
    await receiver.wait_for_attempts(1)
    first.leave_waits()
    await asyncio.wait_for(sending, 30)
    await first.aclose()
    resumed = RollbackDelivery(store, metrics, owner="replica-a")
    resumed.leave_waits()
    try:
        stored = await store.get_rollback(intent.window_id)
        assert stored is not None
        left = await resumed.deliver(stored, settings(receiver.url), "production")
    finally:
        await resumed.aclose()
    assert (left.state, left.attempts) == ("pending", 1)
    assert len(receiver.attempts) == 1


async def test_a_rollback_waiting_for_the_store_to_answer_is_left_at_once(
    tmp_path: Any,
    metrics: Metrics,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store went away mid-delivery (a PostgreSQL restart) and the sender waits to
    take the rollback again (`_retake`): a stop leaves that wait at once too, where the
    stop waited out its grace for the store and then cut the rollback off. Nothing is
    sent meanwhile; its lease lapses as stored and the next start or a replica resumes."""
    store = Restarting(tmp_path / "postflight.db")
    await store.open()

    async def store_away_as_it_answers(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:
            store.down = True  # and it stays away until the sender has stopped

    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("503",), on_attempt=store_away_as_it_answers
    )
    store.down = False
    intent = await stored_intent(store)
    sender = RollbackDelivery(store, metrics, owner="replica-a")
    caplog.set_level(logging.INFO, "postflight.rollback")
    try:
        sending = asyncio.create_task(sender.deliver(intent, settings(receiver.url), "production"))
        await receiver.wait_for_attempts(1)
        for _ in range(1000):  # until it waits for the store
            if any("going on once the store takes it" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.01)
        else:  # the wait's line reworded: this loop waited out its 10 s and went on
            pytest.fail("the sender never said it waits for the store")
        sender.leave_waits()
        done, _ = await asyncio.wait({sending}, timeout=10)  # a bound for a hung test only
        assert done, "the stop waited for the store to come back"
        left = sending.result()
        assert store.down  # left while the store was still away
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        store.down = False
        await sender.aclose()
    assert left.state == "pending"
    assert len(receiver.attempts) == 1
    said = [r.getMessage() for r in caplog.records if "stopping while" in r.getMessage()]
    assert said and "left pending to the next start or another replica" in said[0], said
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None and stored.state == "pending" and stored.attempts == 1
    await store.close()

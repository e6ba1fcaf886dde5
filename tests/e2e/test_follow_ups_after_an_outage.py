"""A delivered rollback's `rollback.then` follow-ups go out in the live agent though the
store failed right after the rollback's outcome was stored (its settled mark, the first
write after it): they were left to the next start (`_resume_after_rollbacks`), and a
running agent sent them only once restarted, days later maybe. For an outage and for
StoreBusy, refused in the code both stores share (`SqlStore`, before its database): on
SQLite. And where a follow-up stands at a kill between its receiver's 2xx and its record:
sent again once, with its Idempotency-Key, by the next start (SQLite) or the other replica
(PostgreSQL). Counted at the follow-up's receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.store.base import StoreBusy, StoreError, StoreUnreachable
from agent.store.sql import SqlStore
from agent.windows import integrations as integrations_module
from agent.windows.lifecycle import ROLLBACK_SETTLED
from tests.e2e.conftest import SECRET
from tests.e2e.integrations_support import (  # noqa: F401 (fixtures)
    AS_KILLED,
    Integrated,
    integrated,
    rolled_back_by_hand,
    store_yaml,
)
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


def with_migrations(harness: Integrated, migrations: RollbackReceiver) -> str:
    """Environments whose rollback goes to the fake Vercel, then to `migrations`."""
    rollback = f"""{{target: vercel, secret: {SECRET}, backoff: 50ms, max_backoff: 200ms,
        then: [{{name: migrations, url: '{migrations.url}', secret: follow-secret}}]}}"""
    return harness.environments(rollback=rollback)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("refusal", [StoreUnreachable, StoreBusy], ids=["outage", "busy"])
async def test_follow_ups_of_a_rollback_stored_as_the_store_fails_go_out_without_a_restart(
    integrated: Integrated,  # noqa: F811
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    refusal: type[StoreError],
) -> None:
    claim_alert = SqlStore.claim_alert
    refused: list[str] = []

    async def away_once(self: SqlStore, window_id: str, key: str, *args: Any, **kw: Any) -> Any:
        if key == ROLLBACK_SETTLED and not refused:
            refused.append(key)
            raise refusal("the store refused the write for now")
        return await claim_alert(self, window_id, key, *args, **kw)

    monkeypatch.setattr(SqlStore, "claim_alert", away_once)
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    agent = await integrated.start(with_migrations(integrated, migrations))
    deploy_id = await rolled_back_by_hand(agent)
    await agent.settled(deploy_id)
    attempts = await migrations.wait_for_attempts(1, within=15.0)
    assert refused == [ROLLBACK_SETTLED]
    await asyncio.sleep(1.0)  # and once
    assert [a.idempotency_key for a in attempts] == [f"{deploy_id}:migrations"]
    assert len(integrated.vercel.accepted) == 1


@pytest.mark.timeout(60)
async def test_a_follow_up_taken_before_its_sender_died_is_sent_again_once_with_its_key(
    integrated: Integrated,  # noqa: F811
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,  # noqa: F811
) -> None:
    """Where a follow-up stands at a kill between its receiver's 2xx and its record (the
    record never returns, as a kill leaves it; the lease at 2 s): the next start (SQLite)
    or the other replica (PostgreSQL) sends it again once, with the same Idempotency-Key
    and body, as a rollback webhook is (contract section 3): its receiver dedupes; the
    rollback itself is not sent again."""
    record_alert = SqlStore.record_alert
    frozen = asyncio.Event()

    async def dies_once(self: SqlStore, window_id: str, key: str, *args: Any) -> None:
        if key == "then:migrations" and not frozen.is_set():
            frozen.set()
            await asyncio.Event().wait()  # the sender: as killed, never written
        await record_alert(self, window_id, key, *args)

    monkeypatch.setattr(SqlStore, "record_alert", dies_once)
    monkeypatch.setattr(integrations_module, "follow_up_lease", lambda rollback: 2.0)
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    env = with_migrations(integrated, migrations)
    first = await integrated.start(env, store=store_yaml, owner="a", server=AS_KILLED)
    deploy_id = await rolled_back_by_hand(first)
    await asyncio.wait_for(frozen.wait(), 15)
    if store_yaml is None:  # one agent per SQLite file: B is A's restart
        await first.stop()
    await integrated.start(env, store=store_yaml, owner="b")
    attempts = await migrations.wait_for_attempts(2, within=15.0)
    await asyncio.sleep(1.5)  # and no third
    assert len(migrations.attempts) == 2
    assert {a.idempotency_key for a in attempts} == {f"{deploy_id}:migrations"}
    assert attempts[0].body == attempts[1].body
    assert len(integrated.vercel.accepted) == 1


@pytest.mark.timeout(60)
async def test_follow_ups_the_store_refused_twice_still_go_out_without_a_restart(
    integrated: Integrated,  # noqa: F811
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store refuses the follow-up's take at the rollback's settling, and again when
    the integrations look for the owed follow-ups: that second failure, in a task of its
    own, lost them until the next start. Each such failure leaves them owed again."""
    take_alert = SqlStore.take_alert
    refused: list[str] = []

    async def away_twice(self: SqlStore, window_id: str, key: str, *args: Any, **kw: Any) -> Any:
        if key == "then:migrations" and len(refused) < 2:
            refused.append(key)
            raise StoreUnreachable("cannot reach the store: read-only")
        return await take_alert(self, window_id, key, *args, **kw)

    monkeypatch.setattr(SqlStore, "take_alert", away_twice)
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    agent = await integrated.start(with_migrations(integrated, migrations))
    deploy_id = await rolled_back_by_hand(agent)
    attempts = await migrations.wait_for_attempts(1, within=15.0)
    assert len(refused) == 2
    await asyncio.sleep(1.0)  # and once
    assert [a.idempotency_key for a in attempts] == [f"{deploy_id}:migrations"]

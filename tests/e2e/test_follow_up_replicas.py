"""`rollback.then` follow-ups with replicas: two agents that start at the same instant on
one PostgreSQL store, after a replica died between a rollback's delivery and its
follow-ups, send each follow-up once. Counted at the follow-up's receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from agent.rollback import rollback_intent
from agent.store.base import AlertClaim
from agent.store.postgres import PostgresStore
from agent.windows.lifecycle import FOLLOW_UPS
from tests.e2e.conftest import SECRET, AgentFactory, environment
from tests.e2e.crash import free_port
from tests.receivers import RollbackReceiver
from tests.rollback.support import make_window

FOLLOW_SECRET = "follow-up-secret"


async def a_rollback_delivered_before_its_follow_ups(pg_url: str) -> str:
    """The store as a replica killed right after the rollback's 2xx leaves it."""
    now = time.time()
    window = make_window(
        "dep_01JF000000000000000000THEN",
        deployed_at=now - 30,
        created_at=now - 30,
        ends_at=now + 600,
    )
    store = PostgresStore(pg_url)
    await store.open()
    try:
        await store.create_window(window)
        intent = rollback_intent(window, "errors past their bound", [], now)
        assert await store.finish_window(window.id, "failed", {"outcome": "fail"}, now, intent)
        delivered = dataclasses.replace(intent, state="delivered", finished_at=now, attempts=1)
        # the outcome and what it owes are committed together (`FOLLOW_UPS`)
        assert await store.settle_rollback(delivered, None, [AlertClaim(FOLLOW_UPS)])
    finally:
        await store.close()
    return window.id


async def test_two_replicas_starting_together_send_a_follow_up_once(
    start_agent: AgentFactory, rollback_receiver: Any, pg_url: str
) -> None:
    # held in flight for a while: the other replica looks at it meanwhile
    follow: RollbackReceiver = await rollback_receiver(FOLLOW_SECRET, ["200:delay=0.5"])
    deploy_id = await a_rollback_delivered_before_its_follow_ups(pg_url)
    rollback = f"""
    rollback:
      url: http://127.0.0.1:{free_port()}/rollback
      secret: {SECRET}
      then: [{{name: migrations, url: '{follow.url}', secret: {FOLLOW_SECRET}}}]
    """
    env = environment(
        "production",
        f"http://127.0.0.1:{free_port()}",
        window="10m",
        interval="30s",
        background_interval="1h",
        extra=rollback,
    )
    store = f"url: {pg_url}"
    first, second = await asyncio.gather(
        start_agent(env, store=store, owner="replica-a"),
        start_agent(env, store=store, owner="replica-b"),
    )
    for agent in (first, second):
        done = await agent.wait_until(
            deploy_id, lambda d: (d["rollback"].get("then") or [{}])[0].get("state") == "delivered"
        )
        assert done["state"] == "rolled_back"
    await asyncio.sleep(1.5)  # time enough for a second sender's request to arrive
    accepted = [a for a in follow.attempts if a.accepted]
    assert len(accepted) == 1, [(a.n, a.status) for a in follow.attempts]
    assert accepted[0].idempotency_key == f"{deploy_id}:migrations"
    assert len(follow.attempts) == 1

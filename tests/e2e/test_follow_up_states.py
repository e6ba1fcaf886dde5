"""A `rollback.then` follow-up's state in the deploy object is one of those the API
documents (`FollowUpOutcome.state`): `pending`, `delivered` or `failed`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    environment,
    rollback_then_migrations,
)
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_a_follow_up_under_way_is_shown_pending(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    """The follow-up's receiver holds its request: the follow-up is claimed and has no
    outcome yet, shown `pending` (it was shown `claimed`, the store's word), then
    `delivered` once its retry is answered."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=["hang"], path="/then")
    delivery = "timeout: 3s, max_attempts: 2, backoff: 100ms"
    rollback = rollback_then_migrations(receiver.url, SECRET, follow.url, delivery)
    agent = await start_agent(environment("production", flip_target.url, extra=rollback))
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await follow.wait_for_attempts(1, within=30)  # held: claimed, no outcome
    shown = await agent.get(deploy["id"])
    assert shown["rollback"]["then"] == [{"name": "migrations", "state": "pending"}], shown
    final = await agent.wait_until(
        deploy["id"], lambda d: d["rollback"]["then"][0]["state"] != "pending", 20
    )
    assert final["rollback"]["then"] == [{"name": "migrations", "state": "delivered"}], final


@pytest.mark.timeout(60)
async def test_every_follow_up_is_shown_from_the_rollback_on_in_the_configured_order(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback_receiver: Any
) -> None:
    """README: the deploy object shows each follow-up's state under `rollback.then`,
    `pending` until it has an outcome (the API: "sent, or to be sent"). While the first
    (`zz-migrations`) was under way, the two after it, not begun, were not shown at all,
    and the list came in the order of their names, not the configuration's."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    first: RollbackReceiver = await rollback_receiver(SECRET, script=["200:delay=1.5"])
    later: RollbackReceiver = await rollback_receiver(SECRET)
    names = ["zz-migrations", "cache-purge", "audit"]
    then = ", ".join(
        f"{{name: {name}, url: '{url}'}}"
        for name, url in zip(names, [first.url, later.url, later.url], strict=True)
    )
    rollback = f"rollback: {{url: {receiver.url}, secret: {SECRET}, then: [{then}]}}"
    agent = await start_agent(environment("production", flip_target.url, extra=rollback))
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await first.wait_for_attempts(1, within=30)  # held: the others not begun
    shown = await agent.get(deploy["id"])
    assert shown["rollback"]["then"] == [{"name": n, "state": "pending"} for n in names], shown
    final = await agent.wait_until(
        deploy["id"], lambda d: all(t["state"] != "pending" for t in d["rollback"]["then"]), 20
    )
    assert final["rollback"]["then"] == [{"name": n, "state": "delivered"} for n in names]

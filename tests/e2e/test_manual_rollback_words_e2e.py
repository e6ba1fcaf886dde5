"""A manual rollback is delivered by the replica that took it, under the lease it was
stored with, as a failed verdict's is: the daemon's sweep for lapsed rollbacks leaves it
alone and says nothing of it. Stored unleased, the sweep (woken by the window's end, or
at its next turn) found it first whenever the sender's take was slower (a loaded store),
and logged every one "resuming rollback delivery (attempt 1, from nobody)": neither a
resume nor from anyone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent.records import RollbackIntent
from agent.store.sql import SqlStore
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", ["watching", "passed"])
async def test_a_manual_rollback_is_sent_by_its_sender_not_picked_up_as_resumed(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    state: str,
) -> None:
    caplog.set_level(logging.INFO)
    take = SqlStore.take_rollback

    async def slow_take(self: SqlStore, *args: Any, **kwargs: Any) -> RollbackIntent | None:
        await asyncio.sleep(0.5)  # a loaded store: the daemon's sweeps (every 0.1 s) run
        return await take(self, *args, **kwargs)

    monkeypatch.setattr(SqlStore, "take_rollback", slow_take)
    receiver = await rollback_receiver(SECRET)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            window="30s" if state == "watching" else "1s",
            extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}",
        )
    )
    deploy = await agent.register("production", "v2")
    if state == "passed":
        assert (await agent.settled(deploy["id"]))["state"] == "passed"
    await agent.rollback(deploy["id"], "checkout broken")
    # rolled_back with its rollback delivered, in one write: a passed window was shown
    # `passed` with its rollback `delivered` until a step after made it rolled_back
    final = await agent.settled(deploy["id"])
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered")
    assert list(receiver.delivered) == [deploy["id"]]
    assert len(receiver.attempts) == 1
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "rollback delivery" in m], said
    assert f"rollback for {deploy['id']} delivered on attempt 1 (HTTP 200)" in said, said

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
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, RefusingReceiver, environment
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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rollback", ["refused", "dry_run"])
async def test_a_manual_rollback_of_a_failed_window_says_what_its_rollback_did(
    start_agent: AgentFactory, flip_target: FlipTarget, rollback: str
) -> None:
    """A `failed` window has a rollback whose delivery failed, or one a dry run skipped:
    the contract's 409 for a second ask said "already has a rollback" alone, as if one
    had gone out, and `postflight rollback` printed just that to the person who was
    asking because none had. It says what that rollback was, and what is left to do."""
    receiver = RefusingReceiver(400, lambda request: "unknown service")
    await receiver.start()
    try:
        dry_run = "true" if rollback == "dry_run" else "false"
        extra = f"rollback: {{url: '{receiver.url}', secret: {SECRET}, dry_run: {dry_run}}}"
        agent = await start_agent(
            environment("production", flip_target.url, window="30s", extra=extra)
        )
        deploy = await agent.register("production", "v2")
        flip_target.bad = True
        final = await agent.settled(deploy["id"])
        assert final["state"] == "failed", final
        url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"
        async with agent.http.post(url, json={"reason": "by hand"}, headers=agent.headers) as r:
            assert r.status == 409
            detail = (await r.json())["detail"]
    finally:
        await receiver.stop()
    assert detail.startswith(f"deploy {deploy['id']} already has a rollback, "), detail
    if rollback == "dry_run":
        assert "skipped: production's rollback.dry_run is true" in detail, detail
        assert receiver.posts == 0
    else:
        assert "which failed: HTTP 400" in detail, detail
        assert "roll back at the target by hand" in detail, detail
        assert receiver.posts == 1

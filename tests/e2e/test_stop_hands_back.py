"""What a clean stop hands back to the next agent on the same store, through the real
daemon and counted at real receivers: nothing lost, nothing sent twice, and nothing
held for a claim's whole lapse when the agent that held it said it let go."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_S = 2.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("cut", ["retry", "in flight"])
async def test_a_follow_up_cut_by_a_stop_is_sent_at_once_by_the_next_agent(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
    cut: str,
) -> None:
    """A `rollback.then` follow-up a stop cuts (in its retry's wait, or its request out)
    is handed back: its claim released, so the restart sends it at once, where it waited
    for the claim to lapse (`follow_up_lease`: 8 × (2 s + 30 s) + 5 s = 261 s here, 565 s
    with the defaults). The rollback itself reached its receiver once."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    first = "503:retry-after=30" if cut == "retry" else "hang"
    follow: RollbackReceiver = await rollback_receiver(SECRET, script=[first], path="/then")
    rollback = (
        f"rollback: {{url: {receiver.url}, secret: {SECRET}, timeout: 2s, max_attempts: 8,"
        f" backoff: 1s, max_backoff: 30s, then: [{{name: migrations, url: '{follow.url}'}}]}}"
    )
    env = environment("production", flip_target.url, extra=rollback)
    server = f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s"
    agent = await start_agent(env, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await follow.wait_for_attempts(1, within=30)  # the follow-up refused (30 s wait) or hung
    with caplog.at_level(logging.WARNING, logger="postflight"):
        await agent.stop()
    said = [r.getMessage() for r in caplog.records if deploy["id"] in r.getMessage()]
    cut_off = [m for m in said if "cut off" in m or "leaving it" in m]
    assert cut_off and "migrations" in cut_off[0], said

    restarted = await start_agent(env, server=server, owner="replica-a")
    final = await restarted.wait_until(
        deploy["id"],
        lambda d: (
            (d.get("rollback") or {}).get("then") == [{"name": "migrations", "state": "delivered"}]
        ),
        15,  # well within the claim's 261 s: handed back, not waited out
    )
    assert final["state"] == "rolled_back"
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts
    assert [a.accepted for a in follow.attempts][-1] is True, follow.attempts
    assert len(follow.attempts) == 2, follow.attempts

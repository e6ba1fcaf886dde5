"""README, the rollback webhook: "other 4xx fail at once, and so does a 3xx (a signed POST
is never replayed to another address …)", through the agent, counted at the receivers: one
attempt, the rollback `failed`, and the address a redirect names never asked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, environment
from tests.fakes.prometheus import free_port
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
@pytest.mark.parametrize("status", [302, 307, 308, 404, 422])
async def test_a_3xx_or_a_4xx_fails_the_rollback_at_its_first_attempt(
    start_agent: AgentFactory,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    status: int,
) -> None:
    elsewhere = await rollback_receiver(SECRET)
    answer = f"{status}:location={elsewhere.url}" if status < 400 else str(status)
    receiver = await rollback_receiver(SECRET, [answer, *[200] * 5])
    rollback = (
        f"rollback: {{url: '{receiver.url}', secret: {SECRET}, max_attempts: 5,"
        " backoff: 100ms, max_backoff: 200ms}"
    )
    agent = await start_agent(
        environment("production", f"http://127.0.0.1:{free_port()}", window="30s", extra=rollback)
    )
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=30)
    assert (final["state"], final["rollback"]["state"]) == ("failed", "failed"), final
    assert final["rollback"]["attempts"] == 1, final
    assert len(receiver.attempts) == 1 and elsewhere.attempts == [], elsewhere.attempts

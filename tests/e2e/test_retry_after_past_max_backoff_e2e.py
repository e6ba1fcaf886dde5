"""README, the rollback webhook: 408, 429, 5xx … are "retried with exponential backoff and
full jitter (honouring `Retry-After`, even past `max_backoff`, up to 10 minutes; one
neither digits nor an HTTP-date, such as `-1`, is ignored)", through the agent, counted at
the receiver: a 503 asking for 3 s is waited out though `max_backoff` is 200 ms, and one
whose `Retry-After` is `-1` is retried all the same, delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, environment
from tests.fakes.prometheus import free_port
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(90)
async def test_a_retry_after_is_waited_out_past_max_backoff_and_a_bad_one_ignored(
    start_agent: AgentFactory, rollback_receiver: Callable[..., Awaitable[RollbackReceiver]]
) -> None:
    receiver = await rollback_receiver(SECRET, ["503:retry-after=3", "503:retry-after=-1", 200])
    rollback = (
        f"rollback: {{url: '{receiver.url}', secret: {SECRET}, max_attempts: 5,"
        " backoff: 100ms, max_backoff: 200ms}"
    )
    agent = await start_agent(
        environment("production", f"http://127.0.0.1:{free_port()}", window="30s", extra=rollback)
    )
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=60)
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    attempts = receiver.attempts
    assert [a.idempotency_key for a in attempts] == [deploy["id"]] * 3, attempts
    waited = attempts[1].at - attempts[0].at
    assert waited >= 2.9, waited  # the 3 s asked, not max_backoff's 200 ms

"""README, the rollback webhook, how each answer is taken, through the agent and counted at
the receivers: "other 4xx fail at once, and so does a 3xx (a signed POST is never replayed
to another address …)"; 408, 429, 5xx are "retried with exponential backoff and full jitter
(honouring `Retry-After`, even past `max_backoff`, up to 10 minutes; one neither digits nor
an HTTP-date, such as `-1`, is ignored)". The sender's unit tests held these alone, the
daemon was run with a 400 (`test_contract_webhook_alerts_metrics_e2e.py`). Also "any 2xx is
delivered" (202, 204, 299) and a `Retry-After` written as an HTTP-date."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, environment
from tests.fakes.prometheus import free_port
from tests.receivers import Reply, RollbackAttempt, RollbackReceiver

pytestmark = pytest.mark.e2e


async def rolled_back_through(start_agent: AgentFactory, url: str) -> tuple[str, dict[str, Any]]:
    """A deploy failed at its first round (its target's port has no listener), rolled back
    through the webhook at `url` (5 attempts, backoff 100 ms to 200 ms): its id, and its
    deploy object once settled."""
    rollback = (
        f"rollback: {{url: '{url}', secret: {SECRET}, max_attempts: 5,"
        " backoff: 100ms, max_backoff: 200ms}"
    )
    agent = await start_agent(
        environment("production", f"http://127.0.0.1:{free_port()}", window="30s", extra=rollback)
    )
    deploy = await agent.register("production", "v2")
    return deploy["id"], await agent.settled(deploy["id"], within=60)


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
    _, final = await rolled_back_through(start_agent, receiver.url)
    assert (final["state"], final["rollback"]["state"]) == ("failed", "failed"), final
    assert final["rollback"]["attempts"] == 1, final
    assert len(receiver.attempts) == 1 and elsewhere.attempts == [], elsewhere.attempts


@pytest.mark.timeout(90)
async def test_a_retry_after_is_waited_out_past_max_backoff_and_a_bad_one_ignored(
    start_agent: AgentFactory, rollback_receiver: Callable[..., Awaitable[RollbackReceiver]]
) -> None:
    receiver = await rollback_receiver(SECRET, ["503:retry-after=3", "503:retry-after=-1", 200])
    deploy_id, final = await rolled_back_through(start_agent, receiver.url)
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    attempts = receiver.attempts
    assert [a.idempotency_key for a in attempts] == [deploy_id] * 3, attempts
    waited = attempts[1].at - attempts[0].at
    assert waited >= 2.9, waited  # the 3 s asked, not max_backoff's 200 ms


@pytest.mark.timeout(60)
@pytest.mark.parametrize("status", [202, 204, 299])
async def test_any_2xx_delivers_the_rollback_at_its_first_attempt(
    start_agent: AgentFactory,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    status: int,
) -> None:
    """Contract §3: "any 2xx is delivered", not 200 alone: a 202 (queued), a 204 (no body)
    and a 299 end the deploy rolled back at the one attempt, the status as answered."""
    receiver = await rollback_receiver(SECRET, [status, *[200] * 5])
    deploy_id, final = await rolled_back_through(start_agent, receiver.url)
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    assert (final["rollback"]["attempts"], final["rollback"]["last_status"]) == (1, status)
    assert [(a.idempotency_key, a.status) for a in receiver.attempts] == [(deploy_id, status)]


@pytest.mark.timeout(90)
async def test_a_retry_after_written_as_an_http_date_is_waited_until(
    start_agent: AgentFactory, rollback_receiver: Callable[..., Awaitable[RollbackReceiver]]
) -> None:
    """Contract §3's "honouring `Retry-After`" in its other form, an HTTP-date (RFC 9110
    §10.2.3), through the daemon: the 503's date, 3 to 4 s after the first attempt came,
    is when the next comes, not max_backoff's 200 ms later. The date is written as the
    first attempt arrives (the reply's headers filled in then), so a slow start cannot
    put it in the past."""
    asked = Reply(status=503, headers={})
    until: list[int] = []

    async def date_the_503(attempt: RollbackAttempt) -> None:
        if attempt.n == 1:
            until.append(int(time.time()) + 4)
            asked.headers["Retry-After"] = formatdate(until[0], usegmt=True)

    receiver = await rollback_receiver(SECRET, [asked, 200], on_attempt=date_the_503)
    deploy_id, final = await rolled_back_through(start_agent, receiver.url)
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    attempts = receiver.attempts
    assert [(a.idempotency_key, a.status) for a in attempts] == [(deploy_id, 503), (deploy_id, 200)]
    assert attempts[1].at >= until[0] - 0.05, (attempts[1].at, until)  # not before the date

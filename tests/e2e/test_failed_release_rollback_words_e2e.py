"""A registration's warning says what became of a failed release's rollback at that instant.

The background runs made while a failed release was live are left out of the next
baseline, and the registration says so. A failed window stays `failed` until its rollback
is delivered, so a rollback still retried (its webhook answering 503) or given up was
said "was not rolled back", as if none had been asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agent.appkeys import STORE
from tests.e2e.conftest import (
    SECRET,
    AgentFactory,
    FlipTarget,
    RunningAgent,
    environment,
    held_as_overloaded,
)
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

RETRIED = "max_attempts: 100, backoff: 200ms, max_backoff: 1s"
GIVEN_UP = "max_attempts: 2, backoff: 100ms"


async def runs_since(agent: RunningAgent, since: float, within: float = 30.0) -> None:
    """Wait for a background run of `production` at or after `since`."""
    store = agent.app[STORE]
    deadline = time.monotonic() + within
    while not await store.probe_summaries("production", since, time.time() + 3600.0):
        assert time.monotonic() < deadline, "no background run after the failed deploy"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("delivery", "words"),
    [
        (RETRIED, "whose window failed and whose rollback is still being tried"),
        (GIVEN_UP, "whose window failed and whose rollback failed"),
    ],
    ids=["still-retried", "given-up"],
)
async def test_a_failed_releases_rollback_is_said_as_it_stands(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Callable[..., Awaitable[RollbackReceiver]],
    delivery: str,
    words: str,
) -> None:
    receiver = await rollback_receiver(SECRET, script=[503] * 1000)
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}, {delivery}}}",
        )
    )
    flip_target.bad = True
    for _ in range(3):  # a fail the loaded machine's own stall held is registered again
        v2 = await agent.register("production", "v2")
        ended = await agent.wait_until(v2["id"], lambda d: d["state"] != "watching")
        if not held_as_overloaded(ended):
            break

    def retried_or_given_up(d: dict[str, Any]) -> bool:
        rollback = d.get("rollback") or {}
        if delivery == GIVEN_UP:
            return rollback.get("state") == "failed"
        return rollback.get("state") == "pending" and rollback.get("attempts", 0) >= 2

    seen = await agent.wait_until(v2["id"], retried_or_given_up)
    assert seen["state"] == "failed", seen
    stored = await agent.app[STORE].get_window(v2["id"])
    assert stored is not None
    await runs_since(agent, stored.deployed_at)
    v3 = await agent.register("production", "v3")
    baseline = [w for w in v3.get("warnings") or [] if w.startswith("baseline:")]
    assert len(baseline) == 1, v3
    assert f"probed v2 ({v2['id']}), {words}" in baseline[0], baseline

"""A 2 ms service read by the real daemon: its loop blocked a few ms at each answer is the
agent's (no rollback), the same service at 4 ms on a quiet loop is the target's (rolled
back). The heartbeat's 10 ms bound cannot tell the two apart; the kernel's receive stamp
of each answer (`checks.stamps`) can.

Truth from outside: the rollback receiver counts attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory
from tests.receivers import RollbackReceiver
from tests.thread_target import ThreadTarget, thread_target

SERVICE_S = 0.002
BLOCK_S = 0.004
"""Under the drop rule's floor (`checks.lag.SLACK_S`, 5 ms): nothing is dropped, every
latency is kept, some 2-4 ms late."""


def environment(target: ThreadTarget, receiver_url: str) -> str:
    """The median, breached 3 rounds in a row: a 2 ms service's p95, and a round or two,
    on this shared machine are its scheduler's (5-9 ms)."""
    return f"""
    production:
      base_url: {target.url}
      window: 4s
      interval: 500ms
      background_interval: 100ms
      probes_per_round: 3
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 3}}
      rules:
        - {{name: probe-latency, source: checks, metric: latency_p50, max_increase: 50%}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
    """


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


@pytest.mark.parametrize(
    ("slower", "block_s"), [(1.0, BLOCK_S), (2.0, 0.0)], ids=["a-a-blocked", "x2-quiet"]
)
async def test_a_2ms_services_answers_read_late_by_a_blocked_loop_are_no_latency_x2(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    slower: float,
    block_s: float,
) -> None:
    """A/A: each request the target gets blocks the agent's loop 4 ms while the 2 ms
    answer is on its way (read some 2 ms late, 4 ms against a 2 ms baseline: a "x2" the
    old guard never weighed, as nothing was dropped, and rolled back). The agent measured
    each answer's wait to the kernel's stamp: inconclusive, nothing rolled back. The
    control: the service really at 4 ms on a quiet loop is rolled back."""
    target.delay_s = SERVICE_S
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(target, receiver.url))
    await asyncio.sleep(3.0)  # a baseline of some 30 probes, by a free loop
    target.delay_s = SERVICE_S * slower
    deploy = await agent.register("production", "v2.4.2")
    loop = asyncio.get_running_loop()
    if block_s:
        target.on_request = lambda: loop.call_soon_threadsafe(time.sleep, block_s)
    try:
        final = await agent.settled(deploy["id"], within=60)
    finally:
        target.on_request = None
    await asyncio.sleep(0.3)
    reason = final["verdict"]["reason"]
    if slower > 1:
        assert final["state"] == "rolled_back", reason
        assert len(receiver.attempts) >= 1
    else:
        assert final["state"] in ("passed", "inconclusive"), reason
        assert receiver.attempts == []

"""A probe whose deadline the agent's own stall ate before its request was made still gives
the target its room: the real daemon, its event loop stalled (`time.sleep`) between a
window probe's start, where its deadline is fixed, and its request, against a healthy
target on its own loop in a thread.

Before, the request's timeout was what the stall left of the deadline (5 ms here): the
target, answering in 20 ms, was silent that long, its socket empty when the agent looked,
and each probe counted as the target's timeout: a healthy deploy rolled back.
Measured so at load 17 (one probe of 3,300, whose target answered in 17 ms: a timeout
after 8 ms). Truth from outside: the rollback receiver counts attempts, the target what
it answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agent.appkeys import STORE
from checks.base import CheckContext
from checks.http import HttpCheck
from tests.e2e.conftest import SECRET, AgentFactory
from tests.heavy import HEAVY
from tests.receivers import RollbackReceiver
from tests.thread_target import ThreadTarget, thread_target

pytestmark = HEAVY

LEFT_S = 0.005
"""What the stall leaves of a probe's deadline: less than the target's 20 ms."""


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


async def test_a_stall_before_the_request_leaves_the_target_its_room(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target.delay_s = 0.02
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(f"""
    production:
      base_url: {target.url}
      window: 3s
      interval: 1s
      background_interval: 200ms
      probes_per_round: 2
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}
    """)
    prepare = HttpCheck._prepare
    stalls = 0

    def stalled(self: HttpCheck, ctx: CheckContext) -> Any:
        nonlocal stalls
        if ctx.deadline is not None:  # a window's probe (background runs have none)
            stalls += 1
            # the agent's: a collection, the process descheduled (on a connection kept
            # alive: a new one's connect ran out of time, which the old code dropped)
            time.sleep(max(0.0, ctx.deadline - asyncio.get_running_loop().time() - LEFT_S))
        return prepare(self, ctx)

    monkeypatch.setattr(HttpCheck, "_prepare", stalled)
    deploy = await agent.register("production", "v2.4.2")
    final = await agent.settled(deploy["id"], within=60)
    rounds = await agent.app[STORE].rounds(deploy["id"])
    failed = [r.summary["checks"]["api-health"] for r in rounds]
    assert all(c["failed"] == 0 for c in failed), failed  # no error counted
    assert final["state"] not in ("failed", "rolled_back"), final["verdict"]
    assert final["rollback"] is None
    assert receiver.attempts == []
    assert stalls >= 4 and target.answered >= stalls  # each stalled probe got its answer
    # the lag said: each stalled round overran its slot, counted as the agent's
    assert agent.metric("postflight_round_overruns_total", environment="production") >= 1

"""The real daemon, its event loop stalled just after each probe's request is written: an
answer the stall held back (a target on the agent's host, starved while the agent stalled,
answering 5 ms after) is no latency rollback; a target really slower than the rule, under
the same stalls, still is rolled back.

Truth from outside: the rollback receiver counts attempts; the target, in its own thread,
what it took from each request's arrival."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory
from tests.heavy import HEAVY
from tests.receivers import RollbackReceiver
from tests.test_agent_lag_resumed import SharedHostTarget, stall_after_writes
from tests.thread_target import ThreadTarget, running

pytestmark = HEAVY

STALL_S = 0.35
"""Past the rule's 300 ms, and over well before a 450 ms answer lands."""


def environment(target: ThreadTarget, receiver_url: str) -> str:
    """An absolute latency bound, a threshold policy failing the window on two breached
    rounds in a row, a probe a round."""
    return f"""
    production:
      base_url: {target.url}
      window: 4s
      interval: 1s
      probes_per_round: 1
      checks:
        - {{name: health, type: http, path: /health, timeout: 900ms}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-latency, source: checks, metric: latency_p95, max: 300ms}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
    """


@pytest.fixture
def shared() -> Iterator[SharedHostTarget]:
    with running(SharedHostTarget()) as started:
        yield started


async def _stalled_window(
    start_agent: AgentFactory,
    target: ThreadTarget,
    receiver: RollbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
    starves: SharedHostTarget | None,
) -> tuple[dict[str, Any], list[float]]:
    """The deploy's final state, the agent's loop stalled `STALL_S` after each write to
    `target` from the registration on (`starves` waiting for each stall's end), and the
    stalls' ends."""
    agent = await start_agent(environment(target, receiver.url))
    ended = stall_after_writes(monkeypatch, target.port, starves, math.inf, STALL_S)
    deploy = await agent.register("production", "v2.4.2")
    final = await agent.settled(deploy["id"], within=30)
    await asyncio.sleep(0.3)  # a rollback sent late would be in by now
    return final, ended


async def test_answers_a_stall_held_back_are_no_latency_rollback(
    start_agent: AgentFactory,
    shared: SharedHostTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 5 ms target starved by each stall of the agent's: its answers land 5 ms after the
    loop comes back, their stamps 0.36 s from the write. The old code kept those 0.36 s
    as the target's latency and rolled the healthy deploy back ("latency_p95 355ms > max
    300ms"); now each is dropped as the agent's, and the window is not rolled back."""
    shared.delay_s = 0.005
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    final, ended = await _stalled_window(start_agent, shared, receiver, monkeypatch, shared)
    assert len(ended) >= 2 and shared.took
    assert max(shared.took) < STALL_S / 2, shared.took  # the target's own time: milliseconds
    reason = final["verdict"]["reason"]
    assert final["state"] in ("passed", "inconclusive"), reason
    assert final["rollback"] is None, final["rollback"]
    assert receiver.attempts == []


async def test_a_slow_target_under_the_same_stalls_is_still_rolled_back(
    start_agent: AgentFactory,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: a target taking 450 ms, on a host of its own (the stalls do not starve
    it), the agent's loop stalled the same way. Its answers land 0.1 s after the loop came
    back, on the target's own time: their 450 ms are kept, and the deploy is rolled back."""
    with running(ThreadTarget()) as target:
        target.delay_s = 0.45
        receiver: RollbackReceiver = await rollback_receiver(SECRET)
        final, ended = await _stalled_window(start_agent, target, receiver, monkeypatch, None)
    assert ended
    reason = final["verdict"]["reason"]
    assert final["state"] == "rolled_back", reason
    (rule,) = final["verdict"]["rules"]
    assert rule["outcome"] == "fail" and rule["observed"] >= 0.45, rule
    assert len(receiver.attempts) >= 1

"""A 2 ms service read by the real daemon: its loop blocked a few ms at each answer is the
agent's (no rollback), the same service at 4 ms on a quiet loop is the target's (rolled
back). The heartbeat's 10 ms bound cannot tell the two apart; the kernel's receive stamp
of each answer (`checks.stamps`) can.

Truth from outside: the rollback receiver counts attempts."""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Iterator
from typing import Any

import pytest

import checks.wire as wire
from tests.e2e.conftest import SECRET, AgentFactory
from tests.receivers import RollbackReceiver
from tests.thread_target import ThreadTarget, thread_target

SERVICE_S = 0.002
LATE_S = 0.002
"""How long after each answer is in the agent's socket its loop is still blocked: the loop
is blocked some 4 ms per answer (the 2 ms service, then this), each answer read some 2 ms
late, under the drop rule's floor (`checks.lag.SLACK_S`, 5 ms): nothing is dropped, every
latency is kept."""


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


def reads_late(monkeypatch: pytest.MonkeyPatch, target: ThreadTarget, late_s: float) -> None:
    """From now on the agent's loop is blocked from each request it sends `target` until
    the answer is in its socket's buffer and `late_s` more (in the probe's own send), as
    `tests/e2e/test_overload_e2e.py` does: every answer is read `late_s` late by the
    agent, whatever the machine's timing. Why not from the target's `on_request`: that
    stall starts when the target thread takes the request, which on a loaded machine came
    10-70 ms after it was sent while the agent kept time: the target's own lateness, which
    the guard rightly counts as the target's (the A/A rolled back 2 of 7 at load 16)."""
    send = wire._Conn.send

    def blocked_sending(conn: Any, request: bytes, keep: bool, waiter: Any) -> None:
        send(conn, request, keep, waiter)
        if conn.key[1] != target.port or conn.transport is None:
            return
        select.select([conn.transport.get_extra_info("socket")], [], [], 1.0)
        time.sleep(late_s)

    monkeypatch.setattr(wire._Conn, "send", blocked_sending)


@pytest.mark.parametrize(
    ("slower", "late_s"), [(1.0, LATE_S), (2.0, 0.0)], ids=["a-a-blocked", "x2-quiet"]
)
async def test_a_2ms_services_answers_read_late_by_a_blocked_loop_are_no_latency_x2(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    slower: float,
    late_s: float,
) -> None:
    """A/A: each request the agent sends its target blocks its loop some 4 ms, while the
    2 ms answer is on its way and 2 ms more (read some 2 ms late, 4 ms against a 2 ms
    baseline: a "x2" the old guard never weighed, as nothing was dropped, and rolled
    back). The agent measured each answer's wait to the kernel's stamp: inconclusive,
    nothing rolled back. The control: the service really at 4 ms on a quiet loop is
    rolled back."""
    target.delay_s = SERVICE_S
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(target, receiver.url))
    await asyncio.sleep(3.0)  # a baseline of some 30 probes, by a free loop
    target.delay_s = SERVICE_S * slower
    deploy = await agent.register("production", "v2.4.2")
    with monkeypatch.context() as blocked:
        if late_s:
            reads_late(blocked, target, late_s)
        final = await agent.settled(deploy["id"], within=60)
    await asyncio.sleep(0.3)
    reason = final["verdict"]["reason"]
    if slower > 1:
        assert final["state"] == "rolled_back", reason
        assert len(receiver.attempts) >= 1
    else:
        assert final["state"] in ("passed", "inconclusive"), reason
        assert receiver.attempts == []

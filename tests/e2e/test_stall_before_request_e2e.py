"""A probe whose deadline the agent's own stall ate before its request was made still gives
the target its room: the real daemon, its event loop stalled (`time.sleep`) between a
window probe's start, where its deadline is fixed, and its request, against a healthy
target on its own loop in a thread.

Before, the request's timeout was what the stall left of the deadline (5 ms here): the
target, answering in 20 ms, was silent that long, its socket empty when the agent looked,
and each probe counted as the target's timeout: a healthy deploy rolled back. A window's
probe now has no deadline of its round's (it waits its own timeout, carried past the
round's end: `agent.windows.carried`): the stall here takes all but 5 ms of its timeout,
which the probe still gets whole from its request.
Measured so at load 17 (one probe of 3,300, whose target answered in 17 ms: a timeout
after 8 ms). Truth from outside: the rollback receiver counts attempts, the target what
it answered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agent.appkeys import STORE
from checks.base import CheckContext, CheckResult
from checks.http import HttpCheck
from checks.registry import TIMEOUT_MARGIN_S
from checks.smoke import SmokeCheck, _StepLag
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
        - {{name: api-health, type: http, path: /api/health, timeout: 300ms}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}
    """)
    prepare = HttpCheck._prepare
    stalls = 0

    def stalled(self: HttpCheck, ctx: CheckContext) -> Any:
        nonlocal stalls
        # a window's probe: its room is its timeout (a background run's, half its 200 ms)
        if ctx.room == 0.3:
            stalls += 1
            # the agent's: a collection, the process descheduled (on a connection kept
            # alive: a new one's connect ran out of time, which the old code dropped)
            time.sleep(float(self.config.timeout) - LEFT_S)
        return prepare(self, ctx)

    monkeypatch.setattr(HttpCheck, "_prepare", stalled)
    deploy = await agent.register("production", "v2.4.2")
    final = await agent.settled(deploy["id"], within=60)
    rounds = await agent.app[STORE].rounds(deploy["id"])
    # (a round none of whose probes landed in it has none)
    failed = [r.summary["checks"]["api-health"] for r in rounds if r.summary["checks"]]
    assert all(c["failed"] == 0 for c in failed), failed  # no error counted
    assert final["state"] not in ("failed", "rolled_back"), final["verdict"]
    assert final["rollback"] is None
    assert receiver.attempts == []
    assert stalls >= 4 and target.answered >= stalls  # each stalled probe got its answer


SMOKE = """
production:
  base_url: {url}
  window: 3s
  interval: 1s
  probes_per_round: 2
  checks:
    - name: journey
      type: smoke
      timeout: 1s
      steps:
        - {{name: home, path: /health, expect: {{status: 200}}}}
        - {{name: api, path: /api/health, expect: {{status: 200}}}}
  analysis: {{policy: threshold, failure_limit: 2}}
  rules:
    - {{name: journey-errors, source: checks, check: journey, metric: error_rate, max: 0.05}}
  rollback: {{url: {receiver}, secret: {secret}, backoff: 100ms}}
"""


@dataclass
class SmokeStalls:
    """What a smoke window stalled before each run's first step showed."""

    journeys: list[dict[str, Any]]
    results: list[CheckResult]
    """The window's runs that returned (a run the registry cut raised instead)."""
    stalls: int


async def stalled_smoke(
    start_agent: AgentFactory,
    target: ThreadTarget,
    receiver: RollbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
    past: float,
    limit_s: float,
) -> SmokeStalls:
    """A smoke window whose every run stalls, after it began and before its first step's
    request is sized, until `past` seconds after `limit_s` from its start (negative: before
    it)."""
    target.delay_s = 0.02
    url, secret = receiver.url, SECRET
    agent = await start_agent(SMOKE.format(url=target.url, receiver=url, secret=secret))
    run = SmokeCheck.run
    of = _StepLag.of.__func__  # type: ignore[attr-defined]
    running: list[float] = []
    results: list[CheckResult] = []
    stalls = 0

    async def recorded(self: SmokeCheck, ctx: CheckContext) -> Any:
        # its limit, read by `stalled` below, before this run's first await (smoke checks
        # run only in windows)
        running.append(asyncio.get_running_loop().time() + limit_s)
        result: CheckResult = await run(self, ctx)
        results.append(result)
        return result

    def stalled(cls: type[_StepLag], steps: int, at: str) -> Any:
        nonlocal stalls
        limit = running.pop()
        stalls += 1
        # the agent's, inside the run before its first step (a collection, the process
        # descheduled): the limit was fixed before it
        time.sleep(max(0.0, limit + past - asyncio.get_running_loop().time()))
        return of(cls, steps, at)

    monkeypatch.setattr(SmokeCheck, "run", recorded)
    monkeypatch.setattr(_StepLag, "of", classmethod(stalled))
    deploy = await agent.register("production", "v2.4.2")
    final = await agent.settled(deploy["id"], within=60)
    rounds = await agent.app[STORE].rounds(deploy["id"])
    journeys = [r.summary["checks"]["journey"] for r in rounds if "journey" in r.summary["checks"]]
    assert all(c["failed"] == 0 for c in journeys), journeys  # no error counted
    assert final["state"] not in ("failed", "rolled_back"), final["verdict"]
    assert final["rollback"] is None
    assert receiver.attempts == []
    assert agent.metric("postflight_round_overruns_total", environment="production") >= 1
    return SmokeStalls(journeys, results, stalls)


async def test_a_stall_before_a_smoke_steps_request_leaves_the_target_its_room(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same stall in a `smoke` run: each step still gets its share of the room from
    when it is made. Before, the first step's timeout was what the stall left (5 ms), the
    second's what was left after the first (1 ms), each counted as the target's timeout."""
    receiver = await rollback_receiver(SECRET)
    # to 5 ms before its first step's timeout from the run's start
    seen = await stalled_smoke(start_agent, target, receiver, monkeypatch, -LEFT_S, 1.0)
    # each stalled run passed with both steps answered, or was dropped as the agent's: a
    # step in flight while another run's stall held the loop (`checks.lag`), never failed
    results = seen.results
    passed = [r for r in results if len(r.details.get("steps", ())) == 2]
    dropped = [r for r in results if r.details.get("dropped") == "agent_lag"]
    assert all(r.ok for r in results) and len(passed) + len(dropped) == len(results), results
    assert seen.stalls >= len(results) >= 4 and len(passed) >= 2
    assert target.answered >= 2 * len(passed)


async def test_a_smoke_step_made_at_the_registrys_limit_is_the_agents(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stall to 10 ms before the registry's limit (`TIMEOUT_MARGIN_S` past the run's
    budget from its start): the step's share runs past it, the registry cuts the run, and
    the cut is judged with the stall since the run began: the agent's, dropped. A step
    timeout cut to that limit instead waited 10 ms for the 20 ms target and was counted as
    its error."""
    receiver = await rollback_receiver(SECRET)
    past = TIMEOUT_MARGIN_S - 0.01
    seen = await stalled_smoke(start_agent, target, receiver, monkeypatch, past, 2.0)
    assert seen.stalls >= 2 and all(r.ok for r in seen.results), seen.results
    assert sum(c.get("dropped", 0) for c in seen.journeys) >= 1, seen.journeys

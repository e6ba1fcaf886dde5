"""A round's probes that a stall of the agent's loop made late start one step apart, as
planned, not in one bunch when the loop comes back: a bunch of the agent's own requests
queues at the target, and each kept that queue as the service's latency (footprint
--probe-times, 100 windows at load >= 8: 67-76% of the latencies over the p95 were such
late-started probes), against a baseline probed at the schedule's spacing."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from checks.base import Check, CheckResult, Target
from checks.registry import Started
from checks.sessions import TargetSessions
from checks.ticks import TICK_S
from tests.thread_target import thread_target

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 1200ms
    probes_per_round: 6
    checks:
      - {{name: health, type: http, path: /health, timeout: 600ms}}
"""

STALL_S = 0.45
"""The loop's stall, from the round's start: the first probes (0.1 s apart) fall due in it."""


async def test_probes_a_stall_made_late_start_a_step_apart() -> None:
    """Each probe's start is recorded by its place in the round's plan (`_launch` passes
    it as its `done`'s argument); the probes due after the stall start on time, between
    the moved ones (twice the rate for a stall's length, never a bunch)."""
    with thread_target() as target:
        env = load_settings_text(CONFIG.format(url=target.url)).environments["production"]
        async with TargetSessions() as sessions:
            probe = EnvironmentProbe("production", env, sessions, Metrics())
            loop = asyncio.get_running_loop()
            planned: list[float] = []
            started: dict[int, float] = {}
            launch, start_once = probe._launch, probe.start_once

            async def plan_kept(
                loop: asyncio.AbstractEventLoop, plan: list[Any], end: float | None
            ) -> list[CheckResult]:
                planned.extend(at for at, *_ in plan)
                return await launch(loop, plan, end)

            def recorded(
                check: Check, target: Target, end: float | None, room: float, done: Any
            ) -> Started | None:
                started[done.args[0]] = loop.time()
                return start_once(check, target, end, room, done)

            probe._launch = plan_kept  # type: ignore[method-assign]
            probe.start_once = recorded  # type: ignore[method-assign]
            # room 0.6 s, so the 6 probes are spread 0.1 s apart over the first 0.6 s
            loop.call_soon(time.sleep, STALL_S)  # once the round has planned its probes
            begun = loop.time()
            results = await probe.run_round(1.2, probes=6)
    assert len(results) == 6 and len(started) == 6
    late = [i for i, at in enumerate(planned) if at < begun + STALL_S]
    assert len(late) >= 3, planned  # most fell due in the stall
    # never closer than planned (a tick's rounding either side), however busy the host:
    # before, every probe due in the stall started in the turn that ended it
    for i, j in itertools.pairwise(late):
        assert started[j] - started[i] >= planned[j] - planned[i] - 2 * TICK_S, (
            [round(at - begun, 3) for at in planned],
            {k: round(at - begun, 3) for k, at in started.items()},
        )

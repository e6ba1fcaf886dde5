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
from checks.base import Check, CheckResult, Sample, Target
from checks.lag import LATE_START, SLACK_S, late_start
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
                loop: asyncio.AbstractEventLoop,
                plan: list[Any],
                end: float | None,
                carry: Any = None,
            ) -> list[CheckResult]:
                planned.extend(at for at, *_ in plan)
                return await launch(loop, plan, end, carry)

            def recorded(
                check: Check,
                target: Target,
                end: float | None,
                room: float,
                done: Any,
                late: float = 0.0,
            ) -> Started | None:
                started[done.args[0]] = loop.time()
                return start_once(check, target, end, room, done, late)

            probe._launch = plan_kept  # type: ignore[method-assign]
            probe.start_once = recorded  # type: ignore[method-assign]
            # room 0.6 s, so the 6 probes are spread 0.1 s apart over the first 0.6 s
            loop.call_soon(time.sleep, STALL_S)  # once the round has planned its probes
            begun = loop.time()
            results = await probe.run_round(1.2, probes=6)
    assert len(results) == 6 and len(started) == 6
    late = [i for i, at in enumerate(planned) if at < begun + STALL_S]
    assert len(late) >= 3, planned  # most fell due in the stall
    # never closer than planned (a tick's rounding either side): before, every probe due
    # in the stall started in the turn that ended it. The stall moved them all by what it
    # owed the first (`shift`); a moved start that another stall of a busy host made late
    # again runs when its turn comes (`Ticks.start_at`), so the next one, on time, follows
    # it closer by just that lateness (a suite run at load 19 saw 70 ms of a 100 ms step)
    shift = started[late[0]] - planned[late[0]]
    for i, j in itertools.pairwise(late):
        late_again = max(0.0, started[i] - (planned[i] + shift))
        assert started[j] - started[i] >= planned[j] - planned[i] - 2 * TICK_S - late_again, (
            [round(at - begun, 3) for at in planned],
            {k: round(at - begun, 3) for k, at in started.items()},
        )


async def test_a_probe_moved_by_a_stall_and_started_late_again_keeps_no_latency() -> None:
    """A probe moved after one stall (`Ticks.start_at`) that a second stall makes late
    again went out with whatever else fell due meanwhile: its answer counts, its latency
    is the agent's (`latency_dropped: agent_late_start`, counted as
    `agent_lag_latency`), as a latency inflated by a stall is. The first stall moves the
    probes due in it a step apart from its end (the first at once); the second, from the
    first moved start, holds the next ones past their moments. (It began at a fixed 0.5 s:
    50 ms after the first stall's end on a quiet machine, and before or after that start
    by how late a loaded one ran the round and the stall.)"""
    with thread_target() as target:
        env = load_settings_text(CONFIG.format(url=target.url)).environments["production"]
        metrics = Metrics()
        async with TargetSessions() as sessions:
            probe = EnvironmentProbe("production", env, sessions, metrics)
            loop = asyncio.get_running_loop()
            start_once = probe.start_once
            moved: list[float] = []

            def then_stalled(*args: Any, **kwargs: Any) -> Started | None:
                run = start_once(*args, **kwargs)
                if not moved and loop.time() - begun >= STALL_S:  # the first moved start
                    moved.append(loop.time())
                    loop.call_soon(time.sleep, 0.4)
                return run

            # four connections kept alive: the moved starts go out on them, not on connects
            # of their own that the bunch holds (once named as that stall's, `agent_lag`,
            # before the late start came first: `checks.lag.agents_part`)
            warm = await asyncio.gather(*(probe.run_once(probe.checks[0]) for _ in range(4)))
            assert [r.ok for r in warm] == [True] * 4
            probe.start_once = then_stalled  # type: ignore[method-assign]
            begun = loop.time()
            loop.call_soon(time.sleep, STALL_S)
            results = await probe.run_round(1.2, probes=6)
    assert moved, "no start ran after the first stall"
    late = [r for r in results if r.details.get("latency_dropped") == LATE_START]
    assert late, [(r.details, r.samples) for r in results]
    for result in late:
        assert result.ok and result.samples[0].status == 200  # the answer counts
        assert result.samples[0].latency_s is None
        assert result.details["started_late_s"] > SLACK_S
    labels = {"environment": "production", "result": "agent_lag_latency"}
    dropped = metrics.registry.get_sample_value("postflight_samples_dropped_total", labels)
    assert dropped is not None and dropped >= len(late)


def test_what_a_late_start_drops_of_a_result() -> None:
    """An answer keeps its status, not its latency; a failed latency assertion (the bunch's
    queue could have failed it) is dropped whole, as the agent's; a timeout, a load run's
    samples and a start within the agent's resolution are left as they are."""
    answer = Sample(check="health", ok=True, latency_s=0.03, status=200)
    result = CheckResult("health", "http", True, (answer,), "", 0.03)
    kept, dropped = late_start(result, 0.08)
    assert dropped == "agent_lag_latency" and kept.ok and kept.samples[0].status == 200
    assert kept.samples[0].latency_s is None and kept.details["started_late_s"] == 0.08
    slow = Sample(check="health", ok=False, latency_s=0.09, status=200, error="latency")
    failed = CheckResult("health", "http", False, (slow,), "latency 90ms > 50ms", 0.09)
    out, dropped = late_start(failed, 0.08)
    assert dropped == "agent_lag" and out.ok and not out.samples
    assert out.details["dropped"] == "agent_lag" and "latency 90ms > 50ms" in out.message
    silent = Sample(check="health", ok=False, latency_s=2.0, error="timeout")
    timeout = CheckResult("health", "http", False, (silent,), "no response within 2s", 2.0)
    load = CheckResult("feed", "load", True, (answer, answer), "", 1.0)
    for same, late in ((timeout, 0.08), (load, 0.08), (result, SLACK_S)):
        assert late_start(same, late) == (same, None)

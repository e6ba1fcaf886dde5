"""A probe that both rules on the agent's part would drop (its start late, `late_start`,
and a stall of the agent's loop while it waited, `attributed`) says one reason whatever
the machine's load: the late start's, which the agent measured to the tick before the
request went out (`checks.lag.agents_part`). A stall's rule then judges only what the
late start leaves: a timeout.

Why: each rule looked at what the one before it left, the stall's first, so a late-started
probe that a busy host's own stall also caught said `agent_lag` where a quiet host said
`agent_late_start`, the reason changing with the load (tests/test_probe_start_spacing.py
warmed its connections to keep it from doing so).
"""

from __future__ import annotations

import asyncio
import time

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult, Sample
from checks.lag import LATE_START, agents_part
from checks.sessions import TargetSessions
from tests.test_agent_lag_timeouts import CONFIG
from tests.thread_target import thread_target

STALL_S = 0.3
LATE_S = 0.08


async def test_a_late_started_probe_a_stall_also_caught_says_its_late_start() -> None:
    """A probe its grid started 80 ms late, whose 20 ms answer the agent's loop, stalled
    0.3 s as the target had the request, read late: its 200 counts, its latency is
    dropped as its late start's (`started_late_s`). The old code named the stall
    (`latency_dropped: agent_lag`), as a quiet host would not have."""
    with thread_target() as target:
        target.delay_s = 0.02
        text = CONFIG.format(url=target.url, timeout="2s")
        env = load_settings_text(text).environments["production"]
        metrics = Metrics()
        loop = asyncio.get_running_loop()
        async with TargetSessions() as sessions:
            probe = EnvironmentProbe("production", env, sessions, metrics)
            target.on_request = lambda: loop.call_soon_threadsafe(time.sleep, STALL_S)
            result = await probe.run_once(probe.checks[0], late=LATE_S)
    [sample] = result.samples
    assert result.ok and sample.status == 200 and sample.latency_s is None, result.details
    assert result.details["latency_dropped"] == LATE_START, result.details
    assert result.details["started_late_s"] == LATE_S
    labels = {"environment": "production", "result": "agent_lag_latency"}
    assert metrics.registry.get_sample_value("postflight_samples_dropped_total", labels) == 1


def test_the_late_start_is_named_first_and_the_stall_judges_what_it_leaves() -> None:
    """Both rules on one run: a latency is the late start's; a timeout, which a late
    start never explains, the stall's (the whole run dropped); either alone, its own."""
    answer = Sample(check="health", ok=True, latency_s=0.4, status=200)
    read_late = CheckResult("health", "http", True, (answer,), "200", 0.4)
    out, dropped = agents_part(read_late, stalled=0.3, unattended=0.3, late=LATE_S)
    assert dropped == "agent_lag_latency" and out.details["latency_dropped"] == LATE_START
    out, dropped = agents_part(read_late, stalled=0.3, unattended=0.3, late=0.0)
    assert dropped == "agent_lag_latency" and out.details["latency_dropped"] == "agent_lag"
    silent = Sample(check="health", ok=False, latency_s=2.0, error="timeout")
    timeout = CheckResult("health", "http", False, (silent,), "no response within 2s", 2.0)
    out, dropped = agents_part(timeout, stalled=0.5, unattended=0.5, late=LATE_S)
    assert dropped == "agent_lag" and not out.samples and out.details["stalled_s"] == 0.5
    assert agents_part(timeout, stalled=0.0, unattended=0.0, late=LATE_S) == (timeout, None)

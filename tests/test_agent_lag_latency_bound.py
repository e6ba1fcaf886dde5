"""A failed `max_latency` on a stalled agent: the stall excuses only the part of the
latency it explains. A miss still past its bound less the whole stall is the target's (a
slow service behind a stalled agent), counted as a failure; one the stall explains is
dropped as the agent's, as before.

Why: a failed latency assertion was dropped whenever the agent's loop stalled for more
than a tenth of the wait, so a 1 s service against `max_latency: 100ms` whose wait held
a 0.3 s stall of the agent's was never a failure. The target runs on its own loop in a
thread (`tests.thread_target`): stalling the agent's loop leaves it answering on time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from agent.metrics import Metrics
from checks.base import CheckResult
from checks.lag import LATENCY_BOUND, verdict_on
from checks.sessions import TargetSessions
from tests.test_agent_lag import CONFIG, _dropped
from tests.test_agent_lag_aiohttp import _loops, _probe
from tests.test_agent_lag_smoke_steps import _smoke_round, second_step_within
from tests.thread_target import ThreadTarget, thread_target


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


@pytest.mark.parametrize(
    ("latency", "stalled", "late", "dropped"),
    [
        (1.0, 0.3, 0.0, None),  # 1 s less the 0.3 s stall is still past 100 ms: the target's
        (1.0, 0.3, 0.3, "agent_lag_latency"),  # the same, read late: counted, latency dropped
        (0.32, 0.3, 0.3, "agent_lag"),  # 20 ms read 0.3 s late: the stall explains the miss
        (0.4, 0.3, 0.0, "agent_lag"),  # less the stall and the heartbeat's blind spot: 85 ms
        (1.0, 0.05, 0.0, None),  # no stall past a tenth of the wait: the target's, as before
    ],
)
def test_a_stall_excuses_only_the_part_of_a_missed_max_latency_it_explains(
    latency: float, stalled: float, late: float, dropped: str | None
) -> None:
    assert verdict_on(False, "latency", latency, latency, stalled, late, 0.1) == dropped


def test_a_missed_max_latency_of_unknown_bound_is_dropped_as_before() -> None:
    """Where the bound is not known, the stall past a tenth of the wait still drops it."""
    assert verdict_on(False, "latency", 1.0, 1.0, 0.3, 0.0) == "agent_lag"


async def test_a_slow_service_behind_a_stalled_agent_still_fails_its_max_latency(
    target: ThreadTarget,
) -> None:
    """A 1 s target against `max_latency: 100ms`; the agent's loop stalls 0.3 s as the
    target has the request (a third of the wait): the probe is the target's latency
    failure, with the bound in its details, and nothing is dropped. The old code dropped
    it as the agent's (`agent_lag`), the service's slowness unseen."""
    target.delay_s = 1.0
    loop = asyncio.get_running_loop()
    target.on_request = lambda: loop.call_soon_threadsafe(time.sleep, 0.3)
    metrics = Metrics()
    text = CONFIG.format(url=target.url, probes=1, path="/health", timeout="3s").replace(
        "timeout: 3s}", "timeout: 3s, expect: {max_latency: 100ms}}"
    )
    assert "max_latency" in text
    async with TargetSessions() as sessions:
        [result] = await _probe(text, sessions, metrics).run_round(2.0, probes=1)
    assert "dropped" not in result.details, result.details
    [sample] = result.samples
    assert not sample.ok and sample.error == "latency", result.message
    assert result.details[LATENCY_BOUND] == 0.1
    assert _dropped(metrics, "agent_lag") == 0
    failed = metrics.registry.get_sample_value(
        "postflight_check_runs_total",
        {"environment": "production", "check": "health", "result": "fail"},
    )
    assert failed == 1


@pytest.mark.parametrize("new_loop", _loops())
def test_a_slow_second_step_behind_a_stalled_agent_still_fails_its_max_latency(
    target: ThreadTarget, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """A smoke's second step against `max_latency: 100ms`, the target taking 0.8 s, the
    agent's loop stalling 0.3 s as the target has that request: the run fails at that
    step, the target's, as a one-step run does. The old code dropped the run."""
    target.delay_s = 0.8
    metrics = Metrics()
    text = second_step_within("100ms")
    result: CheckResult = _smoke_round(target, metrics, new_loop, 0.3, text)
    assert not result.ok and "dropped" not in result.details, result.message
    _, second = result.samples
    assert not second.ok and second.error == "latency", result.details
    assert result.details["agent_lag"]["agent_lag"] == 0
    assert _dropped(metrics, "agent_lag") == 0

"""What a window keeps of its latencies for the overload guard: only what it may still read.

`DelayTally` keeps every kept deploy latency of the window with its measured delay: the
guard's margin is an exact quantile over them all. Three float32 arrays a check were 432 KB
a window-hour at 10 probes a second (`bench/footprint.py`'s 200 one-hour windows: 86 MB/h
at full pace, the largest traced growth of its shortened run). Once the window dropped a
reading the guard weighs it by the heartbeat's bound only, never the kernel's measure; a
check with a reading it could not measure, or a window resumed from its stored rounds, is
weighed by the worst case: what none of them reads is not kept."""

from __future__ import annotations

import logging

import numpy as np

from agent.analysis.stats import percentile
from agent.analysis.types import Rule
from agent.windows.overload import DropTally
from checks.base import CheckResult, Sample
from checks.lag import AGENT_DELAY, AGENT_KERNEL_DELAY

LOG = logging.LoggerAdapter(logging.getLogger("test"), {})
RULE = Rule("probe-latency", "checks", "latency_p95", max_increase=0.5)


def reading(
    rng: np.random.Generator, check: str = "health", *, measured: bool = True
) -> CheckResult:
    """A kept deploy latency with the delays the agent measured (heartbeat's, kernel's)."""
    latency = float(rng.uniform(0.002, 0.02))
    sample = Sample(check, ok=True, status=200, latency_s=latency)
    details: dict[str, object] = {}
    if measured:
        details = {
            AGENT_DELAY: round(float(rng.uniform(0.0, 0.005)), 4),
            AGENT_KERNEL_DELAY: round(float(rng.uniform(0.0, 0.001)), 5),
        }
    return CheckResult(check, "http", True, (sample,), "m", latency, details)


def dropped() -> CheckResult:
    sample = Sample("health", ok=True, status=200, latency_s=None)
    return CheckResult("health", "http", True, (sample,), "m", 0.1, {"latency_dropped": "x"})


def kept(tally: DropTally) -> int:
    """Bytes of readings kept."""
    return sum(len(a) * a.itemsize for read in tally.delays.read.values() for a in read)


def test_a_window_that_dropped_a_reading_keeps_two_floats_a_reading() -> None:
    rng = np.random.default_rng(4)
    tally, rounds = DropTally(), [[reading(rng) for _ in range(10)] for _ in range(360)]
    for k, round_ in enumerate(rounds):
        tally.note([*round_, dropped()] if k == 3 else round_, LOG)
    readings = [r for round_ in rounds for r in round_]
    assert kept(tally) == 2 * 4 * len(readings)
    # weighed as before: by the heartbeat's bound, over every reading of the window
    latency = np.array([r.samples[0].latency_s for r in readings])
    delay = np.array([r.details[AGENT_DELAY] for r in readings])
    x = latency.astype(np.float32)
    least = (latency - np.minimum(delay, latency)).astype(np.float32)
    expected = percentile(x.tolist(), 0.95) - percentile(least.tolist(), 0.95)
    assert tally.delays.margin(RULE) == max(0.0, expected)


def test_a_window_resumed_from_its_rounds_keeps_no_reading() -> None:
    rng = np.random.default_rng(5)
    tally = DropTally()
    tally.note_summary({"checks": {"health": {"runs": 10}}, "probed": {"health": 10}})
    for _ in range(100):
        tally.note([reading(rng) for _ in range(10)], LOG)
    assert kept(tally) == 0
    assert tally.delays.margin(RULE) is None  # the worst case, as before


def test_a_check_with_a_reading_it_could_not_measure_keeps_none() -> None:
    rng = np.random.default_rng(6)
    tally = DropTally()
    for k in range(100):
        extra = [reading(rng, measured=False)] if k == 50 else []
        tally.note([*(reading(rng) for _ in range(10)), *extra], LOG)
        tally.note([reading(rng, "other")], LOG)
    assert kept(tally) == 3 * 4 * 100  # the other check's, still weighed by either measure
    assert tally.delays.margin(RULE) is None  # the worst case, as before
    assert tally.delays.margin(Rule("other", "checks", "latency_p95", max=0.01, check="other"))

"""An answer that landed just as the agent's loop came back from a stall: the stall held it
(`checks.lag.AGENT_RESUMED`), so its latency is the agent's, whatever the kernel's stamp of
its arrival says; a slow target's answer, landing on its own time, keeps its latency.

The target runs on its own event loop in a thread (a real aiohttp server); the agent's
loop is stalled (`time.sleep` in a callback) just after a probe's request was written.
What the target took is measured in its thread (from the request's arrival to its answer
ready), never from the agent's bookkeeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult
from checks.lag import AGENT_RESUMED, BEAT_S, SLACK_S, resumed_into
from checks.sessions import TargetSessions
from checks.wire import _Conn
from tests.test_agent_lag_timeouts import CONFIG
from tests.thread_target import ThreadTarget, running

STALL_S = 0.4

BIG_BYTES = 8 << 20
"""An answer far larger than loopback's socket buffers: its last bytes wait, by TCP's flow
control, for the agent to read the first."""


class BigTarget(ThreadTarget):
    """`/health` answers `BIG_BYTES` after `delay_s` (a small body until `big` is set: a
    connection warmed by a big one has its buffers grown by the kernel's autotuning, and
    on a loaded machine held all of it); `took` gets, per request, the seconds from its
    arrival to the whole answer handed to the target's transport."""

    def __init__(self) -> None:
        super().__init__()
        self.took: list[float] = []
        self.big = False

    async def health(self, request: web.Request) -> web.StreamResponse:
        came = time.perf_counter()
        await asyncio.sleep(self.delay_s)
        response = web.Response(body=b"x" * (BIG_BYTES if self.big else 16))
        self.took.append(time.perf_counter() - came)
        return response


@pytest.fixture
def big() -> Iterator[BigTarget]:
    with running(BigTarget()) as started:
        yield started


class SharedHostTarget(ThreadTarget):
    """A target on the agent's own host, which the agent's stall starved: each request
    waits (in the target's thread) until the stall is over (`free`), then is answered in
    `delay_s`."""

    def __init__(self) -> None:
        super().__init__()
        self.free = threading.Event()
        self.free.set()
        self.took: list[float] = []

    async def health(self, request: web.Request) -> web.Response:
        came = time.perf_counter()
        await asyncio.get_running_loop().run_in_executor(None, self.free.wait, 5.0)
        waited = time.perf_counter() - came
        await asyncio.sleep(self.delay_s)
        self.took.append(time.perf_counter() - came - waited)
        return web.json_response({"status": "ok"})


def _probe(url: str, metrics: Metrics, sessions: TargetSessions) -> EnvironmentProbe:
    text = CONFIG.format(url=url, timeout="1500ms")  # a probe a round, rounds of 2 s
    env = load_settings_text(text).environments["production"]
    return EnvironmentProbe("production", env, sessions, metrics)


def stall_after_writes(
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    starves: SharedHostTarget | None = None,
    writes: float = 1,
    stall_s: float = STALL_S,
) -> list[float]:
    """The agent's loop stalls `stall_s` just after each of the next `writes` requests to
    `port` is written (and `starves` gets no CPU meanwhile: it waits for the stall's end);
    the list gets each stall's end (`time.perf_counter`)."""
    send = _Conn.send
    ended: list[float] = []
    left = [writes]

    def stall() -> None:
        time.sleep(stall_s)
        ended.append(time.perf_counter())
        if starves is not None:
            starves.free.set()

    def sent(conn: _Conn, request: bytes, keep: bool, waiter: Any, mark: Any) -> None:
        if not (left[0] > 0 and conn.key[1] == port):
            send(conn, request, keep, waiter, mark)
            return
        left[0] -= 1
        if starves is not None:
            starves.free.clear()
        send(conn, request, keep, waiter, mark)
        asyncio.get_running_loop().call_soon(stall)

    monkeypatch.setattr(_Conn, "send", sent)
    return ended


def _dropped(metrics: Metrics) -> float:
    labels = {"environment": "production", "result": "agent_lag_latency"}
    return metrics.registry.get_sample_value("postflight_samples_dropped_total", labels) or 0.0


async def _stalled_probe(
    target: ThreadTarget,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
    starves: SharedHostTarget | None = None,
) -> tuple[CheckResult, float]:
    """One probe on a kept-alive connection (its latency ends at the kernel's stamp), the
    agent's loop stalled just after its write, and the latencies dropped in its round."""
    async with TargetSessions() as sessions:
        probe = _probe(target.url, metrics, sessions)
        await probe.run_round(2.0, probes=1)  # connected: the next one is stamped
        ended = stall_after_writes(monkeypatch, target.port, starves)
        if isinstance(target, BigTarget):
            target.big = True
        before = _dropped(metrics)
        [result] = await probe.run_round(2.0, probes=1)
    assert ended, "the stall did not run"
    return result, _dropped(metrics) - before


async def test_a_big_answer_the_stall_held_back_loses_its_latency(
    big: BigTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 5 ms target's 8 MB answer: its last bytes land only once the agent, back from a
    0.4 s stall, reads the first. The old code kept its latency as ~0.42 s (the kernel's
    stamp of the last bytes, 'holds no stall'), the target having had it ready in
    milliseconds; now it is dropped as the agent's, its 200 still counted."""
    big.delay_s = 0.005
    metrics = Metrics()
    result, dropped = await _stalled_probe(big, metrics, monkeypatch)
    assert big.took[-1] < STALL_S / 2, big.took  # the target's time: far from the stall's
    [sample] = result.samples
    assert sample.ok and sample.status == 200
    assert sample.latency_s is None, result.details  # was ~0.42 s, kept
    assert result.details["latency_dropped"] == "agent_lag", result.details
    assert result.details[AGENT_RESUMED] > STALL_S / 2
    assert dropped == 1


async def test_an_answer_a_starved_shared_target_gave_as_the_loop_came_back_loses_its_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The latency a test kept last session (431 ms for a target answering in ~5 ms, its
    stamp 0.1 ms from its read): the target, sharing the agent's host, got no CPU while the
    agent stalled and answered 5 ms after. The old code kept ~0.41 s; now it is dropped."""
    with running(SharedHostTarget()) as target:
        target.delay_s = 0.005
        metrics = Metrics()
        result, dropped = await _stalled_probe(target, metrics, monkeypatch, starves=target)
    assert target.took[-1] < STALL_S / 2, target.took  # its own time, the wait left out
    [sample] = result.samples
    assert sample.ok and sample.status == 200
    assert sample.latency_s is None, result.details  # was ~0.41 s, kept
    assert result.details["latency_dropped"] == "agent_lag", result.details
    assert dropped == 1


async def test_a_slow_target_keeps_its_latency_past_a_stall_after_the_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The control: a target taking 0.8 s, the same 0.4 s stall just after the write. Its
    answer lands on its own time, 0.4 s after the loop came back: its 0.8 s is kept, the
    target's (a demanding user's slow deploy must still count)."""
    with running(ThreadTarget()) as target:
        target.delay_s = 0.8
        metrics = Metrics()
        result, dropped = await _stalled_probe(target, metrics, monkeypatch)
    [sample] = result.samples
    assert sample.ok and sample.latency_s is not None and sample.latency_s >= 0.8, result.details
    assert "latency_dropped" not in result.details
    assert dropped == 0


def test_what_a_stall_the_answer_landed_after_makes_of_its_latency() -> None:
    """Landed just after the stall's end (within a tenth of the latency, at least the
    heartbeat's resolution, from `SLACK_S` before it): the stall's part after the write;
    during it, long after it, or a stall over before the write: nothing."""
    # a stall from 0.1 to 0.5 s (ended at 0.5), the request written at 0.2
    assert resumed_into(0.31, 0.51, 0.2, 0.5, 0.4) == pytest.approx(0.3)
    assert resumed_into(0.3, 0.5 - SLACK_S / 2, 0.2, 0.5, 0.4) == pytest.approx(0.3)
    assert resumed_into(0.1, 0.3, 0.2, 0.5, 0.4) == 0.0  # landed in the stall: its own time
    assert resumed_into(0.8, 1.0, 0.2, 0.5, 0.4) == 0.0  # landed 0.5 s after: a slow target
    assert resumed_into(0.4, 0.6, 0.2, 0.1, 0.05) == 0.0  # over before the write
    # the gap after the stall: a tenth of the latency, at least `BEAT_S + SLACK_S`
    floor = BEAT_S + SLACK_S
    assert resumed_into(0.1, 0.5 + floor * 0.9, 0.45, 0.5, 0.4) > 0
    assert resumed_into(0.1, 0.5 + floor * 1.1, 0.45, 0.5, 0.4) == 0.0
    assert resumed_into(1.0, 1.09, 0.09, 1.0, 0.4) == pytest.approx(0.4)
    assert resumed_into(1.0, 1.11, 0.11, 1.0, 0.4) == 0.0

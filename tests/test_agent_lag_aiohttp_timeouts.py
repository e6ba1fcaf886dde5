"""A timeout through aiohttp (an https target's probe, a load check's request) on a stalled
agent: the target's when the agent saw its silence at the deadline (the whole request in
the kernel's hands the timeout before, no byte of an answer handed to aiohttp nor waiting
in the socket), the agent's (dropped, as before) when an answer was there to read late.

Why: only the lean client (plain http) looked; an https target that stopped answering
while the agent was overloaded had every timeout dropped as the agent's, and the window
ended `inconclusive` where it had to roll back. The target runs on its own loop in a
thread, serving https (`tests.thread_target`): stalling the agent's loop leaves it
answering on time, or not at all, as a service on another machine would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from checks.base import CheckResult
from checks.lag import AGENT_HELD, UNANSWERED
from checks.sessions import TargetSessions
from tests.self_signed import self_signed
from tests.test_agent_lag import _dropped
from tests.test_agent_lag_aiohttp import (
    LOAD,
    PROBE,
    _loops,
    _probe,
    _run,
    _server_context,
    _stall_connects,
    one_round,
)
from tests.thread_target import ThreadTarget, thread_target


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def target(cert: tuple[Path, Path]) -> Iterator[ThreadTarget]:
    with thread_target(_server_context(cert)) as started:
        assert started.url.startswith("https://")
        started.close = True  # every request dials anew: a connect and a handshake each
        yield started


def _stall_at_request(
    target: ThreadTarget, stall_s: float, nth: int = 1, stalled: list[float] | None = None
) -> list[int]:
    """The agent's loop stalls `stall_s` as the target gets its `nth` request (after the
    write, which the agent saw all in the kernel's hands in its next turn, long before:
    its silence counts from there); the list counts the requests. `stalled`, when given,
    gets the stall's start and end (`time.monotonic`)."""
    loop = asyncio.get_running_loop()
    count: list[int] = []

    def stall() -> None:
        begun = time.monotonic()
        time.sleep(stall_s)
        if stalled is not None:
            stalled[:] = [begun, time.monotonic()]

    def came() -> None:
        count.append(1)
        if len(count) == nth:
            loop.call_soon_threadsafe(stall)

    target.on_request = came
    return count


@pytest.mark.parametrize("stall", ["in-the-wait", "in-the-connect"])
@pytest.mark.parametrize("new_loop", _loops())
def test_an_https_target_that_never_answers_is_timed_out_whatever_the_agents_stall(
    target: ThreadTarget,
    monkeypatch: pytest.MonkeyPatch,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    stall: str,
) -> None:
    """The loop blocked 0.3 s of a 0.5 s wait, as the target has the request: the old code
    dropped the timeout as the agent's (nothing looked at the target's silence through
    aiohttp). Nothing of an answer had come the timeout after the write: the target's
    timeout, kept. A stall in the connect (0.15 s, after the TLS handshake, before the
    write) leaves the target its whole timeout from the write (the old code dropped that
    timeout too)."""
    target.delay_s = 5.0
    metrics = Metrics()
    if stall == "in-the-connect":
        _stall_connects(monkeypatch, 0.15)

    async def scenario() -> CheckResult:
        if stall == "in-the-wait":
            _stall_at_request(target, 0.3)
        async with TargetSessions() as sessions:
            text = PROBE.format(url=target.url, path="/health", timeout="500ms")
            [result] = await _probe(text, sessions, metrics).run_round(2.0, probes=1)
        return result

    result = _run(new_loop, scenario())
    assert result.details.get("dropped") is None, result.message
    [sample] = result.samples
    assert sample.error == "timeout" and not sample.ok
    assert sample.latency_s is not None and sample.latency_s >= 0.5
    assert result.details[UNANSWERED] >= 0.5  # silent that long after the write
    assert _dropped(metrics, "agent_lag") == 0


@pytest.mark.parametrize("answer_s", [0.02, 0.15], ids=["in-time", "after-the-timeout"])
@pytest.mark.parametrize("new_loop", _loops())
def test_an_https_answer_that_came_while_the_agent_stalled_is_read_not_timed_out(
    target: ThreadTarget, new_loop: Callable[[], asyncio.AbstractEventLoop], answer_s: float
) -> None:
    """The loop blocked 0.4 s, past the 100 ms timeout, as the target has the request; its
    answer came meanwhile (in time, or after the timeout), unread when the deadline was
    looked at (handed to aiohttp by then on asyncio, still in the socket on uvloop, which
    runs its timers first). No silence is vouched for, and the answer is read, as the
    lean client reads it: a 200 that counts, its latency (the stall's) the agent's. The
    old code's timer came to the request before it took the answer, now and then: a
    timeout, dropped (the answer lost). (A control too: a look that missed the answer
    would count a timeout against the target. A run the stall missed, a loaded machine's
    target thread late to the request, is no control: another is made.)"""
    target.delay_s = answer_s
    target.close = False  # its answer leaves the connection open: only the answer tells
    metrics = Metrics()

    stalled: list[float] = []

    async def scenario() -> CheckResult:
        stalled.clear()
        _stall_at_request(target, 0.4, stalled=stalled)
        async with TargetSessions() as sessions:
            text = PROBE.format(url=target.url, path="/health", timeout="100ms")
            [result] = await _probe(text, sessions, metrics).run_round(2.0, probes=1)
        return result

    runs = 0
    for _ in range(8):  # one run passes by chance on the old code: three in a row do not
        result = _run(new_loop, scenario())
        if not stalled or not stalled[0] <= target.answered_at <= stalled[1] - 0.05:
            # no control: the answer did not come while the agent stalled. A loaded machine
            # starved the target's thread (in this process), whose 20 ms answer came after
            # the stall (0.12 s of silence seen after the write: the target's timeout) or
            # not before the look (the stall's timeout, dropped as the agent's), both right
            continue
        runs += 1
        assert UNANSWERED not in result.details, result.details
        assert result.details.get("dropped") is None, result.message
        [sample] = result.samples
        assert sample.ok and sample.status == 200, result.details
        assert sample.latency_s is None or sample.latency_s >= answer_s
        if runs == 3:
            break
    assert runs == 3, "the stall never came in the wait"


@pytest.mark.parametrize("new_loop", _loops())
def test_a_load_checks_timeouts_at_a_silent_https_target_count_whatever_the_agents_stall(
    target: ThreadTarget,
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A load check (20 requests, 0.5 s timeout each) against an https target that never
    answers; the agent's loop stalls 0.3 s as the target has the third request. The old
    code dropped the timeouts of the requests out during the stall as the agent's; the
    target was silent the whole timeout after each write: all 20 are its timeouts. (At
    load 14-17 with two CPU hogs, 5 runs of 16 dropped 2-16: requests whose connect and
    handshake the starved machine had not finished by the deadline, or whose write it had
    not yet seen in the kernel's hands, so no silence to see, and the agent's stall counts.
    Such a run is the machine's: runs go on, 5 at most, until one has no drop; the old
    code dropped in every run.)"""
    target.delay_s = 5.0
    text = LOAD.format(url=target.url).replace("timeout: 2s", "timeout: 500ms")
    assert "timeout: 500ms" in text

    async def scenario(metrics: Metrics) -> tuple[CheckResult, int]:
        came = _stall_at_request(target, 0.3, nth=3)
        result = await one_round(text, metrics)
        return result, len(came)

    runs: list[object] = []
    for _ in range(5):
        metrics = Metrics()
        result, came = _run(new_loop, scenario(metrics))
        assert came >= 3, "the stall never came"
        own: dict[str, Any] = result.details.get("agent_lag", {})
        if not own.get("agent_lag", 0):
            break
        runs.append((result.message, own))
    assert own.get("agent_lag", 0) == 0, runs
    assert len(result.samples) == 20
    assert all(s.error == "timeout" for s in result.samples), result.details
    assert _dropped(metrics, "agent_lag") == 0


SMOKE = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 400ms
    probes_per_round: 1
    checks:
      - {{name: flow, type: smoke, timeout: {timeout}, verify_tls: false,
          steps: [{{name: one, path: /health}}]}}
"""


@pytest.mark.parametrize("new_loop", _loops())
def test_a_one_step_smoke_at_a_silent_https_target_times_out_whatever_the_agents_stall(
    target: ThreadTarget, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """A smoke check (its own session, for its cookies, over the shared connections) of one
    step, the one result the agent's lag is judged on: a target that never answers, the
    loop blocked 0.3 s of the 0.5 s wait. The old code's smoke session sent no trace: no
    silence seen, the timeout dropped as the agent's."""
    target.delay_s = 5.0
    metrics = Metrics()

    async def scenario() -> CheckResult:
        _stall_at_request(target, 0.3)
        async with TargetSessions() as sessions:
            text = SMOKE.format(url=target.url, timeout="500ms")
            [result] = await _probe(text, sessions, metrics).run_round(2.0, probes=1)
        return result

    result = _run(new_loop, scenario())
    assert result.details.get("dropped") is None, result.message
    [sample] = result.samples
    assert sample.error == "timeout" and not sample.ok
    assert result.details[UNANSWERED] >= 0.5
    assert _dropped(metrics, "agent_lag") == 0


def test_a_one_step_smoke_whose_https_connect_the_agent_stalled_drops_its_latency(
    target: ThreadTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same smoke step on a new connection whose TLS handshake's end waited 0.3 s for
    the stalled loop, before the request was written: its answer counts, its latency
    (the stall's) is the agent's. The old code kept a 100 ms target's 0.4 s."""
    target.delay_s = 0.1
    metrics = Metrics()
    made = _stall_connects(monkeypatch, 0.3)

    async def scenario() -> CheckResult:
        async with TargetSessions() as sessions:
            text = SMOKE.format(url=target.url, timeout="1s")
            [result] = await _probe(text, sessions, metrics).run_round(1.0, probes=1)
        return result

    result = _run(asyncio.new_event_loop, scenario())
    assert made, "no connection was made through aiohttp"
    [sample] = result.samples
    assert sample.ok and sample.latency_s is None, result.details
    assert result.details[AGENT_HELD] >= 0.25
    assert _dropped(metrics, "agent_lag_latency") == 1

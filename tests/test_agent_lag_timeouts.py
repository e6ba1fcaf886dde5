"""A probe's timeout on a stalled agent: the target's when the agent saw its silence in the
socket (no byte of an answer, the timeout after the request was written), the agent's
(dropped, as before) when an answer was there to read late.

Why: on a loaded machine the agent's loop stalls past a tenth of most 0.5 s waits, and
every timeout of a target that had stopped answering was dropped as the agent's: the
window ended "agent overloaded" where it had to roll back. A stall delays the agent's
reading, never the target's answer: an empty socket the timeout after the write is proof.

The target runs on its own loop in a thread (`tests.thread_target`): stalling the agent's
loop (`time.sleep` in a callback) leaves it answering on time, or not at all.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult, Sample
from checks.lag import AGENT_SHARE, UNANSWERED, attributed
from checks.sessions import TargetSessions
from checks.wire import LeanClient
from tests.thread_target import ThreadTarget, running, thread_target

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 2s
    probes_per_round: 1
    checks:
      - {{name: health, type: http, path: /health, timeout: {timeout}}}
"""

WARM_UPS = 5
"""Rounds at most to get a kept-alive connection before the probe measured."""


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


def _loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is the `fast` extra")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


async def _probed(
    target: ThreadTarget,
    limit: str,
    delay_s: float,
    stall_at: float | None,
    stall_s: float,
    stall: Callable[[float], object] = time.sleep,
    when_asked: bool = False,
) -> CheckResult:
    """One probe (timeout `limit`) of `target` answering after `delay_s`, the agent's loop
    blocked `stall_s` (by `stall`) from `stall_at` seconds after the probe began (None: no
    stall here, `connect_stalled` blocks it in the connect); `when_asked`, blocked as the
    target gets the request instead: a loaded machine can run the loop's 5 ms timer before
    it wrote the request (the probe timed out unsent, 1 of 40 loaded runs), or after the
    answer came and was read (no stall in the probe: 5 of 50 runs beside 2 CPU hogs)."""
    env = load_settings_text(CONFIG.format(url=target.url, timeout=limit))
    loop = asyncio.get_running_loop()
    async with TargetSessions() as sessions:
        probe = EnvironmentProbe("production", env.environments["production"], sessions, Metrics())
        if stall_at is not None:
            # kept alive: the next request goes at once, on a connection whose answers keep
            # their stamps (a new one's first answer keeps its read time); a loaded machine
            # can time the warm-up out (100 ms), which closes it: warm up again (a timeout
            # dropped as the agent's is ok, with no sample: it warmed nothing)
            for _ in range(WARM_UPS):
                [warm] = await probe.run_round(2.0, probes=1)
                if warm.ok and warm.samples and "latency_dropped" not in warm.details:
                    break
            assert warm.ok and warm.samples, f"no warm connection in {WARM_UPS}: {warm.details}"
            if not when_asked:
                loop.call_later(stall_at, stall, stall_s)
            else:  # stalled once the request is in, not at a time that may precede it
                target.on_request = lambda: loop.call_soon_threadsafe(stall, stall_s)
        target.delay_s = delay_s
        results = await probe.run_round(2.0, probes=1)
    assert len(results) == 1, results
    return results[0]


@pytest.fixture
def connect_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's loop blocked 0.15 s (three times its share of a 0.5 s wait) as a new
    connection is dialled: after the probe's deadline was set, before its request was
    written (the dial keeps the rest of the timeout: a loaded machine's own stalls)."""
    dial = LeanClient._dial

    async def stalled(self: LeanClient, conn: Any, deadline: float) -> Any:
        time.sleep(0.15)  # noqa: ASYNC251 (the point: the loop blocked, as a stall does)
        return await dial(self, conn, deadline)

    monkeypatch.setattr(LeanClient, "_dial", stalled)


@pytest.mark.parametrize("stall_at", [0.05, None], ids=["in-the-wait", "in-the-connect"])
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_target_that_never_answers_is_timed_out_whatever_the_agents_stall(
    target: ThreadTarget, kind: str, stall_at: float | None, request: pytest.FixtureRequest
) -> None:
    """The loop blocked 0.3 s of a 0.5 s wait (three times the agent's share): the old code
    dropped the timeout as the agent's. The socket held nothing the timeout after the
    request was written: the target's timeout, kept. A stall in the connect (0.15 s,
    before the write) leaves the target its whole timeout from the write, not from the
    probe's start (the old code dropped that timeout too)."""
    if stall_at is None:
        request.getfixturevalue("connect_stalled")
    loop = _loop(kind)
    try:
        result = loop.run_until_complete(_probed(target, "500ms", 5.0, stall_at, 0.3))
    finally:
        loop.close()
    assert result.details.get("dropped") is None, result.message
    [sample] = result.samples
    assert sample.error == "timeout" and not sample.ok
    assert sample.latency_s is not None and sample.latency_s >= 0.5
    assert result.details[UNANSWERED] >= 0.5  # silent that long after the write


class WrittenTarget(ThreadTarget):
    """Writes its answer itself and marks when (`perf_counter`, one clock for both
    threads): when the request came, when the answer was in the agent's socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()
        self.request_at = self.written_at = 0.0

    async def health(self, request: web.Request) -> web.StreamResponse:
        self.written.clear()  # this request's answer is not written yet
        self.request_at = time.perf_counter()
        if self.on_request is not None:
            self.on_request()
            self.on_request = None  # the measured request's only
        await asyncio.sleep(self.delay_s)
        response = web.json_response({"status": "ok"})
        await response.prepare(request)
        await response.write_eof()  # on the socket: a send() of a few bytes, not buffered
        self.written_at = time.perf_counter()
        self.written.set()
        return response


@pytest.mark.parametrize("answer_s", [0.02, 0.15], ids=["in-time", "after-the-timeout"])
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_an_answer_that_came_while_the_agent_stalled_is_read_late_as_before(
    kind: str, answer_s: float
) -> None:
    """The loop blocked 0.4 s, past the 100 ms timeout, while the answer came (in time, or
    after it): the answer was in the socket when the agent looked, so no silence is
    vouched for; the answer counts, and its latency is the target's, ended where the
    kernel stamped its arrival (not the stall's end, which the old code kept and the
    guard dropped): 20 ms in time, 150 ms after the timeout (slower than the timeout, as
    the target was). The stall begins as the target gets the request and lasts until its
    answer is written and 0.1 s more, so the answer came in it: one timed from the
    probe's start could fire before the request was written (a loaded machine's late
    loop), or end before the target's thread wrote the answer."""
    stall_ended = [0.0]
    target = WrittenTarget()

    def stall(seconds: float) -> None:
        time.sleep(seconds)
        if target.written.wait(10):  # else the premise's assert below says so
            time.sleep(max(0.0, target.written_at + 0.1 - time.perf_counter()))
        stall_ended[0] = time.perf_counter()

    with running(target):
        loop = _loop(kind)
        try:
            result = loop.run_until_complete(
                _probed(target, "100ms", answer_s, 0.005, 0.4, stall, when_asked=True)
            )
        finally:
            loop.close()
    assert target.request_at < target.written_at < stall_ended[0] - 0.05  # came in the stall
    read_late = stall_ended[0] - target.request_at  # what the old code kept
    assert UNANSWERED not in result.details
    [sample] = result.samples
    assert sample.ok and sample.status == 200
    assert "latency_dropped" not in result.details, result.details
    assert sample.latency_s is not None, sample
    assert answer_s <= sample.latency_s < read_late - 0.05, (sample, read_late)


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_stalled_answer_keeps_its_stamp_though_the_clocks_read_was_preempted(
    target: ThreadTarget, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer's stamp is put on the agent's clock by reading the system clock between
    two reads of the monotonic one; on a loaded machine the thread can lose the CPU (or
    the GIL) between them for longer than the answer took (30 ms here, a 20 ms target).
    That bracket put the arrival before the request was written, the stamp was refused,
    and the stalled loop's read time (0.4 s) was dropped as the agent's (CI, uvloop: "{...
    'latency_ms': 405.662, 'latency_dropped': 'agent_lag'}"). A wide bracket is read
    again: the answer keeps its 20 ms. The loop stalls as the target gets the request, so
    the answer comes in the stall (a stall timed from the probe's start could come after
    the answer was read, beside CPU hogs: its stamp read unpreempted, the test void)."""
    import checks.stamps as stamps

    real_time, preempt = time.time, [False]

    def preempted() -> float:
        if preempt[0]:
            preempt[0] = False
            time.sleep(0.03)  # the thread lost the CPU between its reads of the clocks
        return real_time()

    monkeypatch.setattr(
        stamps, "time", types.SimpleNamespace(perf_counter=time.perf_counter, time=preempted)
    )

    def stall(seconds: float) -> None:
        time.sleep(seconds)
        preempt[0] = True  # the next read of the clocks is the answer's stamp's

    loop = _loop(kind)
    try:
        result = loop.run_until_complete(
            _probed(target, "100ms", 0.02, 0.005, 0.4, stall, when_asked=True)
        )
    finally:
        loop.close()
    assert not preempt[0], "the answer's stamp was never read"
    [sample] = result.samples
    assert sample.ok and "latency_dropped" not in result.details, result.details
    assert sample.latency_s is not None and 0.02 <= sample.latency_s < 0.4, sample


def test_only_a_timeout_the_agent_saw_unanswered_survives_its_stall() -> None:
    """`attributed`: the same stalled timeout is dropped without the socket's word, kept
    with it; the word vouches for a timeout only."""
    stalled = 0.3
    assert stalled > AGENT_SHARE * 0.5
    timeout = Sample("health", ok=False, latency_s=0.5, error="timeout")
    plain = CheckResult("health", "http", False, (timeout,), "no response", 0.5, {})
    seen = CheckResult("health", "http", False, (timeout,), "no response", 0.5, {UNANSWERED: 0.5})
    assert attributed(plain, stalled)[1] == "agent_lag"
    assert attributed(seen, stalled) == (seen, None)
    slow = Sample("health", ok=False, latency_s=0.5, status=200, error="latency")
    latency = CheckResult("health", "http", False, (slow,), "slow", 0.5, {UNANSWERED: 0.5})
    assert attributed(latency, stalled)[1] == "agent_lag"


def test_a_round_mostly_dropped_keeps_the_latency_of_a_timeout_the_agent_saw_unanswered() -> None:
    """A round where most probes were caught in a stall loses the latencies the rest kept
    (a late read each); a timeout the socket proved is no read: it keeps its latency, or
    a target that stopped answering on a busy agent passed its latency rule on the good
    rounds alone (seen under load 14: '1 of 1 rule passed')."""
    env = load_settings_text(CONFIG.format(url="http://127.0.0.1:9", timeout="500ms"))
    probe = EnvironmentProbe("production", env.environments["production"], None, Metrics())  # type: ignore[arg-type]
    dropped = CheckResult("health", "http", True, (), "dropped", 0.5, {"dropped": "agent_lag"})
    timeout = Sample("health", ok=False, latency_s=0.5, error="timeout")
    seen = CheckResult("health", "http", False, (timeout,), "no response", 0.5, {UNANSWERED: 0.5})
    out = probe._stalled_round([dropped, dropped, seen])
    assert out[2].samples[0].latency_s == 0.5 and "latency_dropped" not in out[2].details

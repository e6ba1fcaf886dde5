"""An overloaded agent's probes: what its own stalled event loop caused is dropped (counted
in `postflight_samples_dropped_total`), never counted against the target; what the target
caused while the agent kept up still counts.

The target runs on its own event loop in a thread (a real aiohttp server), so stalling the
agent's loop (`time.sleep` in a callback, what a saturated agent does to its probes)
leaves the target answering on time.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from agent.analysis.types import RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.overload import DropTally
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult, Sample
from checks.lag import AGENT_SHARE, BEAT_S, LoopLag, attributed
from checks.sessions import TargetSessions

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 400ms
    probes_per_round: {probes}
    checks:
      - {{name: health, type: http, path: {path}, timeout: {timeout}}}
"""


class ThreadTarget:
    """An aiohttp target on its own loop in a thread: `/health` answers after `delay_s`."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self.answered = 0
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def health(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        self.answered += 1
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/health", self.health)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def thread_target() -> Iterator[ThreadTarget]:
    target = ThreadTarget()
    target.thread.start()
    assert target.started.wait(10)
    yield target
    target.stop()


def _probe(
    url: str, sessions: TargetSessions, metrics: Metrics, *, probes: int, timeout: str = "1s"
) -> EnvironmentProbe:
    text = CONFIG.format(url=url, probes=probes, path="/health", timeout=timeout)
    env = load_settings_text(text).environments["production"]
    return EnvironmentProbe("production", env, sessions, metrics)


def _dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "postflight_samples_dropped_total", {"environment": "production", "reason": reason}
    )
    return value or 0.0


async def test_probes_a_stalled_agent_could_not_read_are_dropped_not_errors(
    thread_target: ThreadTarget,
) -> None:
    """The daemon's overload, in small: probes queued for the pool's one connection while
    the agent's loop is stalled past their limit. The old code cut each as the target's
    timeout ("check did not finish within …s"); the target answered every request."""
    thread_target.delay_s = 0.1  # a healthy target that takes 100 ms
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    async with TargetSessions(limit_per_target=1) as sessions:
        probe = _probe(thread_target.url, sessions, metrics, probes=5)
        warm = await probe.run_round(0.4, probes=1)  # a kept-alive connection, no stall
        assert [s.ok for r in warm for s in r.samples] == [True]
        loop.call_later(0.15, time.sleep, 1.6)  # the agent stalls mid-round
        results = await probe.run_round(0.4, probes=5)
    samples = [s for r in results for s in r.samples]
    assert not [s for s in samples if not s.ok], [r.message for r in results]
    dropped = [r for r in results if r.details.get("dropped") == "agent_lag"]
    assert dropped and all("agent overloaded" in r.message for r in dropped)
    assert _dropped(metrics, "agent_lag") == len(dropped)
    # no latency the stall inflated is kept: the one in flight lost its latency, not its answer
    assert all(s.latency_s is None or s.latency_s < 1.0 for s in samples)
    # nothing of the dropped runs in the target's metrics
    runs = metrics.registry.get_sample_value(
        "postflight_check_runs_total",
        {"environment": "production", "check": "health", "result": "error"},
    )
    assert not runs


async def test_a_slow_target_still_times_out_when_the_agent_keeps_up(
    thread_target: ThreadTarget,
) -> None:
    """The control: the same round with the loop free and a target slower than the round:
    every probe is the target's timeout, and nothing is dropped."""
    thread_target.delay_s = 2.0
    metrics = Metrics()
    async with TargetSessions() as sessions:
        probe = _probe(thread_target.url, sessions, metrics, probes=3)
        results = await probe.run_round(0.4, probes=3)
    assert [s.error for r in results for s in r.samples] == ["timeout"] * 3
    assert _dropped(metrics, "agent_lag") == 0


async def test_an_answer_read_late_keeps_its_status_and_loses_its_latency(
    thread_target: ThreadTarget,
) -> None:
    """A stall while a request is in flight: the answer counts (ok), the latency the stall
    inflated (~0.3 s for a 20 ms answer) does not."""
    thread_target.delay_s = 0.02
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    async with TargetSessions() as sessions:
        probe = _probe(thread_target.url, sessions, metrics, probes=1)
        await probe.run_round(0.4, probes=1)  # connected: the next request goes at once
        loop.call_later(0.005, time.sleep, 0.3)
        results = await probe.run_round(0.4, probes=1)
    [sample] = [s for r in results for s in r.samples]
    assert sample.ok and sample.latency_s is None
    assert results[0].details["latency_dropped"] == "agent_lag"
    assert _dropped(metrics, "agent_lag_latency") == 1


async def test_a_slow_answer_keeps_its_latency_when_the_agent_keeps_up(
    thread_target: ThreadTarget,
) -> None:
    thread_target.delay_s = 0.3
    metrics = Metrics()
    async with TargetSessions() as sessions:
        probe = _probe(thread_target.url, sessions, metrics, probes=1)
        results = await probe.run_round(0.4, probes=1)
    [sample] = [s for r in results for s in r.samples]
    assert sample.ok and sample.latency_s is not None and sample.latency_s >= 0.3
    assert _dropped(metrics, "agent_lag_latency") == 0


async def test_loop_lag_counts_a_stall_whichever_reads_it_first() -> None:
    """A read right after a stall (before the heartbeat runs) already counts it; a loop
    that keeps up counts (almost) nothing."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    start = lag.total()
    await asyncio.sleep(0.1)
    assert lag.total() - start < 0.01
    before = lag.total()
    await asyncio.sleep(BEAT_S * 2)
    time.sleep(0.2)  # noqa: ASYNC251 - the stall under test: a callback that holds the loop
    stalled = lag.total() - before  # the heartbeat has not run since
    assert 0.15 < stalled < 0.3
    await asyncio.sleep(BEAT_S * 3)
    assert 0.15 < lag.total() - before < 0.3  # counted once, after the heartbeat ran too


def _result(sample: Sample, duration: float, message: str = "m") -> CheckResult:
    return CheckResult("c", "http", sample.ok, (sample,), message, duration)


@pytest.mark.parametrize("error", ["timeout", "latency"])
def test_a_timed_failure_is_dropped_only_past_the_agents_share(error: str) -> None:
    failed = _result(Sample("c", ok=False, error=error, latency_s=None), 2.0)
    kept, dropped = attributed(failed, AGENT_SHARE * 2.0 * 0.99)
    assert kept is failed and dropped is None
    out, dropped = attributed(failed, AGENT_SHARE * 2.0 * 1.01)
    assert dropped == "agent_lag" and out.samples == () and out.ok
    assert out.details["dropped"] == "agent_lag" and out.details["target"] == "deploy"


def test_an_answer_keeps_its_status_whatever_the_stall() -> None:
    """A 503 is the target's however late it was read: it stays an error; its latency goes."""
    answer = _result(Sample("c", ok=False, error="status", status=503, latency_s=0.05), 0.05)
    out, dropped = attributed(answer, 1.0)
    assert dropped == "agent_lag_latency"
    assert out.samples[0].error == "status" and out.samples[0].latency_s is None
    ok = _result(Sample("c", ok=True, status=200, latency_s=0.5), 0.5)
    assert attributed(ok, 0.049)[1] is None  # under a tenth of its latency: kept


def _verdict(decision: str, outcome: str) -> tuple[Glance, Verdict]:
    rule = RuleVerdict("probe-errors", "checks", "error_rate", outcome, 0.3, 0.0, "max 0.05", "d")  # type: ignore[arg-type]
    glance = Glance(decision, (RuleGlance("probe-errors", outcome, 0.3, {"streak": 2}),))  # type: ignore[arg-type]
    return glance, Verdict(decision, "probe-errors: error_rate 0.3 > max 0.05", (rule,))  # type: ignore[arg-type]


def _tally(runs: int, dropped: int) -> DropTally:
    tally = DropTally()
    tally.note_summary({"checks": {"health": {"runs": runs}}, "dropped": {"agent_lag": dropped}})
    return tally


def test_an_overloaded_window_never_fails_on_its_probes() -> None:
    glance, verdict = _verdict("fail", "fail")
    held_glance, held = _tally(10, 6).guard(glance, verdict, {"probe-errors": "checks"})
    assert held is not None and held.decision == "inconclusive"
    assert held.reason.startswith("agent overloaded: 6 samples dropped")
    assert held.rules[0].outcome == "inconclusive" and "streak" not in held.rules[0].evidence
    assert held_glance.decision == "inconclusive"
    assert held_glance.rules[0].outcome == "inconclusive"
    # a window that kept most of its probes is judged on them
    assert _tally(10, 5).guard(glance, verdict, {"probe-errors": "checks"}) == (glance, verdict)
    # a provider's failing rule is the service's own evidence: the fail stands
    assert _tally(10, 9).guard(glance, verdict, {"probe-errors": "prometheus"}) == (
        glance,
        verdict,
    )
    # nor does a pass stand on probes the agent could not read
    glance, verdict = _verdict("pass", "pass")
    assert _tally(10, 9).guard(glance, verdict, {"probe-errors": "checks"})[0].decision == (
        "inconclusive"
    )

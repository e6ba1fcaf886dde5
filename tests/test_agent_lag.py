"""An overloaded agent's probes: what its own stalled event loop caused is dropped (counted
in `postflight_samples_dropped_total`), never counted against the target; what the target
caused while the agent kept up still counts.

The target runs on its own event loop in a thread (a real aiohttp server), so stalling the
agent's loop (`time.sleep` in a callback, what a saturated agent does to its probes)
leaves the target answering on time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from agent.metrics import Metrics
from agent.records import RoundRecord
from agent.settings_file import load_settings_text
from agent.web.view import round_event
from agent.windows.overload import DropTally
from agent.windows.probing import EnvironmentProbe
from checks.base import CheckResult, Sample
from checks.lag import (
    AGENT_DELAY,
    AGENT_HELD,
    AGENT_KERNEL_DELAY,
    AGENT_SHARE,
    BEAT_S,
    SLACK_S,
    LoopLag,
    attributed,
    unread_answer_explains,
    verdict_on,
)
from checks.sessions import TargetSessions
from checks.wire import _Conn
from tests.thread_target import ThreadTarget, thread_target
from tests.web.views import ID, NOW, window

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


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


def _probe(
    url: str, sessions: TargetSessions, metrics: Metrics, *, probes: int, timeout: str = "1s"
) -> EnvironmentProbe:
    text = CONFIG.format(url=url, probes=probes, path="/health", timeout=timeout)
    env = load_settings_text(text).environments["production"]
    return EnvironmentProbe("production", env, sessions, metrics)


def _dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "postflight_samples_dropped_total", {"environment": "production", "result": reason}
    )
    return value or 0.0


async def test_probes_a_stalled_agent_could_not_read_are_dropped_not_errors(
    target: ThreadTarget,
) -> None:
    """The daemon's overload, in small: probes queued for the pool's one connection while
    the agent's loop is stalled past their limit. The old code cut each as the target's
    timeout ("check did not finish within …s"); the target answered every request."""
    target.delay_s = 0.1  # a healthy target that takes 100 ms
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    async with TargetSessions(limit_per_target=1) as sessions:
        probe = _probe(target.url, sessions, metrics, probes=5)
        warm = await probe.run_round(0.4, probes=1)  # a kept-alive connection, no stall
        assert [s.ok for r in warm for s in r.samples] == [True]
        before = _dropped(metrics, "agent_lag")
        loop.call_later(0.15, time.sleep, 1.6)  # the agent stalls mid-round
        results = await probe.run_round(0.4, probes=5)
    samples = [s for r in results for s in r.samples]
    assert not [s for s in samples if not s.ok], [r.message for r in results]
    dropped = [r for r in results if r.details.get("dropped") == "agent_lag"]
    assert dropped and all("agent overloaded" in r.message for r in dropped)
    assert _dropped(metrics, "agent_lag") - before == len(dropped)
    # no latency the stall inflated is kept: the one in flight lost its latency, not its answer
    assert all(s.latency_s is None or s.latency_s < 1.0 for s in samples)
    # nothing of the dropped runs in the target's metrics
    runs = metrics.registry.get_sample_value(
        "postflight_check_runs_total",
        {"environment": "production", "check": "health", "result": "error"},
    )
    assert not runs


async def test_a_slow_target_still_times_out_when_the_agent_keeps_up(
    target: ThreadTarget,
) -> None:
    """The control: probes with the loop free and a target slower than the round: each is
    the target's timeout, and not dropped. (Seconds-long waits: a loaded machine's
    scheduler stalls the agent for real, tens of milliseconds at a time, and now and then
    for more than a tenth of a probe's wait: such a probe, dropped as the agent's with the
    stall on record, is no control; rounds go on until three probes were not dropped. A
    full run under load had a probe of each of 3 rounds in a row dropped so.)"""
    target.delay_s = 5.0
    metrics = Metrics()
    kept: list[CheckResult] = []
    async with TargetSessions() as sessions:
        probe = _probe(target.url, sessions, metrics, probes=3, timeout="1s")
        for _ in range(6):
            before = _dropped(metrics, "agent_lag")
            results = await probe.run_round(2.0, probes=3)
            dropped = [r for r in results if r.details.get("dropped") == "agent_lag"]
            assert _dropped(metrics, "agent_lag") - before == len(dropped)
            for result in dropped:
                assert not result.samples
                assert result.details["stalled_s"] > AGENT_SHARE * result.duration_s
            kept += [r for r in results if r.details.get("dropped") is None]
            if len(kept) >= 3:
                break
    assert len(kept) >= 3, "6 rounds in a row had a probe dropped as the agent's"
    assert [s.error for r in kept for s in r.samples] == ["timeout"] * len(kept)


async def test_an_answer_read_late_keeps_its_status_and_its_latency_at_its_arrival(
    target: ThreadTarget,
) -> None:
    """A stall while a request is in flight: the answer counts (ok), and its latency is the
    target's 20 ms, ended where the kernel stamped the answer's arrival on the kept-alive
    connection, not the ~0.3 s the stall made of it when read (which the old code had to
    drop); nothing is dropped."""
    target.delay_s = 0.02
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    stall_ended = 0.0

    def stall() -> None:
        nonlocal stall_ended
        time.sleep(0.3)
        stall_ended = time.monotonic()

    async with TargetSessions() as sessions:
        probe = _probe(target.url, sessions, metrics, probes=1)
        await probe.run_round(0.4, probes=1)  # connected: the next request goes at once
        # the answer must come DURING the stall; a host so loaded that the target's thread
        # got no CPU until the stall ended stages the other case (an answer the stall held
        # back, dropped by design: tests/test_agent_lag_resumed.py), so that trial is redone
        for _ in range(5):
            before = _dropped(metrics, "agent_lag_latency")
            loop.call_later(0.005, stall)
            results = await probe.run_round(0.4, probes=1)
            if target.answered_at < stall_ended:
                break
        assert target.answered_at < stall_ended, "the target never answered within a stall"
    [sample] = [s for r in results for s in r.samples]
    assert sample.ok and sample.latency_s is not None
    assert 0.02 <= sample.latency_s < 0.3, sample  # the target's, not the stall's
    assert "latency_dropped" not in results[0].details
    assert results[0].details[AGENT_KERNEL_DELAY] < 0.001  # the clocks' reading only
    assert _dropped(metrics, "agent_lag_latency") - before == 0


async def test_an_answer_read_late_on_a_new_connection_loses_its_latency(
    target: ThreadTarget,
) -> None:
    """A new connection's first answer, whose connect no stamp sees, keeps the read time:
    read late by a stall, its latency (the stall's) is dropped, its answer counts. (The
    stall as the target has the request: one 5 ms after the round's start came before
    the write under load, the next test's case.)"""
    target.delay_s = 0.02
    target.close = True  # every probe dials anew
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    target.on_request = lambda: loop.call_soon_threadsafe(time.sleep, 0.3)
    async with TargetSessions() as sessions:
        probe = _probe(target.url, sessions, metrics, probes=1)
        # a round with room past the stall: one of 0.4 s had a connect on a machine at
        # load 11 stalled past its end (a timeout, dropped as the agent's: no answer)
        results = await probe.run_round(1.0, probes=1)
    [sample] = [s for r in results for s in r.samples]
    assert sample.ok and sample.latency_s is None, results[0].details
    assert results[0].details["latency_dropped"] == "agent_lag"
    assert _dropped(metrics, "agent_lag_latency") == 1


async def test_a_stall_while_a_new_connection_connects_drops_its_latency(
    target: ThreadTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stall after the connect and before the request is written (what a loaded machine
    did to the test above: the stall came before the write, not in the wait): the answer
    is read on time (the heartbeat kept time again long before), but its latency counts
    the stall, so it is dropped. The old code kept a 100 ms target's 0.4 s."""
    target.delay_s = 0.1
    target.close = True  # every probe dials anew
    metrics = Metrics()
    made = _Conn.connection_made

    def stalled(conn: _Conn, transport: asyncio.BaseTransport) -> None:
        made(conn, transport)
        time.sleep(0.3)  # the agent's loop, between the connect and the write

    monkeypatch.setattr(_Conn, "connection_made", stalled)
    async with TargetSessions() as sessions:
        probe = _probe(target.url, sessions, metrics, probes=1)
        results = await probe.run_round(1.0, probes=1)
    [sample] = [s for r in results for s in r.samples]
    assert sample.ok and sample.latency_s is None, results[0].details
    assert results[0].details["latency_dropped"] == "agent_lag"
    assert results[0].details[AGENT_HELD] >= 0.25
    assert _dropped(metrics, "agent_lag_latency") == 1


async def test_a_slow_answer_keeps_its_latency_when_the_agent_keeps_up(
    target: ThreadTarget,
) -> None:
    """The control: with the loop free, a 1 s answer keeps its 1 s. (A loaded machine's
    scheduler stalls the agent for real: a round whose latency was dropped with such a
    stall on record, over a tenth of it, is no control; rounds go on until one kept it.)"""
    target.delay_s = 1.0
    metrics = Metrics()
    stalled: list[object] = []
    async with TargetSessions() as sessions:
        probe = _probe(target.url, sessions, metrics, probes=1, timeout="2s")
        for _ in range(3):
            [result] = await probe.run_round(2.0, probes=1)
            if "latency_dropped" not in result.details:
                break
            assert result.details["stalled_s"] > AGENT_SHARE * 1.0, result.details
            stalled.append(result.details["stalled_s"])
    [sample] = result.samples
    assert sample.ok and sample.latency_s is not None and sample.latency_s >= 1.0, stalled
    assert _dropped(metrics, "agent_lag_latency") == len(stalled)


async def test_loop_lag_counts_a_stall_whichever_reads_it_first() -> None:
    """A read right after a stall (before the heartbeat runs) already counts it, and the
    heartbeat's own count after it does not count it again."""
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    before = lag.total()
    await asyncio.sleep(BEAT_S * 2)
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test: a callback that holds the loop
    stalled = lag.total() - before  # the heartbeat has not run since
    assert stalled >= 0.3 - BEAT_S - SLACK_S
    assert lag.unattended() >= stalled  # an answer read now waited that long for the agent
    await asyncio.sleep(BEAT_S * 3)
    assert stalled <= lag.total() - before < stalled + 0.2  # not twice


def test_an_answer_read_just_after_a_stall_is_still_the_agents_to_have_read_late() -> None:
    """After a stall the loop works off what fell due meanwhile (a load check's requests
    due during it, all at once), so an answer that came during the stall may be read
    after the first heartbeat on time: until a second, the loop is not yet taken to keep
    time (`unattended` still spans the stall). Before, that one heartbeat reset it, and a
    load check kept a stall-inflated latency (263 ms against 200) about one run in 50.
    On a clock of its own: each heartbeat is run when the test says."""

    class Clock:
        now = 0.0
        due: tuple[float, Callable[[], None]]
        soon: list[tuple[Callable[[int], None], int]]

        def time(self) -> float:
            return self.now

        def call_at(self, when: float, callback: Callable[[], None]) -> None:
            self.due = (when, callback)

    clock = Clock()
    lag = LoopLag(clock, io_first=True)  # type: ignore[arg-type]

    def beat_at(t: float) -> None:
        clock.now = t
        clock.due[1]()

    lag.total()  # beating: due at 0.01
    beat_at(0.01)  # on time
    beat_at(0.30)  # a 0.28 s stall
    beat_at(0.31)  # the first beat on time after it
    clock.now = 0.316  # an answer read now may have waited out the stall
    assert lag.unattended() >= 0.28
    beat_at(0.32)  # the second: the loop keeps time again
    clock.now = 0.321
    assert lag.unattended() == 0.0


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


@pytest.mark.parametrize(
    ("stalled", "unattended", "probe", "provider"),
    [
        (0.0, 0.0, None, False),  # the agent kept up: both the other side's
        (0.05, 0.05, None, False),  # a stall within a tenth of the wait: both the other side's
        (0.3, 0.3, "agent_lag", True),  # a stall under way at the deadline: both the agent's
        (0.3, 0.0, "agent_lag", False),  # one the agent got over before the deadline: differ
        (0.3, 0.05, "agent_lag", False),
    ],
)
def test_a_probes_and_a_providers_timeout_agree_but_on_a_stall_the_agent_got_over(
    stalled: float, unattended: float, probe: str | None, provider: bool
) -> None:
    """The two stall rules side by side, over a 1 s wait that ended without an answer. A
    stall the agent got over before the deadline drops a probe's timeout (charged to the
    target it could roll back a good deploy) but leaves a provider's with the provider (an
    alert, never a rollback; the agent's, a hung provider on a starved machine was never
    told): `checks.lag.unread_answer_explains` says why. Anywhere else they agree."""
    assert verdict_on(False, "timeout", None, 1.0, stalled, unattended) == probe
    assert unread_answer_explains(1.0, stalled, unattended) is provider


def test_an_answer_keeps_its_status_whatever_the_stall() -> None:
    """A 503 is the target's however late it was read: it stays an error; its latency goes."""
    answer = _result(Sample("c", ok=False, error="status", status=503, latency_s=0.05), 0.05)
    out, dropped = attributed(answer, 1.0, 0.04)
    assert dropped == "agent_lag_latency"
    assert out.samples[0].error == "status" and out.samples[0].latency_s is None
    ok = _result(Sample("c", ok=True, status=200, latency_s=0.5), 0.5)
    assert attributed(ok, 0.2, 0.049)[1] is None  # read under a tenth of its latency late
    # a stall earlier in the wait, over by the time the answer came, inflated nothing
    assert attributed(ok, 0.2, 0.0)[1] is None
    assert attributed(ok, 0.2, 0.06)[1] == "agent_lag_latency"


def _verdict(decision: str, outcome: str) -> tuple[Glance, Verdict]:
    rule = RuleVerdict("probe-errors", "checks", "error_rate", outcome, 0.3, 0.0, "max 0.05", "d")  # type: ignore[arg-type]
    glance = Glance(decision, (RuleGlance("probe-errors", outcome, 0.3, {"streak": 2}),))  # type: ignore[arg-type]
    return glance, Verdict(decision, "probe-errors: error_rate 0.3 > max 0.05", (rule,))  # type: ignore[arg-type]


def _tally(runs: int, dropped: int, latencies: int = 0) -> DropTally:
    tally = DropTally()
    tally.note_summary(
        {
            "checks": {"health": {"runs": runs}},
            "dropped": {"agent_lag": dropped, "agent_lag_latency": latencies},
        }
    )
    return tally


ERRORS = [Rule("probe-errors", "checks", "error_rate", max=0.05)]
LATENCY = [Rule("probe-errors", "checks", "latency_p95", max=0.3)]
PROVIDER = [Rule("probe-errors", "prometheus", "error_rate", max=0.05)]


def test_an_overloaded_window_never_fails_on_its_probes() -> None:
    glance, verdict = _verdict("fail", "fail")
    held_glance, held = _tally(10, 6).guard(glance, verdict, ERRORS)
    assert held is not None and held.decision == "inconclusive"
    assert held.reason.startswith("agent overloaded: 6 of 10 probes dropped")
    assert held.rules[0].outcome == "inconclusive" and "streak" not in held.rules[0].evidence
    assert held_glance.decision == "inconclusive"
    assert held_glance.rules[0].outcome == "inconclusive"
    # a window that kept most of its probes is judged on them
    assert _tally(10, 5).guard(glance, verdict, ERRORS) == (glance, verdict)
    # a provider's failing rule is the service's own evidence: the fail stands
    assert _tally(10, 9).guard(glance, verdict, PROVIDER) == (glance, verdict)
    # answers whose latency was dropped still count for an error rule (a 503 is a 503) ...
    assert _tally(10, 0, latencies=9).guard(glance, verdict, ERRORS) == (glance, verdict)
    # ... not for a latency rule
    assert _tally(10, 0, latencies=9).guard(glance, verdict, LATENCY)[0].decision == (
        "inconclusive"
    )
    # while the window runs, its words say what was dropped so far
    glance, verdict = _verdict("continue", "pass")
    _, said = _tally(10, 2).guard(glance, verdict, ERRORS)
    assert said is not None and said.decision == "continue"
    assert said.reason.endswith("(2 samples dropped: agent overloaded, so far)")
    assert _tally(10, 0).guard(glance, verdict, ERRORS) == (glance, verdict)
    # nor does a pass stand on probes the agent could not read
    glance, verdict = _verdict("pass", "pass")
    assert _tally(10, 9).guard(glance, verdict, ERRORS)[0].decision == "inconclusive"


def test_a_rounds_drops_are_in_its_summary_and_its_live_event() -> None:
    """On-call sees the agent, not the target, was the problem: the round's stored summary
    and its `round` event say how many probes were dropped and why."""
    ok = _result(Sample("c", ok=True, status=200, latency_s=0.01), 0.01)
    cut = _result(Sample("c", ok=False, error="timeout"), 1.0)
    late = _result(Sample("c", ok=True, status=200, latency_s=0.4), 0.4)
    results = [ok, attributed(cut, 0.9)[0], attributed(late, 0.39, 0.39)[0]]
    tally = DropTally()
    tally.note(results, logging.LoggerAdapter(logging.getLogger("test")))
    summary = tally.summary()
    assert summary["dropped"] == {
        "agent_lag": 1,
        "agent_lag_latency": 1,
        "runs": 3,
        "by_check": {"c": [1, 1, 3]},
        "text": "2 samples dropped: agent overloaded",
    }
    record = RoundRecord(ID, 1, NOW, {"decision": "continue", **summary})
    assert round_event(record, window(), NOW)["summary"]["dropped"] == summary["dropped"]
    assert tally.lost(LATENCY[0]) and not tally.lost(ERRORS[0])  # 2 of 3, 1 of 3
    tally.note([ok], logging.LoggerAdapter(logging.getLogger("test")))
    assert "dropped" not in tally.summary() and not tally.lost(LATENCY[0])  # 2 of 4


def test_drops_are_logged_at_the_first_round_with_any_and_not_again_after_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once per window: a watch resumed after a restart (or by another replica) whose
    stored rounds already had drops does not log them again (it did, once per watch)."""
    log = logging.LoggerAdapter(logging.getLogger("test.overload"))
    ok = CheckResult("health", "http", True, (Sample("health", ok=True, latency_s=0.03),))
    cut = CheckResult("health", "http", False, (), details={"dropped": "agent_lag"})
    caplog.set_level(logging.WARNING, logger="test.overload")
    tally, summaries = DropTally(), []
    for results in ([ok, ok], [ok, cut], [cut, cut]):
        tally.note(results, log)
        summaries.append({"checks": {}, **tally.summary()})
    assert [r.getMessage()[:24] for r in caplog.records] == ["1 of 2 probes this round"]
    resumed = DropTally()
    for summary in summaries:
        resumed.note_summary(summary)
    resumed.note([cut, ok], log)
    assert len(caplog.records) == 1, caplog.text
    clean = DropTally()  # a resumed window without drops so far logs its first
    clean.note_summary(summaries[0])
    clean.note([cut, ok], log)
    assert len(caplog.records) == 2, caplog.text


def test_a_rule_is_lost_on_the_drops_of_the_checks_it_reads() -> None:
    """A busy agent's drops are counted by check: a load run's 200 requests losing 150
    latencies leave a health check's 10 latencies judged (before, 150 of 210 probes a
    window-wide majority held every latency rule), and a health check losing all 10
    probes is lost though the load run kept its 200 (before, 10 of 210: judged on none).
    A restart resumes the same counts from the stored round."""
    log = logging.LoggerAdapter(logging.getLogger("test"))
    health_ok = [
        CheckResult("health", "http", True, (Sample("health", ok=True, latency_s=0.03),))
        for _ in range(10)
    ]
    health_cut = [
        CheckResult("health", "http", False, (), details={"dropped": "agent_lag"})
        for _ in range(10)
    ]

    def load(latencies_dropped: int) -> CheckResult:
        samples = tuple(Sample("feed", ok=True, latency_s=0.08) for _ in range(200))
        own = {"agent_lag": 0, "agent_lag_latency": latencies_dropped}
        return CheckResult("feed", "load", True, samples, details={"agent_lag": own})

    health_p95 = Rule("health-latency", "checks", "latency_p95", max=0.3, check="health")
    health_errors = Rule("health-errors", "checks", "error_rate", max=0.05, check="health")
    feed_p95 = Rule("feed-p95", "checks", "latency_p95", max_increase=0.5, check="feed")
    every_p95 = Rule("all-p95", "checks", "latency_p95", max=0.3)
    for results, lost in (
        ([*health_ok, load(150)], {"feed-p95", "all-p95"}),
        ([*health_cut, load(0)], {"health-latency", "health-errors"}),
    ):
        tally, resumed = DropTally(), DropTally()
        tally.note(results, log)
        resumed.note_summary({"checks": {}, **tally.summary()})
        for t in (tally, resumed):
            rules = (health_p95, health_errors, feed_p95, every_p95)
            assert {r.name for r in rules if t.lost(r)} == lost
    # nine clean rounds, then one whose load run lost 150 latencies: not most of the
    # window's 2,000 requests, live or resumed (a clean round's stored `checks` count a
    # load run as one run: resumed from them alone, 150 of 209 held the rule)
    tally, resumed = DropTally(), DropTally()
    for k in range(10):
        tally.note([*health_ok, load(150 if k == 9 else 0)], log)
        resumed.note_summary(
            {"checks": {"health": {"runs": 10}, "feed": {"runs": 1}}, **tally.summary()}
        )
    assert not tally.lost(feed_p95) and not resumed.lost(feed_p95)
    assert resumed.by_check == tally.by_check


LOAD = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    interval: 2s
    checks:
      - {{name: feed, type: load, path: /health, rate: 50/s, duration: 1s, warmup: 0s,
          timeout: 400ms}}
"""


def _loops() -> list[Any]:
    import uvloop  # a dev dependency: the Docker image's loop

    return [
        pytest.param(asyncio.new_event_loop, id="asyncio"),
        pytest.param(uvloop.new_event_loop, id="uvloop"),
    ]


@pytest.mark.parametrize("new_loop", _loops())
def test_a_load_checks_requests_the_stalled_agent_delayed_are_not_the_targets(
    target: ThreadTarget, new_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """A load check times its own requests: the agent's loop stalls 0.6 s mid-run while
    a 300 ms target answers every request on time. Old code: the requests due during the
    stall carried it in their latency (up to 0.9 s), and on uvloop (timers before reads)
    those in flight timed out as the target's errors. Now each is dropped as the agent's,
    counted like probes' drops (`postflight_samples_dropped_total`), answers still count."""
    target.delay_s = 0.3
    text = LOAD.format(url=target.url)
    env = load_settings_text(text).environments["production"]

    async def scenario(metrics: Metrics) -> tuple[CheckResult, float | None]:
        """The run's result, and how far into it the stall began (None: it did not)."""
        loop = asyncio.get_running_loop()
        async with TargetSessions() as sessions:
            probe = EnvironmentProbe("production", env, sessions, metrics)
            requests = 0
            stalled_at: list[float] = []

            def stall() -> None:
                stalled_at.append(loop.time())
                time.sleep(0.6)

            def stall_at_the_fifth() -> None:
                nonlocal requests
                requests += 1
                if requests == 5:  # mid-run whenever the run got going
                    loop.call_soon_threadsafe(stall)

            target.on_request = stall_at_the_fifth  # the agent stalls mid-run
            start = loop.time()
            try:
                [result] = await probe.run_round(2.0, probes=1)
            finally:
                target.on_request = None
                await probe.close_checks()
            return result, (stalled_at[0] - start if stalled_at else None)

    # the stall must come mid-run (0.6 s of the 1 s run): on a clock from the call, a busy
    # machine once had it over before the run's requests went out, and the run had nothing
    # to drop; a run the stall missed is no test of the rule, and another is made
    for _ in range(3):
        metrics = Metrics()
        with asyncio.Runner(loop_factory=new_loop) as runner:
            result, stalled_at = runner.run(scenario(metrics))
        if stalled_at is not None and stalled_at < 0.4:
            break
    else:
        raise AssertionError(f"the stall never came mid-run (last at {stalled_at})")
    assert not [s for s in result.samples if not s.ok], (result.message, result.details)
    assert target.answered >= len(result.samples)  # every answer counted came from it
    assert all(s.latency_s is None or s.latency_s < 0.5 for s in result.samples)
    own = result.details["agent_lag"]
    assert own["agent_lag"] + own["agent_lag_latency"] >= 25  # due in the stall, or in flight
    assert len(result.samples) + own["agent_lag"] == 50
    for reason in ("agent_lag", "agent_lag_latency"):
        assert _dropped(metrics, reason) == own[reason]
    tally = DropTally()
    tally.note([result], logging.LoggerAdapter(logging.getLogger("test")))
    assert (tally.runs, tally.samples, tally.latency) == (
        50,
        own["agent_lag"],
        own["agent_lag_latency"],
    )


MS = 0.001
LATENCY_UP = Rule("probe-latency", "checks", "latency_p95", max_increase=0.2)
LATENCY_MAX = Rule("probe-latency", "checks", "latency_p95", max=0.3)


def _latency_fail(observed: float) -> tuple[Glance, Verdict]:
    evidence = {"streak": 2}
    glance = Glance("fail", (RuleGlance("probe-latency", "fail", observed, evidence),))
    rule = RuleVerdict(
        "probe-latency", "checks", "latency_p95", "fail", observed, None, "max_increase 20%", "d"
    )
    return glance, Verdict("fail", "probe-latency: latency_p95 above baseline", (rule,))


def _baseline(value: float) -> dict[str, Observation]:
    return {"probe-latency": Observation(value)}


def test_a_latency_fail_within_the_agents_own_delay_is_not_a_rollback() -> None:
    """What the saturated A/A benchmark rolled back: a target answering in 1 ms, read a few
    ms late by an agent whose loop fell behind (some probes dropped, the rest kept late but
    under the drop rule's 5 ms floor). The fail is within the agent's delay: inconclusive,
    saying why, never a rollback."""
    glance, verdict = _latency_fail(6 * MS)
    held_glance, held = _tally(100, 3, latencies=10).guard(
        glance, verdict, [LATENCY_UP], _baseline(1 * MS)
    )
    assert held_glance.decision == "inconclusive" and held is not None
    assert held.decision == "inconclusive" and held.reason.startswith("agent overloaded:")
    said = "probe-latency's latency_p95 6ms may be as little as 0s at the target"
    assert said in held.reason
    assert held.rules[0].outcome == "inconclusive"
    # an absolute bound: 310 ms against max 300 ms is within the agent's delay too
    glance, verdict = _latency_fail(0.31)
    assert _tally(100, 3).guard(glance, verdict, [LATENCY_MAX])[0].decision == "inconclusive"


def test_a_held_latency_fail_says_the_figures_on_call_can_check() -> None:
    """Issue 10's live re-run: latency ×2 of a 40 ms service (p95 119 ms against a baseline
    p95 of 73 ms, `max_increase: 50%`), 14 of 300 latencies dropped on a busy host. The hold
    stands, and its words say what each figure is: the old ones read "119ms is within 109ms"
    (false as written) and "14 samples dropped: agent overloaded" right after "agent
    overloaded:"."""
    glance, verdict = _latency_fail(0.119)
    tally = _tally(300, 0, latencies=14)
    rule = Rule("probe-latency", "checks", "latency_p95", max_increase=0.5)
    _, held = tally.guard(glance, verdict, [rule], _baseline(0.073))
    assert held is not None and held.decision == "inconclusive"
    assert held.reason.startswith(
        "agent overloaded: 14 of 300 probes dropped (0 timeouts, 14 latencies) — its own"
    ), held.reason
    said = (
        "probe-latency's latency_p95 119ms may be as little as 92ms at the target (the agent's"
        " own delay can add up to 27ms to a reading it kept), not past its limit 109ms"
    )
    assert said in held.reason, held.reason
    assert "is within" not in held.reason and held.reason.count("agent overloaded") == 1


def test_a_held_fail_before_the_last_round_keeps_the_window_watching() -> None:
    """A fail the guard holds mid-window does not end the window (its other rules would go
    unwatched, and a regression that grows past the agent's delay could no longer fail
    it): the decision is `continue`, the words say it is held; at the last round it is
    `inconclusive`, nothing rolled back."""
    glance, verdict = _latency_fail(6 * MS)
    tally, rules, base = _tally(100, 3, latencies=10), [LATENCY_UP], _baseline(1 * MS)
    held_glance, held = tally.guard(glance, verdict, rules, base, final=False)
    assert held_glance.decision == "continue" and held is not None
    assert held.decision == "continue" and "held while the window goes on" in held.reason
    assert held.rules[0].outcome == "inconclusive"
    assert held_glance.rules[0].outcome == "inconclusive"
    ended_glance, ended = tally.guard(glance, verdict, rules, base, final=True)
    assert ended_glance.decision == "inconclusive" and ended is not None
    assert ended.decision == "inconclusive" and "nothing is rolled back" in ended.reason
    # a fail on a rule that kept its evidence is no hold: it ends the window at once
    glance, verdict = _verdict("fail", "fail")
    assert _tally(10, 0, latencies=9).guard(glance, verdict, ERRORS, final=False) == (
        glance,
        verdict,
    )


def test_a_fail_that_stands_on_kept_evidence_is_said_as_that_rules() -> None:
    """An error rule fails on answers the agent read (facts however late) while a latency
    rule failed within the agent's delay: the deploy is still rolled back, but for the
    errors; the latency rule is not judged (the judge's reason named it first)."""
    latency = RuleVerdict(
        "probe-latency", "checks", "latency_p95", "fail", 6 * MS, None, "max_increase 20%", "d"
    )
    errors = RuleVerdict(
        "probe-errors", "checks", "error_rate", "fail", 0.5, None, "max 0.05", "3 of 6 failed"
    )
    glance = Glance(
        "fail",
        (
            RuleGlance("probe-latency", "fail", 6 * MS, {"streak": 2}),
            RuleGlance("probe-errors", "fail", 0.5, {"streak": 2}),
        ),
    )
    verdict = Verdict(
        "fail", "probe-latency: latency_p95 above baseline (and 1 more rule)", (latency, errors)
    )
    rules = [LATENCY_UP, Rule("probe-errors", "checks", "error_rate", max=0.05)]
    held_glance, said = _tally(100, 3, latencies=10).guard(
        glance, verdict, rules, _baseline(1 * MS), final=False
    )
    assert held_glance.decision == "fail" and said is not None and said.decision == "fail"
    assert said.reason == (
        "probe-errors: 3 of 6 failed; probe-latency not judged: agent overloaded"
    )
    assert [r.outcome for r in said.rules] == ["inconclusive", "fail"]
    assert [r.outcome for r in held_glance.rules] == ["inconclusive", "fail"]


def test_a_real_latency_regression_still_fails_on_an_overloaded_or_a_quiet_agent() -> None:
    """The guard never blinds the judge to a real regression: ×2 of a 100 ms service is far
    past the agent's delay, overloaded or not; a quiet agent's window (nothing dropped: its
    loop kept time) is judged on its latencies, however small."""
    for observed, tally, base in (
        (0.2, _tally(100, 3, latencies=10), 0.1),  # ×2 of 100 ms, agent overloaded
        (6 * MS, _tally(100, 0), 1 * MS),  # ×6 of 1 ms, quiet agent
        (0.4, _tally(100, 3), None),  # 400 ms against max 300 ms, overloaded
    ):
        glance, verdict = _latency_fail(observed)
        rules = [LATENCY_UP] if base is not None else [LATENCY_MAX]
        baselines = _baseline(base) if base is not None else {}
        assert tally.guard(glance, verdict, rules, baselines) == (glance, verdict)


async def test_a_round_stalled_for_most_of_its_probes_keeps_none_of_its_latencies() -> None:
    """Most of a round's probes caught in the agent's stall: the latencies the others kept
    (late under the drop rule's floor, as the saturated benchmark's were) go too, counted;
    a round with a stall for fewer than half keeps them."""
    metrics = Metrics()
    async with TargetSessions() as sessions:
        probe = _probe("http://127.0.0.1:9", sessions, metrics, probes=4)
        ok = _result(Sample("c", ok=True, status=200, latency_s=0.004), 0.004)
        late = attributed(_result(Sample("c", ok=True, status=200, latency_s=0.3), 0.3), 0.3, 0.3)[
            0
        ]
        cut = attributed(_result(Sample("c", ok=False, error="timeout"), 1.0), 0.9)[0]
        kept = probe._stalled_round([ok, ok, late, cut])
        assert kept == [ok, ok, late, cut]  # 2 of 4: not most
        before = _dropped(metrics, "agent_lag_latency")
        out = probe._stalled_round([ok, late, cut, cut])
    assert [s.latency_s for r in out for s in r.samples] == [None, None]
    assert out[0].samples[0].ok and out[0].details["latency_dropped"] == "agent_lag_round"
    assert _dropped(metrics, "agent_lag_latency") - before == 1


def test_the_delay_an_answer_read_now_waited_is_measured_from_the_last_beat() -> None:
    """`read_delay`: the most an answer parsed now waited for the agent, measured from
    when the last heartbeat that ran was due: a few ms on a loop that keeps time, the
    whole stall on one that stalled; on a loop that runs a turn's timers before its I/O
    (uvloop), from the beat before when read in the last beat's own turn. What the
    overload guard weighs a kept latency by, in place of a worst case of 10% + 15 ms."""

    class Clock:
        now = 0.0
        due: tuple[float, Callable[[], None]]
        soon: list[tuple[Callable[[int], None], int]]

        def time(self) -> float:
            return self.now

        def call_at(self, when: float, callback: Callable[[], None]) -> None:
            self.due = (when, callback)

        def call_soon(self, callback: Callable[[int], None], arg: int) -> None:
            self.soon.append((callback, arg))

    clock = Clock()
    clock.soon = []
    lag = LoopLag(clock, io_first=True)  # type: ignore[arg-type]
    assert lag.read_delay() is None  # not beating: it knows nothing

    def beat_at(t: float) -> None:
        clock.now = t
        clock.due[1]()

    lag.total()  # beating: due at 0.01
    beat_at(0.0105)  # on time (0.5 ms late)
    clock.now = 0.013
    assert lag.read_delay() == pytest.approx(0.003)
    clock.now = 0.30  # a 0.28 s stall, its heartbeat not run yet: an answer parsed now
    assert lag.read_delay() == pytest.approx(0.29)  # may have come just after 0.01
    beat_at(0.3001)
    beat_at(0.3102)
    clock.now = 0.311
    assert lag.read_delay() == pytest.approx(0.0009)
    later = time.monotonic() + 100.0  # its reading takes the system's clock if later
    clock.now = later
    timers_first = LoopLag(clock, io_first=False)  # type: ignore[arg-type]
    timers_first.total()
    beat_at(later + 0.01)
    beat_at(later + 0.02)
    clock.now = later + 0.021  # read in the beat's own turn: from the beat before
    assert timers_first.read_delay() == pytest.approx(0.011)
    for _ in range(2):  # the next turn's call_soon callbacks: the beat's turn is over
        for callback, arg in clock.soon[-1:]:
            callback(arg)
    assert timers_first.read_delay() == pytest.approx(0.001)


def _reading(latency: float, delay: float | None) -> CheckResult:
    """A kept deploy latency, with the delay the agent measured its reading late by."""
    sample = Sample("health", ok=True, status=200, latency_s=latency)
    details = {} if delay is None else {AGENT_DELAY: delay}
    return CheckResult("health", "http", True, (sample,), "m", latency, details)


def _dropped_latency() -> CheckResult:
    sample = Sample("health", ok=True, status=200, latency_s=None)
    return CheckResult("health", "http", True, (sample,), "m", 0.1, {"latency_dropped": "x"})


def _live_tally(readings: list[CheckResult], dropped: int) -> DropTally:
    tally = DropTally()
    log = logging.LoggerAdapter(logging.getLogger("test"), {})
    tally.note([*readings, *(_dropped_latency() for _ in range(dropped))], log)
    return tally


def test_a_fast_services_latency_x2_read_a_few_ms_late_is_judged() -> None:
    """Issue 10: a 20 ms service at 40 ms (`max_increase 50%` of a 21 ms baseline: limit
    32 ms), 11 of 24 latencies dropped by the agent's stalls, the 13 it kept read 1-6 ms
    late as it measured. The fail stands (the old guard took 10% + 15 ms off every
    reading, 41 ms "as little as 21 ms", and held it). Readings the agent measured 8 ms
    late for a 1 ms service are still held, as are readings it kept no measure of (a
    load run's, a window resumed from its stored rounds: the worst case)."""
    rule = Rule("probe-latency", "checks", "latency_p95", max_increase=0.5)
    glance, verdict = _latency_fail(0.041)
    readings = [_reading(0.038 + i * 0.0003, 0.001 + (i % 6) * 0.001) for i in range(13)]
    tally = _live_tally(readings, dropped=11)
    assert tally.guard(glance, verdict, [rule], _baseline(0.021)) == (glance, verdict)
    # the agent's own delay, measured: a 1 ms service read 8 ms late
    glance, verdict = _latency_fail(0.009)
    late = _live_tally([_reading(0.009, 0.008) for _ in range(13)], dropped=11)
    held_glance, held = late.guard(glance, verdict, [rule], _baseline(0.001))
    assert held_glance.decision == "inconclusive" and held is not None
    assert "the agent measured its own delay adding up to 8ms to this figure" in held.reason
    # no measure kept for a reading of the rule's check: the worst case
    glance, verdict = _latency_fail(0.041)
    unmeasured = _live_tally([*readings, _reading(0.04, None)], dropped=11)
    assert unmeasured.guard(glance, verdict, [rule], _baseline(0.021))[0].decision == (
        "inconclusive"
    )
    resumed = _live_tally(readings, dropped=11)
    resumed.note_summary({"checks": {"health": {"runs": 3}}})
    assert resumed.guard(glance, verdict, [rule], _baseline(0.021))[0].decision == ("inconclusive")


def test_a_rule_whose_fail_was_held_never_ends_the_window_passed() -> None:
    """The e2e run of a 20 -> 40 ms service on a busy agent (threshold policy, two
    breached rounds): the fail was held as the agent's delay, a later round's p95 broke
    the streak, and the window ended `passed` ("1 of 1 rule passed"), a latency x2 called
    a pass. A rule whose fail was held is judged by nobody at the end: `inconclusive`,
    saying why, never a rollback."""
    glance, verdict = _latency_fail(6 * MS)
    tally, rules, base = _tally(100, 3, latencies=10), [LATENCY_UP], _baseline(1 * MS)
    assert tally.guard(glance, verdict, rules, base, final=False)[0].decision == "continue"
    passing = RuleVerdict(
        "probe-latency", "checks", "latency_p95", "pass", MS, MS, "max_increase 20%", "ok"
    )
    ended = Glance("pass", (RuleGlance("probe-latency", "pass", MS, {}),))
    said = Verdict("pass", "1 of 1 rule passed over 8 rounds", (passing,))
    out_glance, out = tally.guard(ended, said, rules, base, final=True)
    assert out_glance.decision == "inconclusive" and out is not None
    assert out.decision == "inconclusive" and out.reason.startswith("agent overloaded:")
    assert "probe-latency's latency_p95 6ms may be as little as" in out.reason
    assert "nothing is rolled back (the judge alone said: pass:" in out.reason
    assert [r.outcome for r in out.rules] == ["inconclusive"]
    assert [r.outcome for r in out_glance.rules] == ["inconclusive"]
    assert "its fail in an earlier round was within the agent's own delay" in out.rules[0].detail
    # a window that never held a fail passes as the judge said
    assert _tally(100, 3, latencies=10).guard(ended, said, rules, base) == (ended, said)


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_the_measured_delay_is_never_less_than_an_answers_real_wait(kind: str) -> None:
    """`read_delay` as an answer is parsed (in its I/O callback) is at least how long that
    answer really waited for the loop: the loop is blocked 20 ms again and again while a
    thread writes the answer at a moment in the block, on asyncio (a turn's I/O before its
    timers) and on uvloop (timers first: a heartbeat due in the block runs in the very turn
    that reads the answer, and must not be what the wait is counted from)."""
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is the `fast` extra")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        waits = loop.run_until_complete(_waits_and_bounds())
    finally:
        loop.close()
    assert len(waits) >= 30
    short = [(round(w, 4), round(b, 4)) for w, b in waits if b < w - 0.0015]
    assert not short, short  # (real wait, measured), with uvloop's 1 ms clock


async def _waits_and_bounds() -> list[tuple[float, float]]:
    loop = asyncio.get_running_loop()
    lag = LoopLag(loop)
    ours, theirs = socket.socketpair()
    knock, knocked = socket.socketpair()
    written: list[float] = []
    writers: list[threading.Thread] = []
    out: list[tuple[float, float]] = []
    read = asyncio.Event()
    offsets = [(i % 10) * 0.002 for i in range(40)]

    class Reader(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            bound = lag.read_delay()
            assert bound is not None
            out.append((time.monotonic() - written[-1], bound))
            read.set()

    def write(offset: float) -> None:
        time.sleep(offset)
        written.append(time.monotonic())
        theirs.send(b"x")

    class Blocker(asyncio.Protocol):
        """Blocks the loop in an I/O callback (a turn's last phase on uvloop): the answer
        written meanwhile is read in the next turn, after that turn's timers."""

        def data_received(self, data: bytes) -> None:
            writers.append(threading.Thread(target=write, args=(offsets[len(written)],)))
            writers[-1].start()
            time.sleep(0.02)

    reading, _ = await loop.connect_accepted_socket(Reader, ours)
    blocking, _ = await loop.connect_accepted_socket(Blocker, knocked)
    try:
        for i in range(40):
            lag.total()
            read.clear()
            knock.send(b"k")
            await asyncio.sleep(0.03 + (i % 7) * 0.0013)
            # one read a write: a thread a loaded machine ran late wrote into the next
            # turn's block, and two answers read as one left 26 of 40 waits
            await asyncio.wait_for(read.wait(), 10)
    finally:
        for writer in writers:  # a loaded machine ran the last one after the loop: EBADF
            writer.join()
        reading.close()
        blocking.close()
        theirs.close()
        knock.close()
    return out


def _load_run(latencies: list[float | None], dropped_whole: int, timeouts: int = 0) -> CheckResult:
    """A load run's result as `checks.load` makes it: each request a sample, a latency
    the agent's stall caused already None, a request dropped whole counted in details."""
    samples = [Sample("feed", ok=True, status=200, latency_s=x) for x in latencies]
    samples += [Sample("feed", ok=False, latency_s=2.0, error="timeout")] * timeouts
    lag = {"agent_lag": dropped_whole, "agent_lag_latency": latencies.count(None)}
    details = {"requests": len(samples) + dropped_whole, "agent_lag": lag}
    return CheckResult("feed", "load", True, tuple(samples), "m", 10.0, details)


async def test_a_load_run_stalled_for_most_of_its_requests_keeps_none_of_its_latencies() -> None:
    """A load run most of whose requests the agent's stall caught keeps none of the
    latencies the rest kept (read late by the same loop: a soak's background run kept 82 of
    200 at p95 71 ms against 38 ms for the same target, and a latency x2 deploy passed
    against that baseline), counted; a timeout the target's silence proved keeps its own;
    a run caught for half its requests or fewer keeps them."""
    metrics = Metrics()
    async with TargetSessions() as sessions:
        probe = _probe("http://127.0.0.1:9", sessions, metrics, probes=4)
        half = _load_run([0.02, 0.07, None, None], dropped_whole=0)
        assert probe._stalled_round([half]) == [half]
        before = _dropped(metrics, "agent_lag_latency")
        most = _load_run([0.07, None, None, 0.03], dropped_whole=2, timeouts=1)
        out = probe._stalled_round([most])
    assert [s.latency_s for s in out[0].samples] == [None, None, None, None, 2.0]
    assert [s.ok for s in out[0].samples] == [True, True, True, True, False]
    assert out[0].details["latency_dropped"] == "agent_lag_run"
    assert out[0].details["agent_lag"] == {"agent_lag": 2, "agent_lag_latency": 4}  # 2 + 2
    assert _dropped(metrics, "agent_lag_latency") - before == 2

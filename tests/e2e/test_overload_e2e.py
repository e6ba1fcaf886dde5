"""An overloaded agent never rolls back a healthy deploy: the real daemon, its event loop
stalled (`time.sleep` in a callback: what a saturated agent does to its probes) while its
probes' answers are on their way, in an A/A window against a healthy target that runs on
its own loop in a thread.

Truth from outside: the rollback receiver counts attempts, the alert sink what on-call
was told, the target what it answered."""

from __future__ import annotations

import asyncio
import json
import select
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

import agent.windows.probing as probing
import checks.lag as lag
import checks.wire as wire
from agent.appkeys import SETTINGS, STORE
from agent.windows.fingerprint import check_fingerprints
from checks.lag import SLACK_S
from tests.e2e.conftest import SECRET, AgentFactory, RunningAgent, held_as_overloaded
from tests.e2e.test_round_schedule_e2e import cpu_waited_s
from tests.heavy import HEAVY
from tests.receivers import JsonSink, RollbackReceiver
from tests.thread_target import ThreadTarget, thread_target

pytestmark = HEAVY

STALL_S = 0.4
"""Longer than the latency bound (300 ms) a 20 ms target is far inside."""


def environment(target: ThreadTarget, receiver_url: str) -> str:
    """An absolute latency bound and the error rule; a threshold policy that fails the
    window on two breached rounds in a row (the old code did, in its second round)."""
    return f"""
    production:
      base_url: {target.url}
      window: 3s
      interval: 500ms
      background_interval: 200ms
      probes_per_round: 3
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
        - {{name: probe-latency, source: checks, metric: latency_p95, max: 300ms}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
      alerts: {{tags: [oncall]}}
    """


@pytest.fixture
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


async def test_a_stalled_agent_never_rolls_back_a_healthy_deploy(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
) -> None:
    target.delay_s = 0.02
    target.close = True  # every probe dials anew, as well
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    alerting = f"""
    alerting:
      channels:
        - url: {json_sink.url()}
          tags: [oncall]
    """
    agent = await start_agent(environment(target, receiver.url), alerting)
    deploy = await agent.register("production", "v2.4.2")
    loop = asyncio.get_running_loop()
    stalls = 0

    def stall() -> None:
        nonlocal stalls
        stalls += 1
        time.sleep(STALL_S)

    # from now on, each request the target gets stalls the agent while the answer is on
    # its way (the background probing's too: the baseline is no better off)
    target.on_request = lambda: loop.call_soon_threadsafe(stall)
    try:
        final = await agent.settled(deploy["id"], within=60)
    finally:
        target.on_request = None
    assert stalls >= 4 and target.answered >= stalls
    assert final["state"] == "inconclusive", final
    assert final["verdict"]["reason"].startswith("agent overloaded:"), final["verdict"]
    assert {r["outcome"] for r in final["verdict"]["rules"]} <= {"pass", "inconclusive"}
    assert final["rollback"] is None
    dropped = sum(
        agent.metric("postflight_samples_dropped_total", environment="production", result=r)
        for r in ("agent_lag", "agent_lag_latency")
    )
    assert dropped >= stalls / 2
    await asyncio.sleep(0.3)
    assert receiver.attempts == []
    told = [a.message for a in await json_sink.wait_for(1, within=10)]
    assert any("agent overloaded" in m for m in told), told


def relative_environment(target: ThreadTarget, receiver_url: str) -> str:
    """A relative latency rule (the benchmark's `max_increase 20%`) against a baseline the
    agent measured with a free loop, judged by a threshold policy (two breached rounds)."""
    return f"""
    production:
      base_url: {target.url}
      window: 4s
      interval: 500ms
      background_interval: 200ms
      probes_per_round: 3
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-latency, source: checks, metric: latency_p95, max_increase: 20%}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
    """


def reads_late(
    monkeypatch: pytest.MonkeyPatch,
    target: ThreadTarget,
    late_s: Callable[[], float],
    stalled: set[float] | None = None,
) -> None:
    """From now on the agent's loop is busy from each request it sends `target` until the
    answer is in its socket's buffer and `late_s()` seconds more (`time.sleep` in the
    probe's own send): every answer is read late by the agent, whatever the target's and
    the machine's own timing. Why not from the target's `on_request`, as the other tests
    here: that stall starts when the target thread takes the request, and on a loaded
    machine the thread took it 10-70 ms after it was sent while the agent's loop kept time
    (a run with the suite on the cores, timestamps at each hop): the target itself answered
    late, a lateness the guard rightly counts as the target's, and the A/A window was
    rolled back ("latency_p95 13ms > max 2ms", about one run in six). `stalled` gets the
    write (`sent_at`) of each request whose read it stalls."""
    send = wire._Conn.send

    def busy_sending(conn: Any, request: bytes, keep: bool, waiter: Any, mark: Any) -> None:
        send(conn, request, keep, waiter, mark)
        if conn.key[1] != target.port or conn.transport is None:
            return
        late = late_s()
        if late:  # 0: this request is read as the loop comes to it
            if stalled is not None:
                stalled.add(conn.sent_at)
            select.select([conn.transport.get_extra_info("socket")], [], [], 1.0)
            time.sleep(late)

    monkeypatch.setattr(wire._Conn, "send", busy_sending)


class TargetLateness:
    """How late the target itself answered each request the agent wrote it: its answer
    ready (its handler's `delay_s` slept) less the write and that `delay_s`, same clock,
    in the target's thread: the machine's lateness, never the agent's (whose loop reads
    the answer after that). The target shares the test's CPUs (and GIL), so outside load
    (two CPU hogs, load 10-20) starves it too: in A/A windows rolled back under such load
    the agent's latencies were the target's own answer times plus 0.2 ms (the write to
    the kernel's stamp of the answer, none of the agent's 2 ms block in it), its p50
    2.6-6.7 ms against a baseline's 2.5-3.3 (3 of 4 windows; its thread kept waiting
    for a CPU 2-4 ms per request, by the kernel's count); its handler's start alone (what
    this measured before) missed the lateness of its sleep and answer. A window whose
    verdict the target's own lateness explains is the machine's, no control: another is
    made (`one_more`).

    `ends`: for each answer the agent parsed, its latency's end (`Parsed.done_at`) less
    the target's answer being ready: what the agent added to the target's own time, the
    write and the kernel's delivery on a quiet loop, the read's lateness where a latency
    ended at the read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: ThreadTarget) -> None:
        self.written: list[float] = []
        self.late: list[float] = []
        self.ready: list[float] = []
        self.ends: list[float] = []
        self._sent_at: float | None = None  # the write of the answer being parsed
        send = wire._Conn.send
        complete = wire._Conn.on_message_complete
        parse = wire.Parsed.__init__

        def sent(conn: Any, request: bytes, keep: bool, waiter: Any, mark: Any) -> None:
            send(conn, request, keep, waiter, mark)
            if conn.key[1] == target.port:
                self.written.append(conn.sent_at)

        def completed(conn: Any) -> None:
            self._sent_at = conn.sent_at if conn.key[1] == target.port else None
            try:
                complete(conn)
            finally:
                self._sent_at = None

        def parsed(answer: wire.Parsed, *args: Any, **kwargs: Any) -> None:
            parse(answer, *args, **kwargs)
            if self._sent_at is not None:
                self._ended(self._sent_at, answer.done_at)

        monkeypatch.setattr(wire._Conn, "send", sent)
        monkeypatch.setattr(wire._Conn, "on_message_complete", completed)
        monkeypatch.setattr(wire.Parsed, "__init__", parsed)
        target.on_answer = self._answered

    def _ended(self, sent_at: float, done_at: float) -> None:
        # its answer: the latest made since the write (the kernel's stamp, taken off the
        # system clock, may read a few microseconds early)
        ready = [r for r in self.ready if sent_at <= r <= done_at + 0.001]
        if ready:
            self.ends.append(done_at - ready[-1])

    def _answered(self, came: float, delay: float) -> None:  # in the target's thread
        now = time.perf_counter()
        before = [w for w in self.written if w <= came]
        if before:
            self.late.append(now - before[-1] - delay)
        self.ready.append(now)

    def count(self, over_s: float, since: int = 0, until: int | None = None) -> int:
        """Requests (of those since/until an index of `late`) the target answered late."""
        return sum(1 for late in self.late[since:until] if late > over_s)


class LostLatencies:
    """Each answer of the target's whose latency the agent dropped (`checks.lag.attributed`,
    which the lean client's callbacks reach as the answer is parsed), as (whether the test
    stalled its read, `reads_late`'s `stalled`; whether it was a new connection's first;
    how long the agent's thread was kept waiting for a CPU, by the kernel's count, from the
    write before its own to its parse: the machine's stall, not the test's; the lateness
    the agent dropped it for, its `stalled_s`). `by_round`:
    the latencies kept by a round's other probes and dropped with them, most of its probes
    caught (`EnvironmentProbe._stalled_round`), whatever caught those. `read_late` and
    `started_late`: every latency dropped as read late (`checks.lag.attributed`, those
    `lost` did not see too) and as started late by the agent's grid (`checks.lag.
    late_start`): with `by_round`, every cause the agent gives for a dropped latency."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, target: ThreadTarget, stalled: set[float]
    ) -> None:
        self.lost: list[tuple[bool, bool, float, float]] = []
        self.by_round = 0
        self.read_late = 0
        self.started_late = 0
        self._last_write = cpu_waited_s()
        self._since: dict[float, float] = {}  # a write: the CPU wait counted at the one before
        self._parsing: tuple[bool, bool, float] | None = None
        send = wire._Conn.send
        complete = wire._Conn.on_message_complete
        attributed = lag.attributed

        def sent(conn: Any, request: bytes, keep: bool, waiter: Any, mark: Any) -> None:
            before = self._last_write
            self._last_write = cpu_waited_s()
            send(conn, request, keep, waiter, mark)
            if conn.key[1] == target.port:
                self._since[conn.sent_at] = before

        def completed(conn: Any) -> None:
            since = self._since.pop(conn.sent_at, None)
            if conn.key[1] == target.port and since is not None:
                waited = cpu_waited_s() - since
                self._parsing = (conn.sent_at in stalled, bool(conn.first), waited)
            try:
                complete(conn)
            finally:
                self._parsing = None

        def counted(result: Any, stalled_s: float, unattended: float = 0.0) -> Any:
            out, dropped = attributed(result, stalled_s, unattended)
            if dropped == "agent_lag_latency":
                self.read_late += 1
                if self._parsing is not None:
                    figure = out.details.get("stalled_s", 0.0)  # the lateness it was dropped for
                    self.lost.append((*self._parsing, float(figure)))
            return out, dropped

        late_start = lag.late_start

        def started(result: Any, late: float) -> Any:
            out, dropped = late_start(result, late)
            if dropped == "agent_lag_latency":
                self.started_late += 1
            return out, dropped

        monkeypatch.setattr(wire._Conn, "send", sent)
        monkeypatch.setattr(wire._Conn, "on_message_complete", completed)
        stalled_round = probing.EnvironmentProbe._stalled_round

        def with_the_round(probe: Any, results: list[Any]) -> list[Any]:
            out = stalled_round(probe, results)
            self.by_round += sum(
                1 for r in out if r.details.get("latency_dropped") == "agent_lag_round"
            )
            return out

        monkeypatch.setattr(lag, "attributed", counted)  # as `lag.agents_part` calls them
        monkeypatch.setattr(lag, "late_start", started)
        monkeypatch.setattr(probing.EnvironmentProbe, "_stalled_round", with_the_round)

    def mark(self) -> tuple[int, int, int, int]:
        """Where the counts are now (`explained` from here): the latencies dropped so far
        as read late, as started late, by the round's rule, and those `lost` saw."""
        return self.read_late, self.started_late, self.by_round, len(self.lost)

    def explained(self, mark: tuple[int, int, int, int], dropped: float) -> None:
        """Every latency the agent dropped since `mark` (`dropped`, its count) has a reason
        the agent gives: read late on a new connection's first answer (its connect no stamp
        sees) or while the machine kept the agent's thread waiting for a CPU about as long
        as that lateness (within the drop rule's floor; a stalled read lost it with 0.27 s
        waited, at load 14: the exemption of any wait past the floor let the old code's
        drops through at load 20, their CPU waits 5-140 ms for 60-400 ms late); its probe
        started late by the agent's grid (`late_start`: its loop busy, in the test's
        blocked sends or the machine's stalls); the round's rule, most of its probes so
        caught. None read late on a kept-alive connection, the agent on a CPU: each latency
        ends at the kernel's stamp of its answer's arrival (the old code's ended where the
        loop read it, and a stalled read's was dropped). A count of the drops allowed (at
        most one, or one per new connection) failed the x2 test 5 runs of 10 and the fast
        A/A 6 of 15 beside three CPU hogs (load 8-20), every drop past it a late start."""
        causes = (self.read_late - mark[0], self.started_late - mark[1], self.by_round - mark[2])
        assert dropped == sum(causes), (dropped, causes)
        read_late = self.lost[mark[3] :]
        assert len(read_late) == causes[0], (read_late, causes)  # each one seen
        late = [a for a in read_late if not a[1] and a[2] < max(a[3] - SLACK_S, SLACK_S)]
        assert not late, (late, causes)


def one_more(final: dict[str, Any], late_in_window: int) -> bool:
    """Whether the A/A window `final` is the machine's (see `TargetLateness`), a window to
    make again: rolled back while the target answered late, past the rule's allowance, at
    least a round's worth of the deploy's requests. Made 3 times at most: a third such
    window is no control of the agent, and the test fails saying so (`starved_thrice`),
    never passing with its verdict unasserted. (A x2's control has a stored baseline
    instead, `seeded_baseline`: the machine cannot slow it past the deploy.)"""
    return final["state"] == "rolled_back" and late_in_window >= 3


def starved_thrice(final: dict[str, Any], late_in_window: int) -> NoReturn:
    """Fails an A/A test whose 3 windows the machine spoilt (`one_more`), naming it."""
    pytest.fail(
        "3 A/A windows rolled back while the target itself answered late past the rule's"
        f" allowance ({late_in_window} of the last's requests): the machine starved it, no"
        f" control of the agent: {final['verdict']['reason']}"
    )


async def settled_every_fifth_stalled(
    agent: RunningAgent,
    deploy: dict[str, Any],
    target: ThreadTarget,
    monkeypatch: pytest.MonkeyPatch,
    stalled: set[float] | None = None,
) -> tuple[dict[str, Any], int]:
    """The deploy's final state, its answers read late (`reads_late`, into `stalled`) 8 ms
    after each and `STALL_S` after every fifth, and how many requests were sent the target
    meanwhile."""
    requests = 0

    def late_s() -> float:
        nonlocal requests
        requests += 1
        return STALL_S if requests % 5 == 0 else 0.008

    with monkeypatch.context() as busy:
        reads_late(busy, target, late_s, stalled)
        final = await agent.settled(deploy["id"], within=60)
    return final, requests


@pytest.fixture
def prompt_gil() -> Iterator[None]:
    """The target is a thread of the agent's process: with Python's 5 ms switch interval
    its answers wait for the GIL behind the agent's own work, 4-9 ms late here (a lateness
    no target of its own has, and which a latency ended at the answer's arrival counts as
    the target's: the A/A was rolled back, "latency_p95 11ms > max 2ms"). A 0.1 ms
    interval leaves it answering in about a millisecond, as a separate one would."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.0001)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_a_fast_targets_latency_read_late_by_a_busy_agent_is_no_rollback(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    prompt_gil: None,
) -> None:
    """A 20 ms service's answers read ~8 ms late by an agent whose loop is busy, and every
    fifth stalled 0.4 s (from its send until the answer is in its socket, and after): each
    latency ends where the kernel stamped the answer's arrival, not where the loop read
    it, so the latencies recorded are the target's, no stall is in them, none is dropped
    as read late but a new connection's first (its connect no stamp sees; what else the
    agent drops, it says why: `LostLatencies.explained`), and the window passes. The
    old code dropped the stalled ones (the guard's case) and kept the others 8 ms long.

    A window rolled back while the target itself answered late past the rule's allowance
    (measured in its thread, `TargetLateness`; beside two CPU hogs, 1 run in 8: "latency_p95
    68ms > max 60ms (baseline 40ms +50%)", the free loop's baseline of a 20 ms service
    already 40 ms) is the machine's: one more is made, by a new agent on a store of its
    own (`one_more`), as in the x2 tests below."""
    target.delay_s = FAST_SERVICE_S
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    lateness = TargetLateness(monkeypatch, target)
    for again in range(3):  # a window the machine spoilt (`one_more`): one more, 3 at most
        store = f"url: sqlite:///{tmp_path / f'again{again}.db'}" if again else None
        final, registered = await stalled_window(
            start_agent, target, receiver, monkeypatch, lateness, store
        )
        late = FAST_SERVICE_S / 2  # the rule's allowance: +50%
        late_in_window = lateness.count(late, registered)
        if not one_more(final, late_in_window):
            break
        receiver.attempts.clear()
    else:
        starved_thrice(final, late_in_window)
    reason = final["verdict"]["reason"]
    assert final["state"] == "passed", reason
    assert final["rollback"] is None
    assert receiver.attempts == []


FAST_SERVICE_S = 0.02


async def stalled_window(
    start_agent: AgentFactory,
    target: ThreadTarget,
    receiver: RollbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
    lateness: TargetLateness,
    store: str | None = None,
) -> tuple[dict[str, Any], int]:
    """A new agent learns the service with a free loop, then the deploy's window with its
    answers read late (`settled_every_fifth_stalled`): the final deploy, and how many
    requests the target had come to before it was registered (`lateness.late`). The
    agent's part is asserted here, window by window: no stall in the latency judged, and
    each latency dropped for a reason the agent gives, none for a read late on a kept-alive
    connection (`LostLatencies.explained`: 2-6 late starts in a window beside three CPU
    hogs, its loop busy in the test's blocked sends)."""
    labels = {"environment": "production", "result": "agent_lag_latency"}
    stalled: set[float] = set()
    with monkeypatch.context() as watched:
        # watched from before the agent's start: a connection's parser takes its callbacks
        # (`on_message_complete`) as it is made; installed after the baseline, it saw none
        # of the old code's 30 read-late drops in a window, all on kept-alive connections
        lost = LostLatencies(watched, target, stalled)
        agent = await start_agent(regression_environment(target, receiver.url), store=store)
        await agent.stored_runs("production", 15)  # a baseline, probed by a free loop
        # from the deploy on: a loaded machine's own stalls drop latencies of the free
        # loop's baseline too (2-3 at load 15 with two CPU hogs), none of them the test's
        mark = lost.mark()
        before = agent.metric("postflight_samples_dropped_total", **labels)
        registered = len(lateness.late)
        deploy = await agent.register("production", "v2.4.2")
        final, requests = await settled_every_fifth_stalled(agent, deploy, target, watched, stalled)
        dropped = agent.metric("postflight_samples_dropped_total", **labels) - before
    assert requests >= 10 and target.answered >= requests and stalled
    lost.explained(mark, dropped)  # every read made late (8 ms, 0.4 s every fifth) kept it
    (rule,) = final["verdict"]["rules"]
    assert rule["observed"] is not None and rule["observed"] < STALL_S, rule  # not a stall's
    await asyncio.sleep(0.3)
    await agent.stop()
    return final, registered


async def test_a_slow_target_read_by_a_busy_agent_still_reads_slow(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same busy agent (its loop blocked from each send until the answer is in its
    socket and 8 ms more, 0.4 s every fifth), the target really slower, 1 ms to 150 ms:
    ending each latency at the answer's arrival takes out the agent's delay, never the
    target's own time. Its latencies read 150 ms or more, and it is rolled back."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(relative_environment(target, receiver.url))
    await agent.stored_runs("production", 7)  # a baseline, probed by a free loop
    target.delay_s = 0.15
    deploy = await agent.register("production", "v2.4.2")
    final, requests = await settled_every_fifth_stalled(agent, deploy, target, monkeypatch)
    assert requests >= 5
    reason = final["verdict"]["reason"]
    assert final["state"] == "rolled_back", reason
    (rule,) = final["verdict"]["rules"]
    assert rule["outcome"] == "fail" and rule["observed"] >= 0.15, rule
    await asyncio.sleep(0.3)
    assert len(receiver.attempts) >= 1


def regression_environment(target: ThreadTarget, receiver_url: str) -> str:
    """Issue 10's rule, `latency_p95 max_increase 50%`, on a service answering in tens of ms."""
    return f"""
    production:
      base_url: {target.url}
      window: 4s
      interval: 500ms
      background_interval: 100ms
      probes_per_round: 3
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 2}}
      rules:
        - {{name: probe-latency, source: checks, metric: latency_p95, max_increase: 50%}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
    """


@pytest.mark.parametrize("slower", [2.0, 1.0], ids=["latency-x2", "a-a"])
async def test_a_fast_services_latency_x2_on_a_mildly_busy_agent_is_rolled_back(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    slower: float,
    tmp_path: Path,
    prompt_gil: None,
) -> None:
    """Issue 10's hidden regression: a 50 ms service goes to 100 ms while the agent's loop
    is now and then blocked (every fourth request it sends the target stalls it from the
    send until the answer is in its socket and 60 ms more, `reads_late`): each latency ends
    where the kernel stamped its answer's arrival, none is dropped (an older guard dropped
    those read in a stall as the agent's), and the x2 is judged and rolled back (an older
    one assumed 10% + 15 ms on every reading and held it as "agent overloaded"). The same
    agent on an unchanged service rolls nothing back. Counted at the rollback receiver.
    Why from the agent's send, not the target's `on_request`: see `reads_late`.

    The x2's baseline is the 50 ms service's, stored (`seeded_baseline`): learnt live, a
    machine that slowed it (64-490 ms beside six CPU hogs) left the x2 within its bound,
    and the test ended on that baseline, asserting no rollback (1 run in 10). A x2 window
    the guard held all the same (inconclusive "agent overloaded", nothing rolled back: a
    machine at load 20 dropped 22 of 24 probes as the agent's stalls, on top of the
    test's) is the machine's: one more is made, by a new agent on a store of its own,
    which must roll back."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    lateness = TargetLateness(monkeypatch, target)
    for again in range(3):  # a window the machine spoilt: one more, 3 at most
        store = f"url: sqlite:///{tmp_path / f'again{again}.db'}" if again else None
        final, registered = await busy_window(
            start_agent, target, receiver, monkeypatch, slower, lateness, store
        )
        if slower > 1:
            if not held_as_overloaded(final):
                break
            assert receiver.attempts == [], final["verdict"]
        else:
            late_in_window = lateness.count(SERVICE_50MS_S / 2, registered)
            if not one_more(final, late_in_window):
                break
        receiver.attempts.clear()
    else:
        if slower == 1:
            starved_thrice(final, late_in_window)
    if slower > 1:
        assert final["state"] == "rolled_back", json.dumps(final["verdict"])[:3000]
        assert len(receiver.attempts) >= 1
    else:
        assert final["state"] in ("passed", "inconclusive"), final["verdict"]["reason"]
        assert receiver.attempts == []


async def busy_window(
    start_agent: AgentFactory,
    target: ThreadTarget,
    receiver: RollbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
    slower: float,
    lateness: TargetLateness,
    store: str | None = None,
) -> tuple[dict[str, Any], int]:
    """A new agent has the 50 ms service's baseline (the A/A's learnt by a free loop, the
    x2's stored: `seeded_baseline`); the deploy makes it `slower` while every fourth
    request blocks the agent's loop: the final deploy, and how many requests the target
    had come to before it was registered (`lateness.late`)."""
    target.delay_s = SERVICE_50MS_S
    requests = 0

    def late_s() -> float:
        nonlocal requests
        requests += 1
        return 0.06 if requests % 4 == 0 else 0.0

    stalled: set[float] = set()
    labels = {"environment": "production", "result": "agent_lag_latency"}
    with monkeypatch.context() as busy:
        # every drop the count below holds is seen, its cause watched from before the
        # agent's start (a connection's parser takes its callbacks as it is made: installed
        # after the baseline, it missed the drops on the baseline's kept-alive connections)
        lost = LostLatencies(busy, target, stalled)
        agent = await start_agent(regression_environment(target, receiver.url), store=store)
        if slower > 1:
            await seeded_baseline(agent, SERVICE_50MS_S)
        else:
            # a baseline of some 30 probes, by a free loop (waited for: a fixed 3 s held
            # however few a loaded machine had made)
            await agent.stored_runs("production", 10)
        registered = len(lateness.late)
        target.delay_s = SERVICE_50MS_S * slower
        mark = lost.mark()
        before = agent.metric("postflight_samples_dropped_total", **labels)
        deploy = await agent.register("production", "v2.4.2")
        reads_late(busy, target, late_s, stalled)
        final = await agent.settled(deploy["id"], within=60)
        dropped = agent.metric("postflight_samples_dropped_total", **labels) - before
    assert requests >= 4 and target.answered >= requests and stalled
    # each latency ends at its answer's arrival: the stalled reads keep theirs, the
    # target's (the old code dropped each as the agent's, and judged the rest)
    lost.explained(mark, dropped)
    await asyncio.sleep(0.3)
    await agent.stop()
    return final, registered


SERVICE_50MS_S = 0.05
"""The x2 test's service: a 20 ms one's background p95 read 31 ms on a machine at load 4.5
(its scheduler's jitter, 10 ms and more), so its bound (+50%) was 47 ms and the x2 (42 ms)
passed, 2 runs in 7; 10 ms of jitter on 50 ms leaves the x2 past the bound."""

SEEDED_RUNS = 200
"""Background runs of the service `seeded_baseline` stores, 10 latencies each."""


async def seeded_baseline(agent: RunningAgent, latency_s: float) -> None:
    """A x2's baseline, the service's `latency_s` (50 ms), stored as the agent's background
    runs of the last minute (its check's fingerprint, so pooled): its bound (+50%) 75 ms,
    under every latency of the 100 ms deploy however late a loaded machine reads it. The few
    runs the agent makes itself before the deploy are under 1% of its 2,000 latencies, too
    few to move its p95. Learnt live, a loaded machine slowed it past the x2 (a baseline
    read 64-490 ms beside six CPU hogs at load 20-24, 15 of 23 windows not rolled back):
    no control of the agent, and the test ended asserting none."""
    environment = agent.app[SETTINGS].environments["production"]
    (check,) = environment.checks
    fingerprint = check_fingerprints(environment)[check.name]
    summary = {"ok": [1] * 10, "latency": [latency_s] * 10}
    now = time.time()
    for n in range(SEEDED_RUNS):
        at = now - 60.0 + n * 60.0 / SEEDED_RUNS
        await agent.app[STORE].add_probe_summary("production", check.name, at, summary, fingerprint)


SERVICE_S = 0.002
LATE_S = 0.002
"""How long after each answer is in the agent's socket its loop is still blocked: the loop
is blocked some 4 ms per answer (the 2 ms service, then this), each answer read some 2 ms
late, under the drop rule's floor (`checks.lag.SLACK_S`, 5 ms): nothing is dropped, every
latency is kept."""


def fast_environment(target: ThreadTarget, receiver_url: str) -> str:
    """The median, breached 3 rounds in a row: a 2 ms service's p95, and a round or two,
    on this shared machine are its scheduler's (5-9 ms)."""
    return f"""
    production:
      base_url: {target.url}
      window: 4s
      interval: 500ms
      background_interval: 100ms
      probes_per_round: 3
      checks:
        - {{name: api-health, type: http, path: /api/health, timeout: 1s}}
      analysis: {{policy: threshold, failure_limit: 3}}
      rules:
        - {{name: probe-latency, source: checks, metric: latency_p50, max_increase: 50%}}
      rollback: {{url: {receiver_url}, secret: {SECRET}, backoff: 100ms}}
    """


@pytest.mark.parametrize(
    ("slower", "late_s"), [(1.0, LATE_S), (2.0, 0.0)], ids=["a-a-blocked", "x2-quiet"]
)
async def test_a_2ms_services_answers_read_late_by_a_blocked_loop_are_no_latency_x2(
    start_agent: AgentFactory,
    target: ThreadTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    slower: float,
    late_s: float,
    tmp_path: Path,
    prompt_gil: None,
) -> None:
    """A/A: each request the agent sends its target blocks its loop some 4 ms, while the
    2 ms answer is on its way and 2 ms more (read some 2 ms late, 4 ms against a 2 ms
    baseline: a "x2" the old guard never weighed, as nothing was dropped, and rolled
    back). Each latency ends at the kernel's stamp of its answer's arrival (the wait out
    of it): nothing rolled back. The control: the service really at 4 ms on a quiet loop is
    rolled back; a control the guard held all the same (the machine's own stalls, at load
    20: 7 of 18 probes dropped) is made once more, as in the test above.

    The control's baseline is the 2 ms service's, stored (`seeded_baseline`): its bound
    (+50%) 3 ms, under every latency of the 4 ms deploy. Learnt reading it, a baseline a
    machine slowed (6 ms, the service's sleep made 3 times longer for the baseline alone)
    left the x2 within its bound, "1 of 1 rule passed over 8 rounds", and the test
    returned on `one_more` asserting nothing. An A/A window rolled back while the target
    itself answered late (`one_more`) three times fails, naming the machine."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    lateness = TargetLateness(monkeypatch, target)
    for again in range(3):  # a window the machine spoilt: one more, 3 at most
        store = f"url: sqlite:///{tmp_path / f'again{again}.db'}" if again else None
        target.delay_s = SERVICE_S
        agent = await start_agent(fast_environment(target, receiver.url), store=store)
        if slower > 1:
            await seeded_baseline(agent, SERVICE_S)
        else:
            # a baseline of some 30 probes, by a free loop (waited for: a fixed 3 s held
            # however few a loaded machine had made)
            await agent.stored_runs("production", 10)
        target.delay_s = SERVICE_S * slower
        registered, parsed = len(lateness.late), len(lateness.ends)
        deploy = await agent.register("production", "v2.4.2")
        with monkeypatch.context() as blocked:
            if late_s:
                reads_late(blocked, target, lambda: late_s)
            final = await agent.settled(deploy["id"], within=60)
        await asyncio.sleep(0.3)
        await agent.stop()
        if late_s:
            # the latencies end where the target's answers came, whatever the machine's
            # load: the agent added its write and the kernel's delivery to the target's own
            # answer times (0.2 ms at load 10-20), not its blocked loop's 2 ms (the old
            # code's latencies ended at the read)
            added = lateness.ends[parsed:]
            assert len(added) >= 10 and statistics.median(added) < late_s / 2, added
        late_in_window = lateness.count(SERVICE_S / 2, registered)
        if slower > 1 and held_as_overloaded(final):
            assert receiver.attempts == [], final["verdict"]
        elif slower > 1 or not one_more(final, late_in_window):
            break
        receiver.attempts.clear()
    else:
        if slower == 1:
            starved_thrice(final, late_in_window)
    reason = final["verdict"]["reason"]
    if slower > 1:
        assert final["state"] == "rolled_back", reason
        assert len(receiver.attempts) >= 1
    else:
        assert final["state"] in ("passed", "inconclusive"), reason
        assert receiver.attempts == []

"""The lean client's latency end and its measure of the agent's part in it: on a kept-alive
connection, the kernel's receive stamp of the answer's last bytes (`checks.stamps`, kept on
asyncio by the transport's own `sock.recv`, on uvloop by reading a duplicate socket), so a
latency ends when the answer reached the machine, not when the agent's loop got to it, and
never before it did; and the overload guard weighs a fail by a precise measure even when
nothing was dropped, by the heartbeat's bound only when something was.

The target is a raw socket server in a thread that notes, on the same clock, when it
handed each answer to the kernel and when the answer was in the agent's socket (`FIONREAD`
on it: a loaded machine's kernel may deliver a loopback packet to the socket well after
`send` returned): the answer reached the machine between the two (the loopback stamps it
in the sender's `send`, before its softirq queues it on the socket)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from yarl import URL

from agent.analysis.types import Observation, Rule, RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from agent.windows.overload import DropTally
from checks import stamps
from checks.base import CheckResult, Sample
from checks.lag import AGENT_DELAY, AGENT_KERNEL_DELAY
from checks.ticks import ticks
from checks.wire import LeanClient, Parsed

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
BLOCK_S = 0.004
SERVICES_S = [0.0, 0.001, 0.002, 0.003, 0.006]
"""When the answer is written after the request came: in the agent's 4 ms block, or after."""


class RawTarget:
    """Answers each request on one keep-alive connection after `service_s`, first asking
    the agent's loop to block `BLOCK_S` (`on_request`); notes when each answer went to the
    kernel, and when it was then seen in the agent's socket `peer` (None: not seen, the
    agent had read it first), on `time.perf_counter`'s clock."""

    def __init__(self, on_request: Callable[[], object]) -> None:
        self.on_request = on_request
        self.service_s = 0.0
        self.sent: list[tuple[float, float | None]] = []
        self.peer = -1
        self.parsed = 0
        """Answers the agent has parsed (set by the test): no use looking for them."""
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self.on_request()
                time.sleep(self.service_s)
                before = time.perf_counter()
                conn.sendall(ANSWER)
                self.sent.append((before, self._seen()))

    def _seen(self) -> float | None:
        """When the answer was first seen waiting in the agent's socket, if it was."""
        answer = len(self.sent) + 1
        while True:
            if self.peer < 0 or self.parsed >= answer:
                return None
            queued = fcntl.ioctl(self.peer, termios.FIONREAD, b"\0\0\0\0")
            at = time.perf_counter()
            if struct.unpack("i", queued)[0] >= len(ANSWER):
                return at
            time.sleep(0.00005)

    def close(self) -> None:
        self.server.close()


class Read:
    """One answer as the target saw it go and the agent timed it."""

    def __init__(self, before: float, seen: float | None, parsed: Parsed) -> None:
        self.before = before
        """Just before the target handed the answer to the kernel: it reached the machine
        (the kernel's loopback, stamping it in the sender's `send`) after."""
        self.seen = seen
        """It was in the agent's socket then (None: not seen, the agent read it first)."""
        self.end = parsed.done_at
        self.read = parsed.read_at
        self.kernel = parsed.kernel_delay
        self.delay = parsed.agent_delay
        self.held = parsed.held
        """The loop wrote the request this late (the agent's, in its delay too)."""

    def __repr__(self) -> str:
        def us(x: float | None) -> str:
            return "-" if x is None else f"{x * 1e6:.0f}us"

        seen = None if self.seen is None else self.seen - self.end
        return (
            f"Read(end-before {us(self.end - self.before)}, seen-end {us(seen)},"
            f" read-end {us(self.read - self.end)}, kernel {us(self.kernel)})"
        )


async def _waits(block: bool, block_s: float = BLOCK_S) -> list[Read]:
    """40 answers on one kept-alive connection."""
    loop = asyncio.get_running_loop()
    lag = ticks().lag
    target = RawTarget(lambda: loop.call_soon_threadsafe(time.sleep, block_s) if block else None)
    client = LeanClient(limit=1, keepalive_s=30.0, force_close=False, default_headers={})
    url = URL(f"http://127.0.0.1:{target.port}/health")
    head = client.head("GET", url, None, None)
    out: list[Read] = []
    try:
        await client.request(head, url, 2.0, False)  # the connection, kept alive
        target.parsed = 1
        (conn,) = client._open
        assert conn.transport is not None
        target.peer = conn.transport.get_extra_info("socket").fileno()
        for i in range(40):
            lag.total()  # the heartbeat beats while probes run
            target.service_s = SERVICES_S[i % len(SERVICES_S)]
            parsed, _ = await client.request(head, url, 2.0, False)
            target.parsed += 1
            while len(target.sent) < target.parsed:  # noqa: ASYNC110 - a thread's notes
                await asyncio.sleep(0.0005)
            before, seen = target.sent[target.parsed - 1]
            assert parsed.agent_delay is not None
            out.append(Read(before, seen, parsed))
            await asyncio.sleep(0.013 + (i % 7) * 0.0017)
    finally:
        target.peer = -1
        client.close()
        target.close()
    return out


class _ClocksWatch:
    """Each `checks.stamps._Clocks.look` of a test, so that its failure says whether the
    clocks are to blame: a step seen (a stamp refused), or a bracket wide (a stamp put
    late on the agent's clock), or neither (the kernel's stamp itself: missing, or late);
    and the state an earlier test of the process left (`offset`, `stepped_at`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.left = (stamps._Clocks.offset, stamps._Clocks.stepped_at)
        self.widths: list[float] = []
        self.steps: list[float] = []
        look = stamps._Clocks.look

        def watched() -> tuple[float, float, float]:
            before, wall, after = look()
            self.widths.append(after - before)
            if stamps._Clocks.stepped_at == before:
                self.steps.append(before)
            return before, wall, after

        monkeypatch.setattr(stamps._Clocks, "look", watched)

    def __repr__(self) -> str:
        widest = [f"{w * 1e6:.1f}us" for w in sorted(self.widths)[-3:]]
        return (
            f"_ClocksWatch(looks {len(self.widths)}, widest {widest}, steps seen at"
            f" {self.steps}, left by earlier tests {self.left})"
        )


def _loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is the `fast` extra")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


@pytest.mark.parametrize("block", [True, False], ids=["blocked", "quiet"])
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_latency_ends_when_the_answer_came_never_before_and_not_when_it_was_read(
    kind: str, block: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each latency ends when its answer reached the machine, to 0.2 ms, and never before
    it (the loop blocked 4 ms as each request came, the answer written 0-6 ms later, or a
    quiet loop): the agent's block is not in it, where it ended at the read before (a 2 ms
    service read 4 ms late looked x2). The agent's part left in it, both measures, is the
    clocks' reading, and the loop's lateness in writing the request, if it was (`held`:
    beside CPU hogs, 6 of 8 failures were the measure taken for the kernel's alone with a
    write held 7 µs-9 ms). On asyncio the transport's own `sock.recv` keeps the stamp; uvloop
    reads the descriptor itself, so the client reads a duplicate of it
    (`checks.wire._Conn.read_own`)."""
    clocks = _ClocksWatch(monkeypatch)
    loop = _loop(kind)
    try:
        reads = loop.run_until_complete(_waits(block))
    finally:
        loop.close()
    early = [r for r in reads if r.end < r.before]
    assert not early, early  # never short
    late = [(r.seen, r.end) for r in reads if r.seen is not None and r.end > r.seen + 0.0002]
    assert not late, (late, clocks)  # (seen there, the latency's end)
    # the reads that break a rule, named alone (a list of 40 is cut before them)
    unstamped = [r for r in reads if r.kernel is None or r.kernel > 0.0002]
    assert not unstamped, (unstamped, clocks)
    unmeasured = [
        (r, r.delay, r.held)
        for r in reads
        if r.kernel is None or r.delay != r.kernel + r.held or r.end > r.read
    ]
    assert not unmeasured, unmeasured
    if block:  # the loop blocked as answers came: they waited, out of their latency
        assert sum(r.seen is not None for r in reads) >= 10
        assert max(r.read - r.end for r in reads) >= 0.002


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_an_answer_within_the_clocks_pad_of_its_write_keeps_its_stamp(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that reached the machine sooner after its write than the clocks' pad
    (`checks.stamps.PAD_S`, 50 µs; here 20 ms, so that every answer of this target is one)
    has its earliest bound before the write, and came after it: its latency still ends at
    its stamp, never before the write, and the agent's 60 ms block is not in it. Before,
    such a stamp was refused and the latency ended at the read: against nginx at nice -10,
    72% of the answers, kept at p95 47 ms with the agent's late reads (the stamped, 14 ms)."""
    monkeypatch.setattr("checks.stamps.PAD_S", 0.02)
    loop = _loop(kind)
    try:
        reads = loop.run_until_complete(_waits(True, block_s=0.06))
    finally:
        loop.close()
    assert all(r.kernel is not None for r in reads), reads
    assert not [r for r in reads if r.end < r.before], reads  # never short
    assert sum(r.read - r.end >= 0.02 for r in reads) >= len(reads) / 2, reads


MS = 0.001
RULE = Rule("probe-latency", "checks", "latency_p50", max_increase=0.5)


def _fail(observed: float) -> tuple[Glance, Verdict]:
    detail = f"latency_p50 {observed * 1000:.1f}ms > max 3ms (baseline 2ms +50%) for 2 rounds"
    verdict = RuleVerdict(
        "probe-latency",
        "checks",
        "latency_p50",
        "fail",
        observed,
        2 * MS,
        "max_increase 50%",
        detail,
    )
    glance = Glance("fail", (RuleGlance("probe-latency", "fail", observed, {}),))
    return glance, Verdict("fail", f"probe-latency: {detail}", (verdict,))


def _tally(readings: list[tuple[float, float]], stamped: bool) -> DropTally:
    """A window of kept deploy latencies (none dropped), each with its measured delay."""
    results = []
    for latency, delay in readings:
        details: dict[str, Any] = {AGENT_DELAY: delay}
        if stamped:
            details[AGENT_KERNEL_DELAY] = delay
        sample = Sample("health", ok=True, status=200, latency_s=latency)
        results.append(CheckResult("health", "http", True, (sample,), "m", latency, details))
    tally = DropTally()
    tally.note(results, logging.LoggerAdapter(logging.getLogger("test"), {}))
    return tally


def test_a_fail_within_a_kernel_measured_delay_is_held_though_nothing_was_dropped() -> None:
    """A 2 ms service read 2-4 ms late by a loop blocked under the drop floor (nothing
    dropped): the window's p50 of 5 ms against a limit of 3 ms is within the delay the
    kernel measured, inconclusive (the old guard weighed no window without drops, and it
    was rolled back). The same service at 4 ms, read 0.05 ms late: the fail stands. And a
    delay that is only the heartbeat's bound (uvloop) is not weighed without drops: on a
    quiet loop it is up to 10 ms, and held a real x2."""
    base = {"probe-latency": Observation(2 * MS)}
    late = [(2 * MS + d, d) for d in (2 * MS, 3 * MS, 4 * MS) * 8]
    glance, verdict = _fail(5 * MS)
    held_glance, held = _tally(late, stamped=True).guard(glance, verdict, [RULE], base)
    assert held_glance.decision == "inconclusive" and held is not None
    assert held.decision == "inconclusive", held.reason
    assert held.reason.startswith(
        "agent overloaded: none of its probes dropped, but its own event loop read their"
        " answers late; probe-latency's latency_p50 5ms may be as little as 2ms at the target"
    ), held.reason
    assert held.rules[0].outcome == "inconclusive"
    # a fail the judge's rank test made, the figure under its limit (the live run's x2 of
    # a 4 ms service, p95 15 ms against 11 ms): 1 ms of the agent's is not the rise
    rank = [(15 * MS + i * 0.01 * MS, 1 * MS) for i in range(24)]
    glance, verdict = _fail(15 * MS)
    live = {"probe-latency": Observation(11 * MS)}
    assert _tally(rank, stamped=True).guard(glance, verdict, [RULE], live) == (glance, verdict)
    quiet = [(4 * MS + 0.05 * MS, 0.05 * MS)] * 24
    glance, verdict = _fail(4 * MS)
    assert _tally(quiet, stamped=True).guard(glance, verdict, [RULE], base) == (glance, verdict)
    beat = [(4 * MS + d, d) for d in (1 * MS, 5 * MS, 9 * MS) * 8]
    glance, verdict = _fail(9 * MS)
    assert _tally(beat, stamped=False).guard(glance, verdict, [RULE], base) == (glance, verdict)
    # a window that lost latencies to stalls is weighed by the heartbeat's bound, from
    # before the stall (a starved machine may deliver answers late: no stamp sees that);
    # one that lost none, by the kernel's measure
    log = logging.LoggerAdapter(logging.getLogger("t"), {})
    glance, verdict = _fail(13 * MS)
    for dropped, decision in ((1, "inconclusive"), (0, "fail")):
        tally = DropTally()
        tally.note([_starved_reading() for _ in range(24)] + [_dropped()] * dropped, log)
        assert tally.guard(glance, verdict, [RULE], base)[0].decision == decision


async def _fresh_answers() -> list[tuple[float | None, float | None]]:
    """(heartbeat's bound, kernel's measure) of an answer on a new connection."""
    lag = ticks().lag
    target = RawTarget(lambda: None)
    client = LeanClient(limit=1, keepalive_s=30.0, force_close=True, default_headers={})
    url = URL(f"http://127.0.0.1:{target.port}/health")
    head = client.head("GET", url, None, None)
    out = []
    try:
        lag.total()
        parsed, _ = await client.request(head, url, 2.0, False)
        out.append((parsed.agent_delay, parsed.kernel_delay))
    finally:
        client.close()
        target.close()
    return out


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_new_connections_first_answer_is_not_taken_as_the_kernels_measure(kind: str) -> None:
    """A latency on a new connection includes its connect, whose wait for the loop no
    receive stamp sees: its measure adds the heartbeat's bound as it connected, and it is
    not counted as the kernel's (the guard weighs a window without drops only on those)."""
    loop = _loop(kind)
    try:
        answers = loop.run_until_complete(_fresh_answers())
    finally:
        loop.close()
    assert [kernel for _, kernel in answers] == [None]
    assert all(delay is not None for delay, _ in answers)


def test_a_few_readings_on_the_heartbeats_bound_leave_the_kernels_measure_weighed() -> None:
    """A window's first answer came on a new connection (the heartbeat's bound, 9 ms on a
    quiet loop); the other 23 carry the kernel's measure: the fail within the agent's
    measured delay is still held. With more than a tenth on the heartbeat's bound, it is
    not weighed without drops."""
    base = {"probe-latency": Observation(2 * MS)}
    late = [(2 * MS + d, d) for d in (2 * MS, 3 * MS, 4 * MS) * 8]
    glance, verdict = _fail(5 * MS)
    stamped = _tally(late[1:], stamped=True)
    stamped.note(
        [_tally_reading(late[0][0], 9 * MS)], logging.LoggerAdapter(logging.getLogger("t"), {})
    )
    assert stamped.guard(glance, verdict, [RULE], base)[0].decision == "inconclusive"
    mixed = _tally(late[3:], stamped=True)
    log = logging.LoggerAdapter(logging.getLogger("t"), {})
    mixed.note([_tally_reading(x, 9 * MS) for x, _ in late[:3]], log)
    assert mixed.guard(glance, verdict, [RULE], base) == (glance, verdict)


def _tally_reading(latency: float, delay: float) -> CheckResult:
    """A kept deploy latency whose delay is the heartbeat's bound."""
    sample = Sample("health", ok=True, status=200, latency_s=latency)
    return CheckResult("health", "http", True, (sample,), "m", latency, {AGENT_DELAY: delay})


def _starved_reading() -> CheckResult:
    """13 ms read 1 ms after the kernel had the answer, 11 ms after the heartbeat was due."""
    sample = Sample("health", ok=True, status=200, latency_s=13 * MS)
    details = {AGENT_DELAY: 11 * MS, AGENT_KERNEL_DELAY: 1 * MS}
    return CheckResult("health", "http", True, (sample,), "m", 13 * MS, details)


def _dropped() -> CheckResult:
    """An answer whose latency the agent's stall dropped."""
    sample = Sample("health", ok=True, status=200, latency_s=None)
    details = {"latency_dropped": "agent_lag"}
    return CheckResult("health", "http", True, (sample,), "m", 0.1, details)


async def _stepped_answers(offset: list[float], step_s: float) -> list[Read]:
    """12 answers on one
    keep-alive connection; the 7th is written while the loop is blocked 4 ms, at the end
    of which the system clock (`offset[0]`) steps by `step_s`, before the answer is read."""
    loop = asyncio.get_running_loop()
    asked = [0]

    def block_then_step() -> None:
        time.sleep(BLOCK_S)
        offset[0] = step_s

    def on_request() -> None:
        asked[0] += 1
        if asked[0] == 8:  # (the first request opened the connection)
            loop.call_soon_threadsafe(block_then_step)

    return await _answers_of(RawTarget(on_request), 12)


async def _answers_of(target: RawTarget, count: int) -> list[Read]:
    """`count` answers of `target` on one keep-alive connection (opened by one more)."""
    lag = ticks().lag
    client = LeanClient(limit=1, keepalive_s=30.0, force_close=False, default_headers={})
    url = URL(f"http://127.0.0.1:{target.port}/health")
    head = client.head("GET", url, None, None)
    out: list[Read] = []
    try:
        await client.request(head, url, 2.0, False)
        target.parsed = 1
        (conn,) = client._open
        assert conn.transport is not None
        target.peer = conn.transport.get_extra_info("socket").fileno()
        for _ in range(count):
            lag.total()
            parsed, _ = await client.request(head, url, 2.0, False)
            target.parsed += 1
            while len(target.sent) < target.parsed:  # noqa: ASYNC110 - a thread's notes
                await asyncio.sleep(0.0005)
            before, seen = target.sent[target.parsed - 1]
            out.append(Read(before, seen, parsed))
            await asyncio.sleep(0.013)
    finally:
        target.peer = -1
        client.close()
        target.close()
    return out


def _system_clock(monkeypatch: pytest.MonkeyPatch, read: Callable[[], float]) -> None:
    """`checks.stamps` reads the system clock with `read`, and the clocks as first read
    (no step seen yet), restored after."""
    import checks.stamps as stamps

    clock = types.SimpleNamespace(perf_counter=time.perf_counter, time=read)
    monkeypatch.setattr(stamps, "time", clock)
    fresh = type("_Clocks", (stamps._Clocks,), {"offset": None, "stepped_at": float("-inf")})
    monkeypatch.setattr(stamps, "_Clocks", fresh, raising=False)


@pytest.mark.parametrize("step_s", [1.0, -1.0, -0.002], ids=["forward", "back", "back-2ms"])
@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_system_clock_step_leaves_the_read_time_never_a_short_latency(
    kind: str, step_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel stamps on the system clock, which an NTP step or a resumed VM moves: an
    answer that came before a step and was read after it would end its latency too early
    (forward: by the step, a second here; a latency short turns the target's slowness into
    nothing) or in the future (back). That answer's latency ends at its read (never
    short), its measure is the heartbeat's bound, and the answers after it end at the
    kernel's stamp again."""
    real_time = time.time
    offset = [0.0]
    _system_clock(monkeypatch, lambda: real_time() + offset[0])
    loop = _loop(kind)
    try:
        answers = loop.run_until_complete(_stepped_answers(offset, step_s))
    finally:
        loop.close()
    # the answer read after the step (the 7th; on uvloop, which may read it before it
    # runs the block another thread asked for, the 8th) ends at its read: never short
    stepped = [r for r in answers[6:8] if r.kernel is None]
    assert stepped and all(r.end == r.read and r.delay is not None for r in stepped), answers
    # before the step the latency ends at the kernel's stamp; after it, whatever the
    # kernel's clock (here: not stepped with the one the agent reads), never early
    assert all(r.kernel is not None and r.kernel <= 0.0002 for r in answers[:6]), answers
    assert all(r.end >= r.before for r in answers), answers


async def _answers_across_a_hidden_step(offset: list[float], stall: list[float]) -> list[Read]:
    """6 answers on one keep-alive connection, the target 30 ms on the last: as it has
    that request, the agent's loop reads the clocks while stalled inside the read
    (`stall[0]`, before each `time.time()`: as a connection being made looks, on a loaded
    machine), then the system clock (`offset[0]`) steps 10 ms forward, before the answer
    is read."""
    loop = asyncio.get_running_loop()
    asked = [0]

    def stalled_look_then_step() -> None:
        import checks.stamps as stamps

        stall[0] = 0.02
        stamps._Clocks.look()
        stall[0] = 0.0
        offset[0] = 0.01

    def on_request() -> None:
        asked[0] += 1
        if asked[0] == 7:  # (the first request opened the connection)
            target.service_s = 0.03
            loop.call_soon_threadsafe(stalled_look_then_step)

    target = RawTarget(on_request)
    return await _answers_of(target, 6)


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_clock_step_inside_an_earlier_stalled_reading_is_seen_never_a_short_latency(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reading of the clocks stalled inside (20 ms between its monotonic reads, on a
    loaded machine) bounds the system clock's offset only to those 20 ms; a step of 10 ms
    after it is inside that bound. Compared with that last reading alone, it went unseen,
    and the answer that came before the step and was read after it ended 10 ms before it
    reached the machine: its latency shorter than the target's own 30 ms (counted by the
    target: its answer went to the kernel after the agent's latency had ended). The offset
    is narrowed by every reading since the last step (`checks.stamps._Clocks`), so the
    step is seen: that answer ends at its read, never short."""
    real_time = time.time
    offset, stall = [0.0], [0.0]

    def stepped_time() -> float:
        if stall[0]:
            time.sleep(stall[0])
        return real_time() + offset[0]

    _system_clock(monkeypatch, stepped_time)
    loop = _loop(kind)
    try:
        answers = loop.run_until_complete(_answers_across_a_hidden_step(offset, stall))
    finally:
        loop.close()
    short = [r for r in answers if r.end < r.before]
    assert not short, answers  # never before the target sent it
    assert answers[-1].kernel is None and answers[-1].end == answers[-1].read, answers
    assert all(r.kernel is not None for r in answers[:-1]), answers

"""The agent's own lateness, and what it means for a probe: a cut or a latency that the
agent's stalled event loop caused is the agent's, never the target's.

No I/O: a heartbeat on the event loop, and a rule over a finished `CheckResult`. Why: a
saturated agent (thousands of probes, a CPU it shares) reads answers late; without this,
each late read was a timeout or an inflated latency counted against the target, and an
A/A window could be rolled back by the agent's own overload.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any, Literal

from checks.base import CheckResult, Sample

BEAT_S = 0.01
"""How often the heartbeat is due while probes are running: a stall shorter than this may
be seen only in part (100 loop wake-ups a second: well under 0.1% of a core)."""
SLACK_S = 0.005
"""Lateness not counted as a stall, per heartbeat, and the least stall that drops a
measurement: the agent's own resolution (its probes start on a 5 ms grid, `checks.ticks`),
which a loop on a shared machine misses by a few milliseconds anyway."""
IDLE_S = 5.0
"""The heartbeat stops when nobody read it for this long (an agent with no window, no
background probing) and starts again at the next read."""

BACKS = 8
"""How many of the latest stalls `LoopLag.resumed` weighs an answer's landing against."""

AGENT_SHARE = 0.1
"""A probe's outcome is the agent's when its loop was stalled for more than this share of
the time the outcome rests on (see `attributed`)."""

Dropped = Literal["agent_lag", "agent_lag_latency"]
"""`agent_lag`: the whole sample is dropped (a timeout, or a latency assertion, the
agent's stall could have caused); `agent_lag_latency`: the answer counts, its latency
(inflated by the stall) does not."""

AGENT_DELAY = "agent_delay_s"
"""A kept latency's details key: the most the agent measured its reading late by
(`LoopLag.read_delay`); the overload guard's measure of its own delay."""
AGENT_KERNEL_DELAY = "agent_delay_kernel_s"
"""Beside `AGENT_DELAY`, when measured: the agent's part of the latency kept, from the
kernel's receive stamp of the answer's last bytes (`checks.stamps`, to some 50 µs): where
the latency ends at that stamp (a kept-alive connection's answer), only the clocks' reading
(both keys say so); else how long those bytes waited for the agent. `attributed` drops no
latency it shows free of a stall, and the guard weighs a window's fail by it when nothing
was dropped (`agent.windows.overload`)."""

AGENT_HELD = "agent_held_s"
"""A latency's details key, when not 0: how long the agent's stalled loop held the request
back before it was written (a new connection's connect or TLS handshake waiting for the
loop): the lean client's `checks.wire._Conn.held`, aiohttp's `checks.written.Written` (an
https probe's, each hop's of a redirect). The latency counts from the probe's start, so all
of it is the agent's, though the answer was read on time: `attributed` adds it to the
read's lateness, as a load run does to each of its requests' (`checks.load`; a stall in the
connect kept a 0.33 s latency of a 20 ms target under load, 0.43 s of a 100 ms https one)."""

AGENT_RESUMED = "agent_resumed_s"
"""A latency's details key, when not 0: the agent's stall its answer landed just after
(`resumed_into`): all of it in the latency, whatever the kernel's stamp says. A target on
another machine answers whatever the agent's loop does, but not every answer's landing is
the target's alone: the last bytes of an answer larger than the socket's buffer wait for
the agent to read the first (TCP's flow control), a request the loop finished writing
after the stall went out late, and a target sharing the agent's host or process waits for
the CPU the stall took. Such an answer lands as the loop comes back, and its stamp held
the stall (a 5 ms target's 8 MB answer, the loop stalled 0.4 s after the write: kept as
0.42 s, its last bytes stamped 20 ms after the loop came back)."""

LATENCY_BOUND = "max_latency_s"
"""A failed latency assertion's details key: the `max_latency` it missed, which a stall
excuses only in the part it explains (`verdict_on`)."""

UNANSWERED = "unanswered_s"
"""A timeout's details key: how long the target had the whole request with no byte of an
answer in the agent's socket when the agent looked, at least the timeout
(`checks.wire.Unanswered`; through aiohttp, `checks.silence.Deadline`). Such a timeout is
the target's however the agent's loop stalled (`attributed`): a stall delays the agent's
reading, never the target's answer."""


def keep_lag(
    details: dict[str, Any],
    *,
    held_s: float = 0.0,
    resumed_s: float = 0.0,
    silent_s: float | None = None,
) -> dict[str, Any]:
    """`details` with what `attributed` judges a probe's lag by, to 0.1 ms, as every check
    keeps them: the stall that held its request back (`AGENT_HELD`) and the one its answer
    landed just after (`AGENT_RESUMED`), when not 0, rounded up (bounds of the agent's part);
    the target's silence at its timeout (`UNANSWERED`), rounded down."""
    if held_s:
        details[AGENT_HELD] = math.ceil(held_s * 1e4) / 1e4
    if resumed_s:
        details[AGENT_RESUMED] = math.ceil(resumed_s * 1e4) / 1e4
    if silent_s is not None:
        details[UNANSWERED] = math.floor(silent_s * 1e4) / 1e4
    return details


_TIMED = frozenset({"timeout", "latency"})
"""Error classes that say something about time (no answer in time, an answer too slow):
an agent that was not listening cannot vouch for them."""


class LoopLag:
    """How long an event loop was stalled, in all: a heartbeat due every `BEAT_S` adds
    whatever it ran late beyond `SLACK_S`.

    `total()` also counts the lateness of a heartbeat that is due but has not run yet (a
    callback that runs right after a stall runs before the heartbeat does), so the
    difference of two reads is the stall between them, whichever ran first.
    """

    __slots__ = (
        "_backs",
        "_beats",
        "_due",
        "_fresh",
        "_io_first",
        "_last_due",
        "_loop",
        "_ok_at",
        "_prev_due",
        "_read_at",
        "_recovering",
        "stalled",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, *, io_first: bool | None = None) -> None:
        self._loop = loop
        if io_first is None:  # asyncio's own loops run a turn's I/O callbacks before timers
            io_first = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        self._io_first = io_first
        self._last_due = 0.0  # when the last heartbeat that ran was due
        self._prev_due = 0.0  # and the one before it
        self._beats = 0
        self._fresh = False
        """On a loop that runs a turn's timers before its I/O (uvloop): the last heartbeat
        ran in this turn, so an answer read in it may have come before that beat was due."""
        self._due = 0.0  # when the heartbeat is next due; 0: not beating
        self._read_at = 0.0
        self._ok_at = 0.0  # when the heartbeat last ran on time (after a stall: the second)
        self._recovering = False  # a beat ran late, and none on time since
        self.stalled = 0.0
        """Seconds the loop was stalled, counted by heartbeats that ran."""
        self._backs: deque[tuple[float, float]] = deque(maxlen=BACKS)
        """The latest stalls the heartbeat saw: (when each ended, its late beat ran; how
        long it was), oldest first."""

    def total(self) -> float:
        """Seconds stalled so far (read at a probe's start and at its end)."""
        now = self._loop.time()
        self._read_at = now
        due = self._due
        if not due:
            self._ok_at = self._last_due = self._prev_due = now
            self._due = now + BEAT_S
            self._loop.call_at(self._due, self._beat)
            return self.stalled
        late = now - due - SLACK_S
        return self.stalled + late if late > 0 else self.stalled

    def beating(self) -> float | None:
        """`total()`, where the heartbeat is beating (a probe read it at its start); None,
        and not started, where it is not: a request outside probing (`postflight check`)
        measures no stall and gets no heartbeat."""
        return self.total() if self._due else None

    def unattended(self) -> float:
        """How long the loop had not been keeping time when this callback ran: since the
        heartbeat was due after the last one that ran on time. An answer read now waited
        for the agent at most that long (plus `SLACK_S`): a stall still unseen by the
        heartbeat (asyncio runs I/O callbacks before timers), one it has just seen (uvloop
        runs timers first), or a saturated loop, whose every heartbeat runs late while its
        reads wait behind thousands of callbacks."""
        late = self._loop.time() - self._ok_at - BEAT_S
        return late if late > 0.0 else 0.0

    def read_delay(self) -> float | None:
        """The most an answer parsed now (in its I/O callback) can have waited for the
        agent, as measured: the time since the last heartbeat that ran was due. An answer
        that came before then was read in that heartbeat's turn of the loop, before it
        (asyncio runs a turn's I/O callbacks first; on a loop that runs timers first,
        uvloop, an answer read in the beat's own turn is measured from the beat before,
        `_fresh`). A loop that keeps time gives a few ms
        (the time since its last beat); one that stalled, the stall. Measured reading by
        reading (`checks.http` keeps it in a result's details as `agent_delay_s`), it is
        what the overload guard weighs a kept latency by: the fixed worst case (10% +
        15 ms) held a fast service's latency x2 on a mildly busy host, where issue 10's
        live re-run measured 1-6 ms of added delay. None when the heartbeat is not beating
        (nobody read it for `IDLE_S`)."""
        if not self._due:
            return None
        now = self._loop.time()
        if self._io_first:
            since = self._last_due
        else:  # uvloop's clock counts whole milliseconds: the system's, the same clock, not
            now = max(now, time.monotonic())
            since = self._prev_due if self._fresh else self._last_due
        delay = now - since
        return delay if delay > 0.0 else 0.0

    def resumed(self, landed: float, since: float, latency: float) -> float:
        """`resumed_into` for an answer that landed at `landed` for a request that went
        out at `since` (both `time.perf_counter()` values), measured `latency`, the most
        of the latest stalls: one under way as this runs (its heartbeat overdue: it ends
        now, the answer read in the turn that ends it), and the last `BACKS` the heartbeat
        saw (the loop's reading of a big answer stalls it a little again before the last
        bytes land). 0.0 when the heartbeat is not beating (nobody read it for `IDLE_S`)."""
        if not self._due:
            return 0.0
        now = self._loop.time()
        late = now - self._due
        to_loop = now - time.perf_counter()  # the loop's clock may not be perf_counter's
        landed, since = landed + to_loop, since + to_loop
        most = resumed_into(latency, landed, since, now, late) if late > SLACK_S else 0.0
        for end, seconds in self._backs:
            if end >= since:
                most = max(most, resumed_into(latency, landed, since, end, seconds))
        return most

    def _turn_begun(self, beat: int) -> None:
        """A heartbeat's turn of a timers-first loop is over once the next turn's
        `call_soon` callbacks run (before its I/O): called there, `_fresh` ends."""
        self._loop.call_soon(self._turn_over, beat)

    def _turn_over(self, beat: int) -> None:
        if beat == self._beats:
            self._fresh = False

    def _beat(self) -> None:
        now = self._loop.time()
        late = now - self._due
        self._prev_due, self._last_due = self._last_due, self._due
        if not self._io_first:
            self._beats += 1
            self._fresh = True
            self._loop.call_soon(self._turn_begun, self._beats)
        if late > SLACK_S:
            self.stalled += late - SLACK_S
            self._recovering = True
            self._backs.append((now, late))
        elif self._recovering:
            # the first beat on time after a stall: the loop may still be working off
            # what fell due during it (answers that came then are read behind that), so
            # it keeps time again only from the next beat on time
            self._recovering = False
        else:
            self._ok_at = now
        if now - self._read_at > IDLE_S:
            self._due = 0.0
            return
        self._due = now + BEAT_S
        self._loop.call_at(self._due, self._beat)


def stall_explains(waited: float, stalled: float) -> bool:
    """Whether a wait of `waited` seconds that ended without an answer (a timeout) is the
    agent's: its loop was stalled `stalled` seconds meanwhile, more than `AGENT_SHARE` of
    the wait (and `SLACK_S`), so it cannot say the other side did not answer in time."""
    return stalled > max(AGENT_SHARE * waited, SLACK_S)


def resumed_into(
    latency: float, landed: float, since: float, stall_end: float, stall_s: float
) -> float:
    """The part of a `latency` from `since` to `landed` that a stall of the agent's loop
    `stall_s` long, over at `stall_end`, made, when its answer landed just as the loop came
    back (`AGENT_RESUMED` says how that happens); 0.0 when it landed before or during
    the stall (the target's time: its stamp holds none of it), long after it, or the
    stall ended before the request went out. Just after: within a tenth of the latency
    (`AGENT_SHARE`) of the stall's end, at least the heartbeat's resolution (`BEAT_S +
    SLACK_S`), and from `SLACK_S` before it (the heartbeat that saw the stall ran after
    the reads of the turn that ended it).

    Why not every latency a stall overlapped: a demanding user's slow target must still
    count. A 1 s answer whose wait held a 0.3 s stall of the agent's lands on the target's
    own time, 0.4 s after the loop came back, and keeps its 1 s; only an answer landing
    in that short gap after a stall loses its latency by chance (counted, its status kept).
    An answer the stall held back, landed within milliseconds of the loop's return,
    never keeps the stall as the target's latency."""
    if stall_end < since or landed < stall_end - SLACK_S:
        return 0.0
    if landed - stall_end > max(AGENT_SHARE * latency, BEAT_S + SLACK_S):
        return 0.0
    return min(stall_s, stall_end - since)


def unread_answer_explains(waited: float, stalled: float, unattended: float) -> bool:
    """Whether a wait for a provider's answer (a baseline source, not the target) that
    ended without one is the agent's: the probes' rule (`stall_explains`) on the stall in
    all, and on the stall still under way as the wait ended (`LoopLag.unattended`), the
    only one that can have left an answer unread (one that came in an earlier stall was
    read once the loop kept time again).

    Why it is stricter than a probe's (`verdict_on`): the two mistakes cost differently. A
    probe's timeout charged to the target is evidence against the deploy and can roll it
    back, so a probe drops any timeout a stall past a tenth of its wait could have caused,
    wherever the stall fell (before the request went out it left the target less time). A
    provider's timeout charged to the provider costs an alert and an inconclusive round,
    never a rollback; charged to the agent, it silences a provider that hangs: on a machine
    that starves the agent a little in every wait (load 12-16), the probes' rule made every
    fetch of a hung provider the agent's, and on-call was never told. Where a user would
    compare them they agree: the same heartbeat, the same share, a stall still under way as
    the wait ended is the agent's, and a wait with no stall past a tenth is the other
    side's."""
    return stall_explains(waited, min(stalled, unattended))


def verdict_on(
    ok: bool,
    error: str | None,
    latency: float | None,
    waited: float,
    stalled: float,
    late: float,
    bound: float | None = None,
) -> Dropped | None:
    """What of one request's measurement is the agent's (None: nothing), given that the
    agent's loop was stalled `stalled` seconds while it waited `waited` seconds, and that
    its reading of the answer was `late` seconds late at most (see `attributed`); `bound`,
    the `max_latency` a failed latency assertion missed, when known.

    A stall excuses only the part of a latency it explains: a failed `max_latency` still
    past its bound less all of the agent's part (`outlasts_stall`) is the target's, a
    slow service behind a stalled agent (counted, its latency judged as any answer's).
    Without that, a 1 s answer against `max_latency: 100ms` whose wait held a 0.3 s stall
    was dropped as the agent's, the service's slowness unseen."""
    if not ok and error in _TIMED:
        if not stall_explains(waited, stalled):
            return None
        if error != "latency" or not outlasts_stall(latency, bound, max(stalled, late)):
            return "agent_lag"
    if latency is None or late <= max(AGENT_SHARE * latency, SLACK_S):
        return None
    return "agent_lag_latency"


def outlasts_stall(latency: float | None, bound: float | None, agents: float) -> bool:
    """Whether a `latency` is past its `bound` even less `agents`, the most the agent's
    loop can have added to it (its stall, or how late it read or sent the request), and
    the heartbeat's blind spot (`BEAT_S + SLACK_S`, as `least_latency` allows): then
    no stall of the agent's explains the miss. False when either is not known."""
    if latency is None or bound is None:
        return False
    return latency - agents - BEAT_S - SLACK_S > bound


def least_latency(latency: float, delay: float | None = None) -> float:
    """The least the target can have taken for a latency the agent kept while its loop
    was falling behind (`verdict_on`): less `delay`, the most the agent measured its
    own delay to add (`LoopLag.read_delay`, by reading: the guard's window figure is
    `agent.windows.overload.DelayTally.margin`). None, where no measure was kept (a
    load run's requests, an answer read through aiohttp, a window resumed from its
    stored rounds): the worst case, the
    agent's reading late by its allowed share (`AGENT_SHARE`, at least `SLACK_S`) plus
    what the heartbeat cannot see, a loop turn shorter than a late beat (`BEAT_S +
    SLACK_S`). A saturated loop's turns are that long; a target answering in under a
    millisecond then looks ten times slower, so a relative latency rule can only be
    judged past this margin."""
    if delay is not None:
        return latency - delay
    return latency - max(AGENT_SHARE * latency, SLACK_S) - BEAT_S - SLACK_S


def attributed(
    result: CheckResult, stalled: float, unattended: float = 0.0
) -> tuple[CheckResult, Dropped | None]:
    """`result` as evidence of the target, given that the agent's loop was stalled for
    `stalled` seconds while the run went on and had not been listening for `unattended`
    seconds when the run ended (`LoopLag.unattended`); and what was dropped (None: nothing).

    The rule: a measurement is the agent's when the agent's absence exceeds `AGENT_SHARE`
    of the time it rests on (and the agent's resolution, `SLACK_S`). A timeout (or a failed
    latency assertion) rests on the run's whole wait: an agent stalled for more than a
    tenth of it cannot say the target did not answer in time, so the sample is dropped
    (neither ok nor an error), unless the agent saw the target's silence for itself
    (`UNANSWERED`: no byte of an answer in its socket, the timeout after the request went
    out). A latency is inflated by the stall under way when the
    answer came, at most `unattended` (a stall earlier in the wait delays nothing: the
    answer was not there yet), or what the kernel's stamp measured (`AGENT_KERNEL_DELAY`:
    a latency that ends at the answer's arrival holds none of the stall, only the clocks'
    reading), by a stall before the request went out (`AGENT_HELD`: all of it), and by a
    stall the answer landed just after (`AGENT_RESUMED`: all of it, whatever its stamp);
    a larger share than a tenth of it is dropped. A kept one
    may still overstate the target's by the heartbeat's blind spot (`least_latency`).
    An answer's status and body are facts whatever the agent's lateness: they still
    count. Results of several samples (a load check) attribute each request themselves
    (`checks.load`, with `verdict_on`) and are left as they are.
    """
    if stalled <= SLACK_S or len(result.samples) != 1:
        return result, None
    sample = result.samples[0]
    if sample.error == "timeout" and UNANSWERED in result.details:
        return result, None  # the target's silence, seen in the socket: no stall explains it
    latency = sample.latency_s
    waited = result.duration_s
    late = min(unattended, stalled)
    kernel = result.details.get(AGENT_KERNEL_DELAY)
    if isinstance(kernel, int | float):
        late = min(late, kernel)  # the agent's part of the latency, by the kernel's stamp
    held = result.details.get(AGENT_HELD)
    if isinstance(held, int | float):
        late = min(late + held, stalled)  # the request went out late: all of it the agent's
    resumed = result.details.get(AGENT_RESUMED)
    if isinstance(resumed, int | float):
        late = max(late, min(resumed, stalled))  # it landed as the loop came back: the stall's
    bound = result.details.get(LATENCY_BOUND)
    bound = bound if isinstance(bound, int | float) else None
    dropped = verdict_on(sample.ok, sample.error, latency, waited, stalled, late, bound)
    if dropped is None:
        return result, None
    if dropped == "agent_lag":
        why = (
            f"the agent's event loop was stalled {stalled:.3f}s of the"
            f" {waited:.3f}s this run waited"
        )
        return _dropped_run(result, why, "stalled_s", stalled)
    return _dropped_latency(result, "agent_lag", "stalled_s", late)


LATE_START = "agent_late_start"
"""`latency_dropped`'s value for a probe its grid started late (`late_start`)."""


def late_start(result: CheckResult, late: float) -> tuple[CheckResult, Dropped | None]:
    """`result` without its latency when the agent started the probe `late` seconds after
    its moment (past `SLACK_S`; `checks.ticks.Ticks.late_s`): its loop ran it in a bunch
    of its own requests released together, which queued at the target, and the latency
    kept that queue: the target's time, made by the agent (footprint --probe-times: such
    probes written behind up to 24-27 of the agent's own at p95, against 3-4 on time,
    kept a p95 of 5-7 ms against 1-1.3 ms). Its answer counts, unless it failed a latency
    assertion (that failure is the bunch's too: the sample is dropped, as `attributed`
    drops one a stall could have failed); a timeout (a bunch queues for milliseconds, not
    a timeout's seconds), a run without a latency, or of several samples (a load run's
    own), is left as it is."""
    if late <= SLACK_S or len(result.samples) != 1:
        return result, None
    sample = result.samples[0]
    if not sample.ok and sample.error == "latency":
        why = f"the agent started this probe {late:.3f}s late, in a bunch of its own requests"
        return _dropped_run(result, why, "started_late_s", late)
    if sample.latency_s is None or sample.error == "timeout":
        return result, None  # a timeout's wait is its own (`attributed` weighs a stall in it)
    return _dropped_latency(result, LATE_START, "started_late_s", late)


def agents_part(
    result: CheckResult, stalled: float, unattended: float, late: float
) -> tuple[CheckResult, Dropped | None]:
    """`result` as evidence of the target by both rules on the agent's part, with one
    precedence, so that a run both would drop says one reason whatever the machine's load:
    its late start first (`late_start`: measured to the tick before the request went out,
    the bunch's queue is in its latency whatever stall came after), then its stall
    (`attributed`), which judges what the late start leaves: a timeout, which a late start
    never explains. The stall's rule first named a late-started probe a busy host's own
    stall also caught `agent_lag`, where a quiet host named it `agent_late_start`."""
    result, dropped = late_start(result, late)
    if dropped is not None:
        return result, dropped
    return attributed(result, stalled, unattended)


def _dropped_run(
    result: CheckResult, why: str, figure: str, seconds: float
) -> tuple[CheckResult, Dropped]:
    """`result`, a run of one sample, as no probe (the agent's `why` could have failed it):
    no sample, its words and target kept in its message and details, `figure` its
    `seconds` (`attributed`, `late_start`)."""
    message = f"dropped: {why} (agent overloaded; was: {result.message})"
    details = {
        **result.details,
        "dropped": "agent_lag",
        figure: round(seconds, 4),
        "target": result.samples[0].target,
    }
    out = CheckResult(result.check, result.type, True, (), message, result.duration_s, details)
    return out, "agent_lag"


def _dropped_latency(
    result: CheckResult, cause: str, figure: str, seconds: float
) -> tuple[CheckResult, Dropped]:
    """`result`, a run of one sample, whose answer counts but not its latency (the agent's:
    `latency_dropped` names the `cause`, `figure` its `seconds`)."""
    details = {**result.details, "latency_dropped": cause, figure: round(seconds, 4)}
    samples = (without_latency(result.samples[0]),)
    out = CheckResult(
        result.check, result.type, result.ok, samples, result.message, result.duration_s, details
    )
    return out, "agent_lag_latency"


def run_target(result: CheckResult) -> str:
    """The target a run probed: its samples', or where it has none (a run dropped as the
    agent's, `attributed`) what its details say, else `deploy`."""
    if result.samples:
        return result.samples[0].target
    target = result.details.get("target", "deploy")
    return target if isinstance(target, str) else "deploy"


def without_latency(sample: Sample) -> Sample:
    """`sample` as an answer whose latency is the agent's: its status and body still count."""
    return Sample(
        check=sample.check,
        ok=sample.ok,
        latency_s=None,
        status=sample.status,
        error=sample.error,
        bytes=sample.bytes,
        target=sample.target,
    )

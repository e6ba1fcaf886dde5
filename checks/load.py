"""The `load` check: an open-model performance probe at a constant arrival rate.

Requests start on a fixed schedule (`rate`) whether or not earlier ones have
finished, and latency is counted from when each request was due, not from when
it got going, so a slow target cannot hide its slowness by slowing the load
down (no coordinated omission). Past `max_in_flight` a due request is counted
as dropped rather than delayed. Latencies go into an HDR histogram (the
`hdrhistogram` package) for the summary; every request is also a sample for
the judge. What the agent's own stalled event loop made of a request (`checks.lag`) is
the agent's, not the target's: a timeout it could not watch is dropped, a latency it
read late, sent late or held back before the write (a connect waiting for the loop,
`checks.written`) loses its latency (its status counts), each counted in the result's
details.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, PrivateAttr, WithJsonSchema
from yarl import URL

from checks.base import Check, CheckConfig, CheckContext, CheckResult, Sample
from checks.expect import Body, Expect, Expectation
from checks.lag import SLACK_S, Dropped, LoopLag, verdict_on, without_latency
from checks.request import ClientOptions, RequestSpec, prepared, target_url
from checks.ticks import ticks
from common.durations import Duration, PositiveDuration, Share, format_duration
from common.redaction import Redactor
from common.words import counted

if TYPE_CHECKING:  # aiohttp's client (checks.exchange) and hdrh are imported where a check
    # runs: the settings import this module for its Config alone (validate-config, schema)
    import aiohttp

_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*(ms|s|sec|second|m|min|minute|h|hour))?$")
_PER_SECOND = {"ms": 1000.0, "s": 1.0, "sec": 1.0, "second": 1.0}
_PER_SECOND |= {"m": 1 / 60, "min": 1 / 60, "minute": 1 / 60, "h": 1 / 3600, "hour": 1 / 3600}
MAX_RATE = 50_000.0
MAX_REQUESTS = 2_000_000
PERCENTILES = (50.0, 90.0, 95.0, 99.0)
SEND_AHEAD_S = 0.001
"""Requests go out up to one event-loop timer tick (1 ms) before they are due, so the
timer's coarseness does not make every request late and inflate its latency."""


def parse_rate(value: Any) -> float:
    """Requests per second from `20/s`, `1200/m`, `3600/h` or a bare number (per second)."""
    if isinstance(value, bool):
        raise ValueError("expected a rate like 20/s or 1200/m")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        m = _RATE.match(value.strip().lower())
        if m is None:
            raise ValueError(f"{value!r} is not a rate; write it like 20/s, 1200/m or 20")
        rate = float(m.group(1)) * _PER_SECOND[m.group(2) or "s"]
    else:
        raise ValueError("expected a rate like 20/s or 1200/m")
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"a rate must be above 0 and at most {MAX_RATE:g}/s")
    return rate


Rate = Annotated[
    float,
    BeforeValidator(parse_rate),
    PlainSerializer(lambda v: f"{v:g}/s", return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _RATE.pattern},
            ],
            "examples": ["20/s", "1200/m"],
        }
    ),
]
"""Requests per second, written `20/s`, `1200/m` or `20`."""


class LoadPool:
    """A load check's own connections, kept across its runs and closed by `aclose`.

    A pool of its own: a load run must neither queue behind the shared pool's limit
    (that would delay requests) nor starve the health probes. Unbounded, since each
    run holds itself to `max_in_flight` (a round may run the check against the deploy
    and its baseline at once): a run opens the connections its rate needs, and the
    next run finds them open. A session per run instead left every round an aiohttp
    session, connector and their buffers for the garbage collector (RSS +200 MB a
    minute for a dozen 1 s load checks at the daemon's young-GC threshold).

    It lives in the check's config (`LoadCheckConfig`), so the copies a round fits to
    its length (`fit_to_round`) and every window's `EnvironmentProbe` share it. Its
    owner closes it (the agent at its stop, `postflight check` on its way out, a script
    when done): aiohttp has no public way to close a session from a finalizer.
    """

    __slots__ = ("_loop", "_sessions")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def session(self, verify_tls: bool, headers: Any) -> aiohttp.ClientSession:
        """The pool's session for this TLS mode, opened on first use in this loop."""
        import aiohttp  # the client only where a check runs: see the imports

        from checks.silence import Connector  # (the same)
        from checks.written import TRACE

        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new agent in this process: its own connections
            self._loop, self._sessions = loop, {}
        session = self._sessions.get(verify_tls)
        if session is None or session.closed:
            connector = Connector(limit=0, ssl=verify_tls)  # its timeouts' silence
            session = self._sessions[verify_tls] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=headers,
                trust_env=False,
                trace_configs=[TRACE],  # each request's stall before its write: `_agents`
            )
        return session

    def __len__(self) -> int:
        return sum(1 for s in self._sessions.values() if not s.closed)

    async def aclose(self) -> None:
        """Close the connections; a later run opens new ones. Safe to call twice."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    # Not part of what a config is: settings compare, copy and pickle as if it were absent.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoadPool)

    def __hash__(self) -> int:
        return 0

    def __copy__(self) -> LoadPool:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> LoadPool:
        return self

    def __reduce__(self) -> tuple[type[LoadPool], tuple[()]]:
        return LoadPool, ()


class LoadCheckConfig(ClientOptions, CheckConfig, RequestSpec):
    """A `load` check as configured under an environment's `checks:`. `timeout` is per request."""

    type: Literal["load"] = "load"
    rate: Rate = Field(description="Arrival rate: requests start at this pace regardless.")
    duration: PositiveDuration = Field(10.0, description="How long the measured part lasts.")
    warmup: Duration = Field(
        1.0, description="Load sent before measuring (connections, caches); not reported."
    )
    max_in_flight: int = Field(
        100, ge=1, le=10_000, description="Requests open at once; past it, due ones are dropped."
    )
    max_error_rate: Share = Field(
        0.01, description="The run passes while errors and drops stay at or below this."
    )
    expect: Expect = Field(default_factory=Expect)
    _pool: LoadPool = PrivateAttr(default_factory=LoadPool)
    """Shared by copies (`model_copy` keeps private attributes): see `LoadPool`."""

    def requests(self) -> tuple[int, int]:
        """(warm-up requests, measured requests) the schedule holds."""
        warm = math.ceil(self.warmup * self.rate - 1e-9)
        return warm, max(1, round(self.duration * self.rate))


class LoadCheck(Check):
    """One run = `warmup` + `duration` of open-model load; one sample per measured request."""

    type = "load"
    Config = LoadCheckConfig
    background = True
    once_per_round = True
    config: LoadCheckConfig

    def __init__(self, config: LoadCheckConfig) -> None:
        # aiohttp's client only for a check built to run (see the imports), all of it loaded
        # here, before a run: the first probe's clock or the loop-lag count must not see it
        import aiohttp
        import hdrh.histogram  # noqa: F401

        import checks.exchange  # noqa: F401

        super().__init__(config)
        warm, measured = config.requests()
        if warm + measured > MAX_REQUESTS:
            raise ValueError(
                f"load check {config.name!r} would send {warm + measured} requests in one run; "
                f"at most {MAX_REQUESTS}"
            )
        # Prepared once: a run sends thousands of identical requests.
        self.expectation = Expectation(config.expect)
        self.request = prepared(config, config, keep_body=self.expectation.needs_body)
        self.client_timeout = aiohttp.ClientTimeout(total=config.timeout)

    def budget_s(self) -> float:
        cfg = self.config
        return cfg.warmup + cfg.duration + cfg.timeout

    async def run(self, ctx: CheckContext) -> CheckResult:
        cfg = self.config
        url = target_url(cfg, ctx.base_url)
        session = self.pool.session(cfg.verify_tls, ctx.session.headers)
        run = _LoadRun(self, session, url, ctx)
        await run.drive()
        return run.result()

    @property
    def pool(self) -> LoadPool:
        """The connections of this check and of its fitted copies."""
        return self.config._pool

    async def aclose(self) -> None:
        """Close the check's connections (the agent's shutdown does, for its checks)."""
        await self.pool.aclose()


class _LoadRun:
    """The state of one run: the schedule, what is in flight, and what came back."""

    def __init__(
        self, check: LoadCheck, session: aiohttp.ClientSession, url: URL, ctx: CheckContext
    ) -> None:
        from hdrh.histogram import HdrHistogram  # loaded by LoadCheck.__init__: see the imports

        self.check = check
        self.cfg = check.config
        self.session = session
        self.url = url
        self.ctx = ctx
        self.redactor = Redactor(ctx.secrets)
        self.samples: list[Sample] = []
        highest_us = int((self.cfg.timeout + self.cfg.warmup + self.cfg.duration + 60) * 1e6)
        self.latency_us = HdrHistogram(1, highest_us, 3)
        self.latency_sum_us = 0
        """For the mean: hdrh's own `get_mean_value` walks every bucket in pure Python,
        most of a short run's CPU (a load check runs every round)."""
        self.lag_us = HdrHistogram(1, highest_us, 3)
        self.in_flight = 0
        self.dropped = 0
        self.errors: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.first_start = self.last_start = self.last_done = 0.0
        self.sent = 0
        self.first_error: str | None = None
        self.completed = 0
        """Answers received (the histogram holds only the latencies the agent vouches for)."""
        self.lag: LoopLag = ticks().lag
        self.agent_lag = 0
        """Requests dropped as the agent's (`checks.lag`): a timeout its stall could cause."""
        self.agent_lag_latency = 0
        """Answers whose latency was the agent's stall (the answer still counts)."""

    async def drive(self) -> None:
        """Start each request when due; catch up at once if the loop woke late."""
        loop = asyncio.get_running_loop()
        warm, measured = self.cfg.requests()
        total = warm + measured
        interval = 1.0 / self.cfg.rate
        # Due times are kept on loop.time(), the clock asyncio sleeps on; exchange() times
        # with perf_counter(), so due times are shifted onto it for latency.
        to_perf = time.perf_counter() - loop.time()
        t0 = loop.time()
        limit = self.cfg.max_in_flight
        i = 0
        async with asyncio.TaskGroup() as tasks:
            while i < total:
                now = loop.time()
                due = t0 + i * interval
                if due > now + SEND_AHEAD_S:
                    await asyncio.sleep(due - now - SEND_AHEAD_S)
                    continue
                while i < total and due <= now + SEND_AHEAD_S:
                    counted = i >= warm
                    if self.in_flight < limit:
                        self.in_flight += 1
                        tasks.create_task(self._one(due + to_perf, counted))
                    elif counted:
                        self._drop()
                    i += 1
                    due = t0 + i * interval

    def _drop(self) -> None:
        self.dropped += 1
        self.errors["dropped"] += 1
        self.samples.append(
            Sample(check=self.cfg.name, ok=False, error="dropped", target=self.ctx.target)
        )

    async def _one(self, due: float, counted: bool) -> None:
        from checks.exchange import ProbeFailed, exchange  # aiohttp's client: see the imports

        cfg = self.cfg
        sent = time.perf_counter()
        if counted:
            if not self.sent:
                self.first_start = sent
            self.last_start = sent
            self.sent += 1
            self.lag_us.record_value(max(1, int((sent - due) * 1e6)))
        mark = self.lag.total()
        try:
            reply = await exchange(
                self.session,
                self.check.request,
                self.url,
                client_timeout=self.check.client_timeout,
                # Late: count from when it was due, as a user would see it (a start the
                # agent's stall delayed is then dropped: `_agents`). Early, within a timer
                # tick: from when it left.
                started=min(due, sent),
            )
        except ProbeFailed as failed:
            if counted:
                # a timeout the target's silence proves is its own (`checks.silence`)
                own = failed.silent_s is None
                if own and self._agents(False, failed.kind, None, sent, due, mark) == "agent_lag":
                    self.agent_lag += 1
                    return
                self.errors[failed.kind] += 1
                self.first_error = self.first_error or failed.message
                self.samples.append(failed.sample(cfg.name, self.ctx.target))
            return
        finally:
            self.in_flight -= 1
        if not counted:
            return
        self.last_done = time.perf_counter()
        mismatches = self.check.expectation.check(
            reply.status, reply.headers, Body(reply.body), reply.latency_s, self.redactor
        )
        error = mismatches[0].kind if mismatches else None
        sample = reply.sample(cfg.name, error, self.ctx.target)
        dropped = self._agents(
            sample.ok,
            error,
            reply.latency_s,
            sent,
            due,
            mark,
            reply.agent_held_s,
            reply.agent_resumed_s,
            self.check.expectation.max_latency,
        )
        if dropped == "agent_lag":  # too slow (`max_latency`) by the agent's stall
            self.agent_lag += 1
            return
        self.completed += 1
        if error is not None:
            self.errors[error] += 1
            self.first_error = self.first_error or str(mismatches[0])
        self.statuses[reply.status] += 1
        if dropped == "agent_lag_latency":
            self.agent_lag_latency += 1
            self.samples.append(without_latency(sample))
            return
        recorded_us = max(1, int(reply.latency_s * 1e6))
        self.latency_us.record_value(recorded_us)
        self.latency_sum_us += recorded_us
        self.samples.append(sample)

    def _agents(
        self,
        ok: bool,
        error: str | None,
        latency: float | None,
        sent: float,
        due: float,
        mark: float,
        held: float = 0.0,
        resumed: float = 0.0,
        bound: float | None = None,
    ) -> Dropped | None:
        """What of this request's measurement the agent's loop caused (`checks.lag`):
        its stall while the request was out (since `mark`), and for a latency, which
        counts from when the request was due, also how late it went out (this open
        model waits on nothing but the loop, so a late start is the agent's) and the
        stall that held it back once started, before it was written (`held`: a new
        connection's connect waiting for the loop, `checks.written`), or the stall its
        answer landed just after (`resumed`, counted from when it was due:
        `checks.lag.AGENT_RESUMED`)."""
        stalled = self.lag.total() - mark
        late_start = max(0.0, sent - due)
        if stalled <= SLACK_S and late_start <= SLACK_S:
            return None
        waited = time.perf_counter() - sent
        late = min(min(self.lag.unattended(), stalled) + held, stalled) + late_start
        late = max(late, min(resumed, stalled + late_start))
        return verdict_on(ok, error, latency, waited, stalled, late, bound)

    def result(self) -> CheckResult:
        cfg = self.cfg
        _, scheduled = cfg.requests()
        failed = sum(self.errors.values())
        judged = scheduled - self.agent_lag  # the agent's drops are neither ok nor errors
        error_rate = failed / judged if judged else 0.0
        completed = self.completed
        measured = self.latency_us.get_total_count()
        ok_count = completed - sum(v for k, v in self.errors.items() if k in _RESPONSE_ERRORS)
        span = self.last_start - self.first_start
        achieved = (self.sent - 1) / span if self.sent > 1 and span > 0 else float(self.sent)
        busy = self.last_done - self.first_start
        throughput = ok_count / busy if busy > 0 else 0.0
        latency = {f"p{p:g}": _ms(self.latency_us.get_value_at_percentile(p)) for p in PERCENTILES}
        latency["max"] = _ms(self.latency_us.get_max_value())
        latency["mean"] = round(self.latency_sum_us / measured / 1000, 3) if measured else 0.0
        details: dict[str, Any] = {
            "rate": cfg.rate,
            "duration_s": cfg.duration,
            "warmup_s": cfg.warmup,
            "requests": scheduled,
            "sent": self.sent,
            "completed": completed,
            "dropped": self.dropped,
            "errors": failed,
            "error_rate": round(error_rate, 6),
            "errors_by_class": dict(self.errors),
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "achieved_rate": round(achieved, 3),
            "throughput": round(throughput, 3),
            "latency_ms": latency if measured else {},
            "start_lag_ms": {
                "p99": _ms(self.lag_us.get_value_at_percentile(99)),
                "max": _ms(self.lag_us.get_max_value()),
            },
            "hdr_latency_us": _encoded(self.latency_us) if measured else None,
        }
        if self.agent_lag or self.agent_lag_latency:  # counted by `agent.windows.probing`
            details["agent_lag"] = {
                "agent_lag": self.agent_lag,
                "agent_lag_latency": self.agent_lag_latency,
            }
            details["target"] = self.ctx.target
        self._release()
        ok = error_rate <= cfg.max_error_rate
        sent = f"{counted(scheduled, 'request')} at {cfg.rate:g}/s"
        summary = (
            f"{sent} over {format_duration(cfg.duration)}: "
            # as every latency reads (`3.21ms`, `0.312ms`, `104ms`): one decimal of its
            # own read a 0.04 ms p50 `0.0ms`
            f"p50 {format_duration(latency['p50'] / 1000)}"
            f" p99 {format_duration(latency['p99'] / 1000)}, "
            f"{error_rate:.1%} errors ({self.dropped} dropped)"
            if measured
            else f"{sent}: {counted(completed, 'answer')}, none timed by"
            f" the agent (agent overloaded), {self.dropped} dropped"
            if completed
            else f"{sent}: no response, {self.dropped} dropped"
        )
        if not ok:
            summary += f", above the {cfg.max_error_rate:.1%} allowed"
            if self.first_error:
                summary += f"; first error: {self.first_error}"
        return CheckResult(
            check=cfg.name,
            type=self.check.type,
            ok=ok,
            samples=tuple(self.samples),
            message=self.redactor.text(summary),
            details=details,
        )

    def _release(self) -> None:
        """Free the histograms now, not at the next full collection: an hdrh histogram
        and its encoder refer to each other, so each run left ~0.3 MB of ctypes arrays
        in cyclic garbage (a dozen 1 s load checks: +200 MB a minute at the agent's
        young-collection threshold, which counts objects, not bytes)."""
        for histogram in (self.latency_us, self.lag_us):
            histogram.encoder = None


def _encoded(histogram: Any) -> str:
    """`histogram.encode()` (hdrh's V2 wire form: compressed, base64), its varint buffer a
    bytearray: hdrh's is a ctypes array of a new type each call (`c_byte * n`, n from the
    highest value recorded), and a type is a reference cycle (~7 objects a load check
    left for the collector, which the daemon runs rarely)."""
    import base64
    import ctypes
    import zlib

    from hdrh.codec import payload_header_size
    from pyhdrh import encode  # type: ignore[import-not-found]

    encoder, counted = histogram.encoder, histogram.total_count
    payload = encoder.payload
    limit = histogram.get_counts_array_index(histogram.max_value) + 1 if counted else 0
    room = limit * (payload.word_size + 1)  # hdrh's worst case: a byte more a counter
    buffer = bytearray(payload_header_size + room)
    at = ctypes.c_byte.from_buffer(buffer)
    try:
        varints = encode(
            ctypes.addressof(payload.counts),
            limit,
            payload.word_size,
            ctypes.addressof(at) + payload_header_size,
            room,
        )
    finally:
        del at  # the bytearray's export, released
    payload.payload.payload_len = varints
    buffer[:payload_header_size] = bytes(payload.payload)
    compressed = zlib.compress(bytes(buffer[: payload_header_size + varints]))
    encoder.header.length = len(compressed)
    return base64.b64encode(bytes(encoder.header) + compressed).decode("ascii")


_RESPONSE_ERRORS = frozenset({"status", "assertion", "latency"})
"""Error classes of requests that did get a response (and so have a latency)."""


def _ms(us: int) -> float:
    return round(us / 1000, 3)

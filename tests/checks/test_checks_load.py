"""The `load` check, an open model: on schedule, overflow dropped, latency counted from due time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError
from pytest_aiohttp import AiohttpServer
from yarl import URL

from agent.windows.probing import fit_to_round
from checks.base import CheckResult
from checks.load import LoadCheck, LoadCheckConfig, parse_rate
from checks.registry import run_check
from common.durations import format_duration
from tests.checks.check_target import MakeContext, free_port


class Target:
    """A target that counts requests and the most it had open at once."""

    def __init__(self, delay_s: float = 0.0, status: int = 200) -> None:
        self.delay_s = delay_s
        self.status = status
        self.hits = 0
        self.open = 0
        self.max_open = 0

    async def handle(self, _: web.Request) -> web.Response:
        self.hits += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return web.Response(text="ok", status=self.status)
        finally:
            self.open -= 1

    async def start(self, aiohttp_server: AiohttpServer) -> URL:
        app = web.Application()
        app.router.add_get("/", self.handle)
        server = await aiohttp_server(app)
        url: URL = server.make_url("")
        return url


_MADE: list[LoadCheck] = []
"""The checks a test made, closed after it (`closed_checks`) as their owner closes them."""


def load(**fields: Any) -> LoadCheck:
    config = {"name": "feed", "type": "load", "warmup": 0, **fields}
    check = LoadCheck(LoadCheckConfig.model_validate(config))
    _MADE.append(check)
    return check


@pytest.fixture(autouse=True)
async def closed_checks() -> AsyncIterator[None]:
    """A load check's connections are closed by its owner (the agent at its stop, `check`
    on its way out): a check left unclosed leaves aiohttp's unclosed-session warnings."""
    yield
    while _MADE:
        await _MADE.pop().aclose()


async def run(check: LoadCheck, make_ctx: MakeContext, base: URL | str) -> CheckResult:
    return await run_check(check, make_ctx(base))


ATTEMPTS = 3
"""Runs a test may make until the agent kept a latency: a busy machine's scheduler stalls
the agent's loop past its share (`checks.lag`) now and then, and a run whose every latency
was the agent's (each dropped and counted) has no figure to check."""


def kept(result: CheckResult) -> list[float]:
    """The latencies `result` kept (the agent vouched for them)."""
    return [s.latency_s for s in result.samples if s.latency_s is not None]


async def test_steady_run_reports_percentiles_and_one_sample_per_request(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """Every latency is kept but for those the agent's own loop delayed past its share (a
    busy machine's scheduler does that, to most of a run's now and then): dropped and
    counted, never dropped silently; the percentiles are of the kept ones."""
    target = Target()
    base = await target.start(aiohttp_server)
    for _ in range(ATTEMPTS):
        target.hits = 0
        result = await run(load(rate="100/s", duration="500ms"), make_ctx, base)
        assert result.ok, result.message
        assert len(result.samples) == 50 == target.hits
        assert all(s.ok and s.status == 200 for s in result.samples)
        d = result.details
        agents = d.get("agent_lag", {}).get("agent_lag_latency", 0)
        assert len(kept(result)) + agents == 50
        assert d["requests"] == d["sent"] == d["completed"] == 50
        assert d["dropped"] == d["errors"] == 0 and d["error_rate"] == 0
        assert d["status_counts"] == {"200": 50}
        assert result.message.startswith("50 requests at 100/s"), result.message
        if kept(result):
            break
    else:
        raise AssertionError(f"every latency of {ATTEMPTS} runs was dropped as the agent's")
    lat = d["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert lat["max"] == pytest.approx(max(kept(result)) * 1000, rel=0.01)
    assert d["achieved_rate"] > 0 and d["throughput"] > 0
    assert d["hdr_latency_us"]
    assert result.message.startswith("50 requests at 100/s over 500ms: p50 ")


async def test_requests_start_on_schedule_even_when_the_target_is_slow(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """Closed-model tools wait for a response before the next request; this must not."""
    target = Target(delay_s=0.3)
    base = await target.start(aiohttp_server)
    result = await run(load(rate="50/s", duration="400ms"), make_ctx, base)
    assert result.ok, result.message
    assert target.hits == 20
    assert target.max_open >= 5  # one-at-a-time would never have more than one open
    # every latency the agent kept (it drops those its own stalled loop inflated) has the
    # target's 300 ms in it
    assert all(latency >= 0.3 for latency in kept(result)), kept(result)


async def test_overflow_is_dropped_not_delayed(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    target = Target(delay_s=0.5)
    base = await target.start(aiohttp_server)
    result = await run(load(rate="100/s", duration="200ms", max_in_flight=3), make_ctx, base)
    assert target.hits == 3
    assert len(result.samples) == 20
    dropped = [s for s in result.samples if s.error == "dropped"]
    assert len(dropped) == 17 and all(s.latency_s is None for s in dropped)
    d = result.details
    assert d["dropped"] == 17 and d["sent"] == 3 and d["error_rate"] == 0.85
    assert d["errors_by_class"] == {"dropped": 17}
    assert not result.ok
    # (the words around the count differ when a busy agent kept none of the 3 latencies)
    assert "17 dropped" in result.message and "above the 1.0% allowed" in result.message


async def test_requests_due_while_the_agent_stalled_lose_their_latency_not_their_answer(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """Latency counts from when a request was due, but a request that fell due while the
    agent's own loop was stalled went out late because of the agent (this open model waits
    for nothing else): its answer counts, its latency (the stall) is dropped as the
    agent's (`checks.lag`), and the start lag still shows it."""
    target = Target()
    base = await target.start(aiohttp_server)

    async def stall() -> None:
        await asyncio.sleep(0.1)
        time.sleep(0.25)  # noqa: ASYNC251 - blocks the loop on purpose, as a stalled agent would

    check = load(rate="100/s", duration="600ms")
    result, _ = await asyncio.gather(run(check, make_ctx, base), stall())
    assert result.ok, result.message
    # none of the stall's 250 ms is in a latency kept (on a busy machine the agent may
    # keep none: its loop late past its share throughout)
    assert all(latency < 0.2 for latency in kept(result)), kept(result)
    assert result.details["agent_lag"]["agent_lag_latency"] >= 20
    assert len(result.samples) == 60 and all(s.ok for s in result.samples)
    assert result.details["start_lag_ms"]["max"] >= 200
    assert target.hits == 60


async def test_warmup_is_sent_but_not_reported(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    target = Target()
    base = await target.start(aiohttp_server)
    result = await run(load(rate="100/s", warmup="200ms", duration="200ms"), make_ctx, base)
    assert target.hits == 40
    assert len(result.samples) == 20 and result.details["requests"] == 20


async def test_errors_are_counted_by_class(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    target = Target(status=500)
    base = await target.start(aiohttp_server)
    result = await run(load(rate="100/s", duration="200ms"), make_ctx, base)
    assert not result.ok and result.result == "fail"
    assert {s.error for s in result.samples} == {"status"}
    assert result.details["errors_by_class"] == {"status": 20}
    assert result.details["error_rate"] == 1.0
    assert "first error: status: expected 2xx, got 500" in result.message


async def test_a_few_errors_within_max_error_rate_pass(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    target = Target(status=500)
    base = await target.start(aiohttp_server)
    check = load(rate="100/s", duration="200ms", max_error_rate="100%")
    assert (await run(check, make_ctx, base)).ok


async def test_unreachable_target_is_errors_not_a_crash(make_ctx: MakeContext) -> None:
    result = await run(
        load(rate="100/s", duration="100ms"), make_ctx, f"http://127.0.0.1:{free_port()}"
    )
    assert not result.ok and not result.details.get("crashed")
    assert {s.error for s in result.samples} == {"connect"}
    assert result.details["latency_ms"] == {}
    assert "no response" in result.message


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("20/s", 20),
        ("20", 20),
        (20, 20),
        ("1200/m", 20),
        ("3600/h", 1),
        ("0.5/s", 0.5),
        ("5 / min", 5 / 60),
        ("2/ms", 2000),
    ],
)
def test_rates_as_written(text: Any, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["fast", "0/s", "-1", "20/d", True, "999999/s"])
def test_bad_rates_are_refused(text: Any) -> None:
    with pytest.raises(ValidationError, match="rate"):
        LoadCheckConfig.model_validate({"name": "x", "type": "load", "rate": text})


def test_example_config_validates() -> None:
    config = LoadCheckConfig.model_validate(
        {
            "name": "feed-latency",
            "type": "load",
            "path": "/api/feed",
            "rate": "20/s",
            "duration": "10s",
        }
    )
    assert config.rate == 20 and config.duration == 10 and config.requests() == (20, 200)
    assert LoadCheck(config).budget_s() == 1 + 10 + 5
    assert config.model_dump(mode="json")["rate"] == "20/s"


def test_a_run_too_large_is_refused() -> None:
    with pytest.raises(ValueError, match="would send"):
        load(rate="50000/s", duration="1h")


class Connections:
    """A target that tells its client connections apart (aiohttp's handler per connection)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []  # kept alive, so no two connections share an identity

    async def handle(self, request: web.Request) -> web.Response:
        if not any(p is request.protocol for p in self.seen):
            self.seen.append(request.protocol)
        return web.Response(text="ok")

    async def start(self, aiohttp_server: AiohttpServer) -> URL:
        app = web.Application()
        app.router.add_get("/", self.handle)
        server = await aiohttp_server(app)
        url: URL = server.make_url("")
        return url

    def open(self) -> int:
        return sum(1 for p in self.seen if p.transport is not None)


async def test_runs_keep_their_connections_as_rounds_run_the_check(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """Each round runs a copy fitted to its length (`fit_to_round`); the copies share one
    pool, so later runs reuse the connections earlier ones opened, counted at the target."""
    target = Connections()
    base = await target.start(aiohttp_server)
    check = load(rate="40/s", duration="250ms", warmup="100ms")
    per_run = []
    try:
        for _ in range(4):
            before = len(target.seen)
            fitted = fit_to_round(check, 0.3)  # 0.25 s + 50 ms of warm-up: a new copy
            assert fitted is not check
            result = await run(fitted, make_ctx, base)  # type: ignore[arg-type]
            assert result.ok and len(result.samples) == 10, result.message
            per_run.append(len(target.seen) - before)
        # the first run opens what its rate needs; later ones find it open (a session per
        # run opened at least one each: [1, 2, 3, 5] on that code). One of them may meet a
        # stall on a busy machine and need one more at once.
        assert per_run[0] >= 1 and per_run[1:].count(0) >= 2, per_run
        assert len(check.pool) == 1
    finally:
        await check.aclose()


async def test_closing_the_check_closes_its_connections_and_a_later_run_reopens(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    target = Connections()
    base = await target.start(aiohttp_server)
    check = load(rate="40/s", duration="100ms")
    assert (await run(check, make_ctx, base)).ok
    assert target.open() >= 1
    await check.aclose()
    await check.aclose()  # twice is harmless
    for _ in range(100):  # the target sees them closed
        if target.open() == 0:
            break
        await asyncio.sleep(0.02)
    assert target.open() == 0 and len(check.pool) == 0
    again = await run(check, make_ctx, base)
    assert again.ok and target.open() >= 1
    await check.aclose()


def test_the_pool_is_no_part_of_what_a_config_is() -> None:
    """Settings compare, copy and pickle as before; copies share the one pool."""
    import copy
    import pickle

    a = LoadCheckConfig(name="feed", rate=20)
    b = LoadCheckConfig(name="feed", rate=20)
    assert a == b and a._pool is not b._pool
    assert a.model_copy(update={"duration": 0.5})._pool is a._pool
    assert copy.deepcopy(a)._pool is a._pool
    assert pickle.loads(pickle.dumps(a)) == a
    assert "_pool" not in a.model_dump() and "pool" not in str(LoadCheckConfig.model_json_schema())


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_run_leaves_no_garbage_for_the_collector(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """What a run allocated is freed when its result is made, without a collection: the
    daemon collects rarely (`agent.windows.heap`), and hdrh's histograms (~0.3 MB of
    ctypes arrays a run) referred to their encoders and back."""
    import gc

    from hdrh.histogram import HdrHistogram

    base = await Target().start(aiohttp_server)
    check = load(rate="100/s", duration="100ms")
    gc.collect()
    gc.disable()
    encoded = 0
    try:
        # three runs that recorded latencies (encoded their histograms); on a busy machine
        # the agent drops a run's every latency as its own now and then
        for _ in range(3 * ATTEMPTS):
            result = await run(check, make_ctx, base)
            assert result.ok
            encoded += bool(result.details["hdr_latency_us"])
            if encoded == 3:
                break
        assert encoded, "every latency of every run was dropped as the agent's"
        alive = sum(1 for o in gc.get_objects() if isinstance(o, HdrHistogram))
    finally:
        gc.enable()
        await check.aclose()
    assert alive == 0


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_run_s_encoded_latencies_leave_no_ctypes_type_for_the_collector(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """hdrh encodes a histogram through a ctypes array of a new type each time (its length
    from the highest latency), and a type is a reference cycle: each run left ~7 objects
    for the collector. A run's encoding makes none, the histograms' own types aside
    (one length a config, made by the warm run)."""
    import ctypes
    import gc

    array_type = type(ctypes.Array)  # the metaclass of every `c_x * n`
    base = await Target().start(aiohttp_server)
    check = load(rate="100/s", duration="100ms")
    gc.collect()
    gc.disable()
    encoded = 0
    try:
        await run(check, make_ctx, base)  # warm: the histograms' counts type
        before = sum(1 for o in gc.get_objects() if isinstance(o, array_type))
        for _ in range(3 * ATTEMPTS):
            result = await run(check, make_ctx, base)
            encoded += bool(result.details["hdr_latency_us"])
            if encoded == 3:
                break
        assert encoded, "every latency of every run was dropped as the agent's"
        made = sum(1 for o in gc.get_objects() if isinstance(o, array_type)) - before
    finally:
        gc.enable()
        await check.aclose()
    assert made == 0


def test_a_histogram_is_encoded_as_hdrh_encodes_it() -> None:
    """The run's own encoding (`checks.load._encoded`) writes hdrh's wire form byte for
    byte: empty, one value, many, up to the highest trackable, any bound."""
    import random

    from hdrh.histogram import HdrHistogram

    from checks.load import _encoded

    for seed in range(60):
        rnd = random.Random(seed)
        histogram = HdrHistogram(1, int(rnd.choice([61, 125, 3600]) * 1e6), 3)
        for _ in range(rnd.choice([0, 1, 7, 500])):
            value = int(rnd.expovariate(1 / rnd.choice([50, 1e3, 1e5, 5e6]))) + 1
            histogram.record_value(min(value, histogram.highest_trackable_value))
        assert _encoded(histogram) == histogram.encode().decode("ascii"), seed
        assert HdrHistogram.decode(_encoded(histogram)).total_count == histogram.total_count


async def test_a_check_its_owner_closed_leaves_no_connection_and_no_warning(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """Closed (`aclose`) and let go, a load check leaves no connection open at the target
    and nothing for aiohttp to warn of when it is collected."""
    import gc
    import warnings

    target = Connections()
    base = await target.start(aiohttp_server)
    check = LoadCheck(LoadCheckConfig(name="feed", rate="40/s", duration=0.1, warmup=0))
    assert (await run(check, make_ctx, base)).ok and target.open() >= 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await check.aclose()
        del check
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    for _ in range(100):
        if target.open() == 0:
            break
        await asyncio.sleep(0.02)
    assert target.open() == 0


async def _resetting_target() -> tuple[asyncio.Server, str]:
    """A target that starts an answer and resets the connection mid-body."""

    class Reset(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            if b"\r\n\r\n" in data:
                assert isinstance(self.transport, asyncio.Transport)
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                self.transport.abort()

    server = await asyncio.get_running_loop().create_server(Reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("failure", ["refused", "reset"])
@pytest.mark.usefixtures("heap_set_aside")
async def test_a_failing_run_leaves_no_exceptions_for_the_collector(
    make_ctx: MakeContext, failure: str
) -> None:
    """A failed request's exceptions are freed with its result, without a collection:
    aiohttp and aiohappyeyeballs keep the exception they raise in a local of a frame its
    traceback holds, a cycle of ~100 objects per failed request that only the collector
    frees, and the daemon collects rarely (`agent.windows.heap`): against a dead target
    they piled up by the hundred thousand."""
    import gc

    server = None
    if failure == "refused":
        base = f"http://127.0.0.1:{free_port()}"
    else:
        server, base = await _resetting_target()
    check = load(rate="100/s", duration="100ms")
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        for _ in range(3):
            result = await run(check, make_ctx, base)
            assert not result.ok and result.samples
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
        await check.aclose()
        if server is not None:
            server.close()
    assert {s.error for s in result.samples} == {"connect" if failure == "refused" else "protocol"}
    assert alive == 0


async def test_one_request_is_said_in_the_singular(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """A run of one request (2/s for 500ms, a smoke-sized load) read `1 requests at 2/s`;
    a target that does not answer, `1 requests ...: no response`."""
    base = await Target().start(aiohttp_server)
    result = await run(load(rate="2/s", duration="500ms"), make_ctx, base)
    assert result.details["requests"] == 1
    assert result.message.startswith("1 request at 2/s"), result.message
    assert "1 answers" not in result.message
    down = await run(
        load(rate="2/s", duration="500ms"), make_ctx, f"http://127.0.0.1:{free_port()}"
    )
    assert down.message.startswith("1 request at 2/s: no response"), down.message


async def test_a_runs_latencies_are_said_as_the_judge_says_durations(
    aiohttp_server: AiohttpServer, make_ctx: MakeContext
) -> None:
    """The run's summary (a load rule's detail in the API, the alert and the rollback's
    breaches) words its p50 and p99 as every other latency is (`format_duration`: `3.21ms`,
    `0.312ms`, `104ms`), where it wrote one decimal of its own: a 0.04 ms p50 read `0.0ms`,
    a 3.21 ms one `3.2ms` beside the rule's `3.21ms`, a 104 ms p99 `104.0ms`."""
    target = Target(delay_s=0.003)
    base = await target.start(aiohttp_server)
    for _ in range(ATTEMPTS):
        result = await run(load(rate="50/s", duration="200ms"), make_ctx, base)
        if kept(result):
            break
    else:
        raise AssertionError(f"every latency of {ATTEMPTS} runs was dropped as the agent's")
    lat = result.details["latency_ms"]
    p50, p99 = (format_duration(lat[p] / 1000) for p in ("p50", "p99"))
    assert f": p50 {p50} p99 {p99}, " in result.message, (lat, result.message)

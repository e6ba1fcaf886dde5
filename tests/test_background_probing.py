"""Between windows: which checks keep probing, how often, and what is kept."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.logs import log_context
from agent.metrics import Metrics
from agent.retention import StorePruner
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.probing import (
    BACKGROUND_STARTS_PER_S,
    BackgroundProber,
    EnvironmentProbe,
    background_every,
    background_offset,
)
from checks.base import Check, CheckConfig, CheckResult
from checks.sessions import TargetSessions
from tests.ports import free_port
from tests.virtual_clock import VirtualClock, on_clock

CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    lookback: 1h
    background_interval: 30s
    # a background run spreads its burst over one round: short rounds, a short test
    interval: 500ms
    checks:
      - {{name: health, type: http, path: /health}}
      - name: flow
        type: smoke
        steps: [{{name: one, path: /health}}]
      - {{name: feed, type: load, path: /health, rate: 50/s, duration: 200ms, warmup: 0s}}
"""


def settings(url: str = "http://127.0.0.1:9") -> Any:
    return load_settings_text(CONFIG.format(url=url))


def test_http_probes_at_the_background_interval_load_six_times_per_lookback() -> None:
    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    every = {c.name: background_every(c, env) for c in probe.checks}
    assert every == {"health": 30.0, "flow": None, "feed": 600.0}


def test_a_check_type_declares_how_it_is_scheduled_not_its_name() -> None:
    """A plugin opts in by class attributes; the agent never tests type names."""

    class Pinger(Check):
        type = "pinger"
        Config = CheckConfig
        background = True

    class Soak(Pinger):
        type = "soak"
        once_per_round = True

    env = settings().environments["production"]
    ping = Pinger(CheckConfig(name="p", type="pinger"))
    soak = Soak(CheckConfig(name="s", type="soak"))
    assert background_every(ping, env) == 30.0
    assert background_every(soak, env) == 600.0


async def serving(handler: Callable[[web.Request], Awaitable[web.Response]]) -> TestServer:
    """A local target answering GET /health with `handler` (the caller closes it)."""
    app = web.Application()
    app.router.add_get("/health", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_a_background_run_is_stored_and_pruned_once_past_the_lookback(
    store: SqliteStore,
) -> None:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    server = await serving(health)
    sessions = TargetSessions()
    env = settings(str(server.make_url("")).rstrip("/")).environments["production"]
    probe = EnvironmentProbe("production", env, sessions, Metrics())
    try:
        clock = iter([10_000.0, 20_000.0]).__next__
        prober = BackgroundProber({"production": probe}, store, busy=lambda _: False, clock=clock)
        load = next(c for c in probe.checks if c.type == "load")
        health_check = next(c for c in probe.checks if c.type == "http")
        await prober.probe_once("production", probe, load)
        await prober.probe_once("production", probe, health_check)
    finally:
        await probe.close_checks()
        await sessions.aclose()
        await server.close()
    rows = await store.probe_summaries("production", 0, 30_000)
    assert [(name, at) for name, at, _ in rows] == [("feed", 10_000.0), ("health", 20_000.0)]
    # one run is a burst of `probes_per_round` probes, stored as one period
    assert rows[1][2]["ok"] == [1] * env.probes_per_round
    # retention, in the background: the first run (at 10,000 s) is older than the
    # lookback + 1 min at 20,000 s, so no baseline will read it again
    pruner = StorePruner.from_settings(settings(), store, clock=lambda: 20_000.0)
    assert await pruner.prune_once() == (0, 1, 0, 0, 0, 0)
    rows = await store.probe_summaries("production", 0, 30_000)
    assert [(name, at) for name, at, _ in rows] == [("health", 20_000.0)]


def test_environments_start_background_probing_spread_over_the_interval() -> None:
    """Thousands of environments must not start probing in one instant: each starts at a
    fixed fraction of the spread, from its name (the same on every start and replica)."""
    names = [f"env{i:04d}" for i in range(5000)]
    spread = 30.0
    offsets = [background_offset(name, spread) for name in names]
    assert offsets == [background_offset(name, spread) for name in names]
    assert all(0.0 <= o < spread for o in offsets)
    tenths = [0] * 10
    for offset in offsets:
        tenths[int(offset / spread * 10)] += 1
    assert max(tenths) / len(names) < 0.12  # even: 0.1 a tenth
    assert background_offset("production", 0.0) == 0.0


async def test_background_runs_start_at_each_environments_offset() -> None:
    """`run` starts each environment's first background http run at its offset: with two
    environments at 100 a second, within 20 ms of the start, in the offsets' order (load
    checks take turns of their own: `load_turns`). On the prober's own clock (its `sleep`
    and `monotonic`): on the loop's, the two offsets are 9 ms apart, and a busy machine's
    scheduler, pausing the test between the two environments' tasks, swapped them."""
    clock = VirtualClock()
    started: list[tuple[str, float]] = []

    class Recording(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            if not check.once_per_round:
                started.append((name, clock.now))

    env = settings().environments["production"]
    probes = {name: EnvironmentProbe(name, env, TargetSessions(), Metrics()) for name in ("a", "b")}
    prober = on_clock(Recording, probes, clock)
    task = asyncio.create_task(prober.run())
    await clock.advance(0.1, settle=50)
    assert clock.sleepers, "nothing waits on the prober's clock"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    spread = len(probes) / BACKGROUND_STARTS_PER_S
    first = dict(reversed(started))
    assert set(first) == {"a", "b"}
    for name, at in first.items():
        assert at == pytest.approx(background_offset(name, spread))
        assert at < spread
    order_seen = sorted(first, key=first.__getitem__)
    assert order_seen == sorted(first, key=lambda n: background_offset(n, spread))


async def test_failing_background_runs_are_logged_once_then_their_recovery_once(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong base_url (nothing listening) is in the log at the first background run, not
    found at deploy time: one warning with the first failure's message (secrets redacted),
    however many runs fail, and one info line when a server comes up there."""
    port = free_port()  # closed: every probe is refused
    env = settings(f"http://probe:hunter2-secret@127.0.0.1:{port}").environments["production"]
    sessions = TargetSessions()
    # the port stands in for a secret the failure's message contains
    probe = EnvironmentProbe(
        "production", env, sessions, Metrics(), secrets=("hunter2-secret", str(port))
    )
    prober = BackgroundProber({"production": probe}, store, busy=lambda _: False)
    health = next(c for c in probe.checks if c.type == "http")
    server = None
    try:
        with caplog.at_level(logging.INFO, logger="postflight.probing"):
            for _ in range(3):
                await prober.probe_once("production", probe, health)
            failing = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(failing) == 1, caplog.text
            text = failing[0].getMessage()
            assert "production" in text and "health" in text
            assert "cannot connect" in text and "Connection refused" in text
            assert str(port) not in text and "hunter2" not in text  # redacted like a check's
            assert failing[0].environment == "production"  # type: ignore[attr-defined]

            async def ok(request: web.Request) -> web.Response:
                return web.json_response({"status": "ok"})

            app = web.Application()
            app.router.add_get("/health", ok)
            runner = web.AppRunner(app)
            await runner.setup()
            server = runner
            await web.TCPSite(runner, "127.0.0.1", port).start()
            for _ in range(3):
                await prober.probe_once("production", probe, health)
    finally:
        await sessions.aclose()
        if server is not None:
            await server.cleanup()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(warnings) == 1 and len(recovered) == 1, caplog.text
    assert recovered[0].levelno == logging.INFO
    assert "health" in recovered[0].getMessage()
    # every run, failing or not, was still stored for the baseline
    assert len(await store.probe_summaries("production", 0, 2e10)) == 6


async def test_a_load_run_over_its_error_share_is_not_a_target_that_fails(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A load run of 10 requests with one 500 fails its own 1% error share: one failed
    check run, not a failing target; nor is a run the agent's stall dropped whole. The
    log's "background probing failing" is for a target that never answers (a wrong
    base_url), and a live audit of healthy 0.5%-error targets saw it for one load run in
    a dozen (4 of 200 requests). Every request failing still is."""
    answers = iter([500] + [200] * 1000)

    async def feed(request: web.Request) -> web.Response:
        return web.json_response({}, status=next(answers))

    server = await serving(feed)
    sessions = TargetSessions()
    env = settings(str(server.make_url(""))).environments["production"]
    probe = EnvironmentProbe("production", env, sessions, Metrics())
    try:
        prober = BackgroundProber({"production": probe}, store, busy=lambda _: False)
        load = next(c for c in probe.checks if c.once_per_round)
        with caplog.at_level(logging.INFO, logger="postflight.probing"):
            await prober.probe_once("production", probe, load)
            # a run whose every request the agent's own stall dropped: nothing learnt
            dropped = {"agent_lag": {"agent_lag": 10, "agent_lag_latency": 0}}
            prober.note_outcome(
                "production", probe, load, [CheckResult("feed", "load", True, (), details=dropped)]
            )
        stored = await store.probe_summaries("production", 0, 2e10)
        assert stored[0][2]["ok"].count(0) == 1  # the run failed: 1 of its requests
        assert not [r for r in caplog.records if "failing" in r.getMessage()], caplog.text
    finally:
        await probe.close_checks()
        await sessions.aclose()
        await server.close()
    dead = settings(f"http://127.0.0.1:{free_port()}").environments["production"]
    sessions = TargetSessions()
    probe = EnvironmentProbe("production", dead, sessions, Metrics())
    prober = BackgroundProber({"production": probe}, store, busy=lambda _: False)
    try:
        with caplog.at_level(logging.INFO, logger="postflight.probing"):
            load = next(c for c in probe.checks if c.once_per_round)
            await prober.probe_once("production", probe, load)
    finally:
        await probe.close_checks()
        await sessions.aclose()
    assert len([r for r in caplog.records if "failing" in r.getMessage()]) == 1


async def test_the_start_says_which_environments_are_probed_between_windows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = settings("http://probe:hunter2-secret@127.0.0.1:9").environments["production"]
    probes = {"production": EnvironmentProbe("production", env, TargetSessions(), Metrics())}

    class Idle(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            pass

        async def note_changed_checks(self, environments: Sequence[str]) -> None:
            pass

    prober = Idle(probes, store=None, busy=lambda _: False)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="postflight.probing"):
        task = asyncio.create_task(prober.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    [line] = [r.getMessage() for r in caplog.records if "between windows" in r.getMessage()]
    assert "background probing 1 environment between windows" in line, line
    assert "production at http://***@127.0.0.1:9" in line
    assert "health every 30s" in line and "feed every 10m" in line
    assert "flow" not in line  # a smoke check runs only in windows


Seen = Callable[[BackgroundProber, float], None]


async def on_a_grid(
    takes: float, runs: int, at_run: Seen, *, first: float = 0.0, at_sleep: Seen | None = None
) -> None:
    """The http check's background runs on a 30 s grid (`_probe_forever`), `runs` of them,
    on a clock only its sleeps and its runs (`takes` seconds each) move: `at_run(prober,
    now)` as each run starts, `at_sleep` as each sleep does."""
    now = 0.0

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        if at_sleep is not None:
            at_sleep(prober, now)
        now += seconds
        await asyncio.sleep(0)

    class Timed(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            nonlocal now, runs
            at_run(self, now)
            runs -= 1
            if not runs:
                raise asyncio.CancelledError
            now += takes

    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    prober = Timed(
        {"production": probe},
        store=None,  # type: ignore[arg-type]
        busy=lambda _: False,
        clock=clock,
        monotonic=clock,
        sleep=sleep,
    )
    assert prober.next_run("production", "health") is None  # before probing starts
    with contextlib.suppress(asyncio.CancelledError):
        await prober._probe_forever("production", probe, probe.checks[0], 30.0, first=first)


@pytest.mark.parametrize(
    ("takes", "starts"),
    [
        (30.0, [0.0, 30.0, 60.0, 90.0, 120.0]),  # a run as long as the interval (the default)
        (5.0, [0.0, 30.0, 60.0, 90.0, 120.0]),
        (70.0, [0.0, 70.0, 140.0, 210.0, 280.0]),  # overran: the latest slot at once, no burst
    ],
)
async def test_background_runs_keep_the_interval_whatever_a_run_takes(
    takes: float, starts: list[float]
) -> None:
    """Runs start on a grid of `background_interval` (30 s): a run spreads its probes over
    up to a round, and sleeping the interval after each halved the pace (starts 0, 60, 120,
    … for 30 s runs: 65 of the 120 runs an hour the baseline is sized for)."""
    seen: list[float] = []
    await on_a_grid(takes, len(starts), lambda _, now: seen.append(now))
    assert seen == starts


async def test_load_checks_of_many_environments_take_turns_and_never_overlap() -> None:
    """Eight environments start together; their load checks' runs (each up to its
    `budget_s`) never overlap, from the first and for good (`load_turns`): one after
    another at the start, each then on its own grid from its first run, a period a run.
    Before, all eight first runs came at once, and the later ones, on grids placed by a
    hash, overlapped too. On a virtual clock: each sleep wakes in turn, once every task
    waits again."""
    env = settings().environments["production"]
    names = [f"prod-{c}" for c in "abcdefgh"]
    probes = {n: EnvironmentProbe(n, env, TargetSessions(), Metrics()) for n in names}
    runs: dict[str, list[float]] = {n: [] for n in names}
    clock = VirtualClock()

    class Recording(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            if check.name == "feed":
                runs[name].append(clock.now)

        async def note_changed_checks(self, environments: Sequence[str]) -> None:
            return None

    prober = on_clock(Recording, probes, clock)
    task = asyncio.create_task(prober.run())
    await clock.advance(2_500.0, settle=10)  # four periods and more
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    feed = next(c for c in probes["prod-a"].checks if c.name == "feed")
    length = feed.budget_s()  # the longest a run may take
    every = background_every(feed, env)
    assert every == 600.0 and 0 < length < every / 8
    starts = sorted(t for ts in runs.values() for t in ts)
    assert len(starts) >= 8 * 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= length - 1e-9, sorted(gaps)[:5]  # one run at a time
    first_runs = sorted(ts[0] for ts in runs.values())
    assert first_runs[-1] < 8 * length + 1e-9  # all eight within the first minute
    for name, ts in runs.items():  # each on its own grid of the period, from its first run
        assert [b - a for a, b in itertools.pairwise(ts)] == pytest.approx(
            [every] * (len(ts) - 1)
        ), name


async def test_a_slot_that_falls_in_a_window_is_owed_to_its_rounds_once() -> None:
    """While a window probes the environment (from 100 s to 200 s), its background slots
    are not run but owed (`owed_runs`): the window's next round stands in for each, once.
    A slot owed before the window's deploy (a window before's) is not its to take; the
    first slot after the window runs and clears what no round took."""
    now = 0.0
    ran: list[float] = []
    owed: dict[float, dict[str, list[float]]] = {}
    taken: dict[float, list[str]] = {}

    class Counting(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            ran.append(now)
            if now >= 240.0:
                raise asyncio.CancelledError

    async def sleep(seconds: float) -> None:  # after each slot: note, then a round at +5 s
        nonlocal now
        owed[now] = {c: list(at) for c, at in prober.owed.get("production", {}).items()}
        if now in (120.0, 150.0):
            now += 5.0
            taken[now] = prober.owed_runs("production", since=100.0)
            taken[now + 0.1] = prober.owed_runs("production", since=100.0)
            seconds -= 5.0
        now += seconds
        await asyncio.sleep(0)

    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    prober = Counting(
        {"production": probe},
        store=None,  # type: ignore[arg-type]
        busy=lambda _: 100.0 <= now < 200.0,
        clock=lambda: now,
        monotonic=lambda: now,
        sleep=sleep,
    )
    check = probe.checks[0].name
    with contextlib.suppress(asyncio.CancelledError):
        await prober._probe_forever("production", probe, probe.checks[0], 30.0)
    assert ran == [0.0, 30.0, 60.0, 90.0, 210.0, 240.0]
    assert owed[120.0] == {check: [120.0]} and owed[150.0] == {check: [150.0]}
    assert taken == {125.0: [check], 125.1: [], 155.0: [check], 155.1: []}
    assert owed[180.0] == {check: [180.0]}  # no round took it...
    assert owed[210.0] == {}  # ...and the first slot after the window ran, clearing it
    prober.owed["production"] = {check: [180.0]}
    assert prober.owed_runs("production", since=200.0) == []  # the window before's


async def test_the_replica_whose_window_probes_an_environment_takes_its_background_over(
    tmp_path: Any,
) -> None:
    """Two replicas on a shared store: one probes the environment between windows (the
    other's slots find its lease held); when a window opens on the other, that one takes
    the lease at its next slot (its rounds stand in for the runs), and the first stops
    probing at once instead of doubling the window's traffic until its lease lapses."""

    class Shared(SqliteStore):
        shared = True

    store = Shared(tmp_path / "pf.db")
    await store.open()
    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    health = next(c for c in probe.checks if c.type == "http")
    runs: dict[str, list[float]] = {"a": [], "b": []}
    window, stole, b_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def replica(owner: str, busy: Callable[[str], bool]) -> BackgroundProber:
        class Counting(BackgroundProber):
            async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
                runs[owner].append(loop.time())
                if owner == "b":
                    b_ran.set()

            async def _hold(self, name: str, *, steal: bool = False) -> bool:
                held = await super()._hold(name, steal=steal)
                if steal and held:
                    stole.set()
                return held

        return Counting({"production": probe}, store, busy=busy, owner=owner)

    first = replica("a", busy=lambda _: False)
    second = replica("b", busy=lambda _: window.is_set())
    tasks = [asyncio.create_task(first._probe_forever("production", probe, health, 0.05))]
    await asyncio.sleep(0.02)
    tasks.append(asyncio.create_task(second._probe_forever("production", probe, health, 0.05)))
    try:
        await asyncio.sleep(0.5)
        assert len(runs["a"]) >= 2 and runs["b"] == [], runs  # a holds it; b's slots skip
        window.set()  # a window opens on b
        await asyncio.wait_for(stole.wait(), 10)  # b's next slot: it took the lease
        taken = loop.time()
        await asyncio.sleep(0.5)
        # a stopped (one run at most, whose lease a took as b's steal was under way)
        assert len([t for t in runs["a"] if t > taken]) <= 1, runs
        assert runs["b"] == []  # b's window's rounds stand in for its runs
        assert second.owed_runs("production", since=0.0) == [health.name]
        window.clear()
        await asyncio.wait_for(b_ran.wait(), 10)  # between windows b goes on, holding it
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()


async def test_a_background_runs_log_lines_name_its_environment(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between windows a check's crash or a target's failure is logged from the background
    run's task: its JSON lines carry `environment` as a window's do (they had none)."""
    env = settings().environments["production"]
    sessions = TargetSessions()
    probe = EnvironmentProbe("production", env, sessions, Metrics())
    prober = BackgroundProber({"production": probe}, store, busy=lambda _: False)
    seen: list[dict[str, str] | None] = []
    ran = asyncio.Event()

    async def run_round(*args: Any, **kwargs: Any) -> list[CheckResult]:
        seen.append(log_context.get())
        ran.set()
        return []

    monkeypatch.setattr(probe, "run_round", run_round)
    health = next(c for c in probe.checks if c.type == "http")
    task = asyncio.create_task(prober._probe_forever("production", probe, health, every=0.01))
    try:
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sessions.aclose()
    assert seen[0] == {"environment": "production"}
    assert log_context.get() is None  # the background task's, not its caller's


async def test_a_run_a_window_owes_and_no_round_took_is_run_as_the_window_ends() -> None:
    """A window (100 s to 160 s) whose start cut a run in flight (here, or on another
    replica: `agent.windows.in_flight.owe`) owes it beside the slots that fall in it (120
    s, 150 s): its two rounds stand in for two, one each, and the third is run at once as
    the window ends (160 s), not at the next slot. Before, the slot at 120 s was taken as
    the cut run (one owed per check), and what no round took was dropped: one run fewer
    for every run a window's start cut (ran 0, 30, 60, 90, 180, 210)."""
    now = 0.0
    ran: list[float] = []
    taken: dict[float, list[str]] = {}

    class Counting(BackgroundProber):
        async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
            ran.append(now)
            if now >= 210.0:
                raise asyncio.CancelledError

    async def sleep(seconds: float) -> None:
        nonlocal now
        until = now + seconds
        if now == 90.0:  # the window starts, cutting a run in flight
            now = 100.0
            prober.owe("production", check, 100.0)
        elif now == 120.0:
            now = 130.0
            taken[now] = prober.owed_runs("production", since=100.0)
        elif now == 150.0:
            now = 155.0
            taken[now] = prober.owed_runs("production", since=100.0)
            now = 160.0
            prober.window_ended("production")
            await asyncio.Event().wait()  # woken by the window's end, not by the clock
        now = until
        await asyncio.sleep(0)

    env = settings().environments["production"]
    probe = EnvironmentProbe("production", env, TargetSessions(), Metrics())
    prober = Counting(
        {"production": probe},
        store=None,  # type: ignore[arg-type]
        busy=lambda _: 100.0 <= now < 160.0,
        clock=lambda: now,
        monotonic=lambda: now,
        sleep=sleep,
    )
    check = probe.checks[0].name
    with contextlib.suppress(asyncio.CancelledError):
        await prober._probe_forever("production", probe, probe.checks[0], 30.0)
    assert taken == {130.0: [check], 155.0: [check]}
    assert ran == [0.0, 30.0, 60.0, 90.0, 160.0, 180.0, 210.0]
    assert not any(prober.owed.values())  # nothing left owed


async def test_next_run_says_when_a_checks_next_background_run_starts() -> None:
    """`next_run` (what registration tells a relative rule with no baseline yet): the first
    run's start, `first` seconds from the prober's start, then each slot's on the grid; a
    run's own while it runs (its start: past). None for a check not probed here."""
    waits: list[tuple[float, float | None]] = []
    during: list[float | None] = []

    def next_health(prober: BackgroundProber) -> float | None:
        assert prober.next_run("production", "another") is None
        return prober.next_run("production", "health")

    await on_a_grid(
        10.0,
        3,
        lambda prober, _: during.append(next_health(prober)),
        first=5.0,
        at_sleep=lambda prober, now: waits.append((now, next_health(prober))),
    )
    assert waits == [(0.0, 5.0), (15.0, 35.0), (45.0, 65.0)]
    assert during == [5.0, 35.0, 65.0]

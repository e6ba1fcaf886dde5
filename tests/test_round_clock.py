"""A window's rounds are paced by the monotonic clock within a process: a wall clock stepped
forward (an NTP step) neither runs rounds early nor ends the window with fewer rounds than
it promised. A restarted agent says its first round resumed after its downtime, not that
the round overran its slot by it; a round really slower than its slot is still logged.

The agent's wall clock is a fake one (the real one plus an offset the test steps, as
`bench/clock_offset.py` does to a daemon); rounds are counted in the store and at the
target, not from the agent's own bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.analysis.judge import Judge
from agent.app import WATCHER, build_app
from agent.records import DeployWindow, RoundRecord
from agent.settings_file import load_settings_text
from agent.store.base import Store
from agent.store.sqlite import SqliteStore
from agent.windows import lifecycle
from agent.windows.pace import SteadyClock
from tests.e2e.conftest import LocalTarget, slow_rounds

WINDOW_S = 3.0
INTERVAL_S = 0.3
SLOTS = 10


class CountingTarget(LocalTarget):
    """Counts the probes that reach it (the truth from outside the agent)."""

    def __init__(self) -> None:
        super().__init__()
        self.probes = 0
        self.before_restart = 0
        self.failing = False
        self.healthy_first = 0
        """How many probes answer ok before a failing target fails."""

    async def health(self, request: web.Request) -> web.Response:
        self.probes += 1
        if self.failing and self.probes > self.healthy_first:  # a bad deploy: checks fail
            return web.json_response({"status": "down"}, status=500)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)


@pytest.fixture
async def target() -> AsyncIterator[CountingTarget]:
    t = CountingTarget()
    await t.start()
    yield t
    await t.stop()


class SteppedClock:
    """The wall clock plus `offset`: `step` moves it as an NTP step does (the monotonic
    clock, which asyncio's sleeps follow, is left alone)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds


def settings_for(target: CountingTarget, db: Path | str, window_s: float = WINDOW_S) -> str:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    return f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "{url}"}}
environments:
  production:
    base_url: {target.url}
    window: {window_s}s
    interval: {INTERVAL_S}s
    background_interval: 1h
    probes_per_round: 1
    analysis: {{policy: threshold, failure_limit: 2}}
    checks:
      - {{name: health, type: http, path: /health, timeout: 1s}}
    rules:
      - {{name: errors, source: checks, metric: error_rate, max: 0.05}}
"""


async def run_agent(
    config: str,
    clock: Callable[[], float],
    until: Callable[[], Awaitable[bool]],
    *,
    background_probing: bool = False,
) -> None:
    """Run the agent (watcher and store, no HTTP listener) until `until()` is true."""
    app = build_app(
        load_settings_text(config),
        clock=clock,
        poll_interval=0.05,
        background_probing=background_probing,
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        async with asyncio.timeout(30):
            while True:  # the store is read, as a user would, not the agent's own state
                if await until():
                    break
                await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()


def new_window(at: float, window_s: float = WINDOW_S) -> DeployWindow:
    return DeployWindow(
        "dep_clock", "production", "v2", "v1", None, {}, "watching", at, at + window_s, at
    )


async def stored(db: Path | str) -> tuple[DeployWindow | None, list[RoundRecord]]:
    store = open_store(db)
    await store.open()
    try:
        return await store.get_window("dep_clock"), await store.rounds("dep_clock")
    finally:
        await store.close()


async def test_a_wall_clock_stepped_forward_neither_skips_rounds_nor_ends_the_window_early(
    tmp_path: Path, target: CountingTarget
) -> None:
    db = tmp_path / "postflight.db"
    clock = SteppedClock()
    checked = SqliteStore(db)
    await checked.open()
    created = stepped = False

    async def ended() -> bool:
        nonlocal created, stepped
        if not created:
            # registered once the agent runs: a start slower than a slot (a loaded
            # machine) would pass its first slots over before any step
            await checked.create_window(new_window(clock()))
            created = True
        window = await checked.get_window("dep_clock")
        assert window is not None
        if not stepped and window.rounds >= 2:
            clock.step(2.0)  # an NTP step two thirds of the window ahead
            stepped = True
        return window.state != "watching"

    try:
        await run_agent(settings_for(target, db), clock, ended)
    finally:
        await checked.close()
    window, rounds = await stored(db)
    assert window is not None and window.state == "passed", window
    slots = [r.summary["slot"] for r in rounds]
    # every slot ran, one after the other (a busy machine may pass one over now and then);
    # before, the step jumped to the slots 2 s ahead and the window ended at once, on 5
    # rounds of its 10 (slots 0, 1, 2, 8, 9)
    assert len(rounds) >= SLOTS - 1 and slots[-1] == SLOTS - 1, slots
    assert slots == sorted(set(slots))
    assert target.probes == len(rounds)  # one probe a round, counted at the target


async def test_a_window_registered_after_a_step_runs_on_the_stepped_clock(
    tmp_path: Path, target: CountingTarget
) -> None:
    # a clock stepped 2 minutes forward while the agent idles (an NTP step correcting a
    # slow clock, a VM resumed): a window registered then, by that clock, runs at once,
    # where a pace read once a process would hold it 2 minutes as if scheduled ahead
    db = tmp_path / "postflight.db"
    clock = SteppedClock()
    checked = SqliteStore(db)
    await checked.open()
    created = False

    async def ended() -> bool:
        nonlocal created
        if not created:
            clock.step(120.0)
            await checked.create_window(new_window(clock()))
            created = True
        window = await checked.get_window("dep_clock")
        return window is not None and window.state != "watching"

    try:
        await run_agent(settings_for(target, db), clock, ended)
    finally:
        await checked.close()
    window, rounds = await stored(db)
    assert window is not None and window.state == "passed", window
    assert len(rounds) >= SLOTS - 1 and target.probes == len(rounds)


def open_store(db: Path | str) -> Store:
    if isinstance(db, Path):
        return SqliteStore(db)
    from agent.store.postgres import PostgresStore

    return PostgresStore(db)


async def test_a_replica_whose_clock_is_ahead_paces_the_rounds_by_the_stores_clock(
    pg_url: str, target: CountingTarget
) -> None:
    # a replica 2 s ahead of the others (and of PostgreSQL) takes a window just registered
    # by another: by its own clock, 2 s of the window's 3 had passed
    store = open_store(pg_url)
    await store.open()
    clock = SteppedClock()
    clock.step(2.0)
    created = False

    async def ended() -> bool:
        nonlocal created
        if not created:  # as the agent runs: its start is no part of the window
            await store.create_window(new_window(time.time()))
            created = True
        window = await store.get_window("dep_clock")
        return window is not None and window.state != "watching"

    try:
        await run_agent(settings_for(target, pg_url), clock, ended)
    finally:
        await store.close()
    window, rounds = await stored(pg_url)
    assert window is not None and window.state == "passed", window
    slots = [r.summary["slot"] for r in rounds]
    # before, its first round was a slot 2 s on and the window ended on 3 rounds of its 10
    assert len(rounds) >= SLOTS - 1 and slots[0] <= 1 and slots[-1] == SLOTS - 1, slots
    assert target.probes == len(rounds)


async def restart_after(
    tmp_path: Path,
    target: CountingTarget,
    caplog: pytest.LogCaptureFixture,
    down_s: float,
    failure_limit: int = 2,
) -> list[str]:
    """Run a window for 2 rounds, stop the agent, let `down_s` pass (by its wall clock),
    and start it again until the window ends: what the watch logged after the restart."""
    db = tmp_path / "postflight.db"
    clock = SteppedClock()
    store = SqliteStore(db)
    await store.open()
    await store.create_window(new_window(clock()))
    await store.close()
    checked = SqliteStore(db)
    await checked.open()
    config = settings_for(target, db).replace("failure_limit: 2", f"failure_limit: {failure_limit}")

    async def two_rounds() -> bool:
        window = await checked.get_window("dep_clock")
        return window is not None and window.rounds >= 2

    async def ended() -> bool:
        window = await checked.get_window("dep_clock")
        return window is not None and window.state != "watching"

    try:
        await run_agent(config, clock, two_rounds)
        clock.step(down_s)  # the agent was down this long
        caplog.clear()
        target.before_restart = target.probes
        await run_agent(config, clock, ended)
    finally:
        await checked.close()
    return [r.getMessage() for r in caplog.records if r.name == "postflight.window"]


@pytest.fixture
def window_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="postflight.window")
    # enabled: an earlier test may have run a tool that disables existing loggers
    monkeypatch.setattr(logging.getLogger("postflight.window"), "disabled", False)


@pytest.mark.usefixtures("window_log")
async def test_a_restart_after_the_windows_end_logs_its_downtime_not_an_overrun(
    tmp_path: Path, target: CountingTarget, caplog: pytest.LogCaptureFixture
) -> None:
    said = await restart_after(tmp_path, target, caplog, down_s=600.0)
    # before: "round 3 overran its 0.3s slot by 597.800s"
    assert not [m for m in said if "overran" in m], said
    resumed = [m for m in said if "resumed after" in m]
    assert len(resumed) == 1, said
    # before: "round 3 resumed after 602.0s down", read as the agent's downtime (600 s)
    down = re.search(
        r"round 3 resumed after the window went unwatched for ([0-9.]+)s since round 2 ended",
        resumed[0],
    )
    assert down is not None and 595 <= float(down.group(1)) <= 610, resumed
    assert "the window ended meanwhile" in resumed[0]
    window, rounds = await stored(tmp_path / "postflight.db")
    assert window is not None and window.state != "watching" and len(rounds) == 3
    # the late last round probed nothing: the window is judged on what happened within it
    assert target.probes == target.before_restart


@pytest.mark.usefixtures("window_log")
@pytest.mark.parametrize(
    ("failing", "healthy_first"),
    [(True, 1), (True, 0), (False, 0)],
    ids=["bad-deploy", "all-failing", "good-deploy"],
)
async def test_a_window_that_ended_unwatched_passes_no_rule_still_past_its_bound(
    tmp_path: Path,
    target: CountingTarget,
    caplog: pytest.LogCaptureFixture,
    failing: bool,
    healthy_first: int,
) -> None:
    """A bad deploy's probe passes in round 1 and fails in round 2 (a streak short of
    `failure_limit` 5), then the agent is down until past the window's end: it is
    inconclusive, not passed (missing rounds are missing evidence); a good deploy still
    passes. Before, the bad one passed "on the rounds it had" (`bench/ha_faults.py` seed
    704: 2 deploys, each all failures, passed after a replica holding them was killed).
    One whose every probe failed is inconclusive by the judge itself: no round showed it
    within its bound."""
    target.failing, target.healthy_first = failing, healthy_first
    said = await restart_after(tmp_path, target, caplog, down_s=600.0, failure_limit=5)
    window, rounds = await stored(tmp_path / "postflight.db")
    assert window is not None and len(rounds) == 3, said
    assert target.before_restart == 2 and target.probes == 2  # counted at the target
    if not failing:
        assert window.state == "passed", window.verdict
        return
    assert window.state == "inconclusive", window.verdict
    assert window.verdict is not None
    [rule] = window.verdict["rules"]
    assert rule["outcome"] == "inconclusive", rule
    if not healthy_first:
        # said first, past its bound (`tests/analysis/test_unproven_reason.py`)
        reason = window.verdict["reason"]
        assert reason.startswith("errors: error_rate 100% past max 5% in each of the"), reason
        assert reason.endswith("short of the evidence to fail (2 of 5 rounds needed)"), reason
        return
    assert "went unwatched" in window.verdict["reason"], window.verdict["reason"]
    assert rule["evidence"]["unwatched_slots"] > 0, rule


@pytest.mark.usefixtures("window_log")
async def test_a_restart_within_the_window_logs_its_downtime(
    tmp_path: Path, target: CountingTarget, caplog: pytest.LogCaptureFixture
) -> None:
    # restarted at once, within the window: the rounds go on at the slot of now
    db = tmp_path / "postflight.db"
    said = await restart_after(tmp_path, target, caplog, down_s=0.0)
    assert not [m for m in said if "overran" in m], said
    assert [m for m in said if "round 3 resumed after" in m], said
    _, rounds = await stored(db)
    assert len(rounds) >= 3


@pytest.mark.usefixtures("window_log")
async def test_a_slow_round_after_a_restart_is_still_logged_as_an_overrun(
    tmp_path: Path,
    target: CountingTarget,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = tmp_path / "postflight.db"
    clock = SteppedClock()
    store = SqliteStore(db)
    await store.open()
    await store.create_window(new_window(clock()))
    await store.close()
    checked = SqliteStore(db)
    await checked.open()
    config = settings_for(target, db)

    async def two_rounds() -> bool:
        window = await checked.get_window("dep_clock")
        return window is not None and window.rounds >= 2

    async def ended() -> bool:
        window = await checked.get_window("dep_clock")
        return window is not None and window.state != "watching"

    try:
        await run_agent(config, clock, two_rounds)
        caplog.clear()
        slow_rounds(monkeypatch, 0.5)  # each round's checks now take 0.5 s past a 0.3 s slot
        await run_agent(config, clock, ended)
    finally:
        await checked.close()
    said = [r.getMessage() for r in caplog.records if r.name == "postflight.window"]
    overran = [m for m in said if "overran" in m]
    assert len(overran) == 1, said
    assert "overran its 0.3s slot by 0." in overran[0], overran


def test_the_pace_follows_the_stores_clock_only_on_a_reading_it_can_trust() -> None:
    mono = [100.0]
    pace = SteadyClock(lambda: 5000.0, lambda: mono[0])
    assert pace() == 5000.0 and not pace.anchored
    mono[0] = 101.0
    assert pace() == 5001.0  # moved on by the monotonic clock alone
    # a slow round trip (a busy pool) says too little: not followed
    assert not pace.anchor(5003.0, sent=100.5, answered=101.0) and not pace.anchored
    # within the tolerance: followed in name (watches share it), not moved back and forth
    assert not pace.anchor(5001.05, sent=100.99, answered=101.01) and pace.anchored
    assert pace() == 5001.0
    # the store is 2 s ahead of this machine's clock: the pace goes by the store's
    assert pace.anchor(5003.0, sent=100.99, answered=101.01)
    assert pace() == pytest.approx(5003.0)


def test_a_reading_and_a_watchs_pace_go_by_the_stores_clock_once_it_is_followed() -> None:
    """`now_or` (a registration's stamp, `busy`) and `for_a_watch` (a watch's rounds):
    this replica's own clock until the store's is followed, the store's from then on."""
    mono = [100.0]
    wall = [5000.0]
    pace = SteadyClock(lambda: wall[0], lambda: mono[0])
    wall[0] = 7000.0  # this replica's clock stepped since the pace was read
    assert pace.now_or(lambda: wall[0]) == 7000.0
    own = pace.for_a_watch(lambda: wall[0], lambda: mono[0])
    assert own is not pace and own() == 7000.0
    assert pace.anchor(6000.0, sent=100.0, answered=100.0) and pace.anchored
    mono[0] = 101.0
    assert pace.now_or(lambda: wall[0]) == 6001.0
    assert pace.for_a_watch(lambda: wall[0], lambda: mono[0]) is pace
    assert own() == 7001.0  # a watch started before keeps its own


async def test_a_replica_whose_clock_is_behind_stops_background_runs_when_the_window_opens(
    pg_url: str, target: CountingTarget
) -> None:
    """A window's rounds begin at its `deployed_at` by the store's clock; the background
    runs, the baseline of later windows, stop then too (`busy`). By a replica's own clock
    3 s behind, they went on probing the new release for 3 s beside its rounds, stored as
    runs before its deploy: pooled into the next window's baseline, never left out as a
    failed release's."""

    config = settings_for(target, pg_url).replace(
        "background_interval: 1h", "background_interval: 200ms"
    )
    store = open_store(pg_url)
    await store.open()
    deployed_at = time.time() + 1.0
    await store.create_window(new_window(deployed_at))
    clock = SteppedClock()
    clock.step(-3.0)
    conn = await asyncpg.connect(pg_url)
    marks = [deployed_at + 0.5, deployed_at + 2.5]  # the window's rounds, then 2 s more
    counts: list[int] = []

    async def counted() -> bool:
        """The background runs stored, as each mark passes (by the real clock)."""
        if len(counts) < len(marks) and time.time() >= marks[len(counts)]:
            counts.append(await conn.fetchval("SELECT count(*) FROM probe_summaries"))
        return len(counts) == len(marks)

    try:
        await run_agent(config, clock, counted, background_probing=True)
    finally:
        await conn.close()
        await store.close()
    assert counts[0] > 0, "no background run before the window opened"
    assert counts[1] - counts[0] <= 1, counts


async def test_a_replica_whose_clock_is_ahead_stamps_a_registration_by_the_stores_clock(
    pg_url: str, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API stamps `deployed_at` by the clock the rounds are paced by. By a replica's
    own clock 3 s ahead of PostgreSQL's (and of the other replicas'), a window registered
    there began 3 s late by the clock its rounds follow: its first 3 s went unwatched."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3.0)  # this replica's wall clock
    config = load_settings_text(settings_for(target, pg_url, window_s=60.0))
    app = build_app(config, clock=time.time, poll_interval=0.05, background_probing=False)
    async with TestClient(TestServer(app)) as client:
        pace = app[WATCHER].services.pace
        async with asyncio.timeout(10):
            while True:  # the watcher's first claim pass reads the store's clock
                if pace.anchored:
                    break
                await asyncio.sleep(0.02)
        sent = real()
        answer = await client.post(
            "/v1/deploys",
            json={"environment": "production", "version": "v2"},
            headers={"Authorization": "Bearer tok-1234567890abcdef"},
        )
        body = await answer.json()
        answered = real()
    assert answer.status == 201, body
    deployed_at = datetime.fromisoformat(body["deployed_at"]).timestamp()
    # PostgreSQL runs on this machine: its clock is the real one (before, sent + 3 s)
    assert sent - 1.0 <= deployed_at <= answered + 0.5, (sent, deployed_at, answered)


async def test_a_window_registered_after_its_start_is_judged_on_the_rounds_that_run(
    tmp_path: Path, target: CountingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered 4.35 s into its 9 s window of 0.3 s slots, a window runs slots 14 to 29
    at most (`RoundSchedule.next_slot` passes over those already past): its judge was told
    the whole window's 30 rounds, a detector threshold and a 'can detect' for rounds that
    never run. It is told 16, and told 16 again by the agent that resumes the window after
    a stop (worked out from the stored registration, not from when a watch starts)."""
    horizons: list[int] = []

    class Told(Judge):  # the real judge; what the watch tells it is kept
        def __init__(self, *args: Any, horizon: int = 0, **kwargs: Any) -> None:
            horizons.append(horizon)
            super().__init__(*args, horizon=horizon, **kwargs)

    monkeypatch.setattr(lifecycle, "Judge", Told)
    db = tmp_path / "postflight.db"
    clock = SteppedClock()
    store = SqliteStore(db)
    await store.open()
    now = clock()
    late = DeployWindow(
        "dep_clock", "production", "v2", "v1", None, {}, "watching", now - 4.35, now + 4.65, now
    )
    await store.create_window(late)
    config = settings_for(target, db, window_s=9.0)

    async def two_rounds() -> bool:  # or ended: a loaded machine's start fails the test, no hang
        window = await store.get_window("dep_clock")
        return window is not None and (window.rounds >= 2 or window.state != "watching")

    async def ended() -> bool:
        window = await store.get_window("dep_clock")
        return window is not None and window.state != "watching"

    try:
        await run_agent(config, clock, two_rounds)
        told_first = list(horizons)
        await run_agent(config, clock, ended)
        rounds = await store.rounds("dep_clock")
    finally:
        await store.close()
    assert told_first == [16], horizons
    assert horizons == [16, 16], horizons  # the resumed watch's judge, told the same
    slots = [r.summary["slot"] for r in rounds]
    assert 2 <= len(rounds) <= 16 and all(s >= 14 for s in slots), slots

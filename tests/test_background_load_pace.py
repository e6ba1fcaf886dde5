"""README: between windows `load` checks run six times per `lookback`, each on a fixed
grid, taking turns with the other environments' load checks. That holds from the start:
each check's second run comes a whole period after its first. Before, the turns put a
lone load check's second run one budget (warm-up + duration + timeout) after its first,
so it ran once more than it should in its first lookback (7 of 6, counted at the target),
and the grids of a 10-minute and a 5-minute period on the same instants.

On a virtual clock for the schedule (each sleep wakes in turn, once every task waits on
it again); the runs themselves are real where the target counts them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.probing import BackgroundProber, EnvironmentProbe, background_every
from checks.base import Check
from checks.sessions import TargetSessions
from tests.virtual_clock import VirtualClock, on_clock

LOAD_ONLY = """
server: {{api_tokens: [tok-1234567890abcdef]}}
environments:
  production:
    base_url: {url}
    checks:
      - {{name: feed, type: load, path: /load, rate: 50/s, duration: 200ms, warmup: 0s}}
"""
"""The defaults a user gets (lookback 1h, background_interval 30s: a load run every 10
minutes), with a short run so the test is quick."""


async def test_a_load_check_runs_six_times_in_its_first_lookback_counted_at_the_target(
    store: SqliteStore,
) -> None:
    clock = VirtualClock()
    heard: list[float] = []  # the (virtual) time of each request the target answered

    async def load(request: web.Request) -> web.Response:
        heard.append(clock.now)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/load", load)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sessions = TargetSessions()
    url = str(server.make_url("")).rstrip("/")
    env = load_settings_text(LOAD_ONLY.format(url=url)).environments["production"]
    probe = EnvironmentProbe("production", env, sessions, Metrics())
    (feed,) = probe.checks
    every = background_every(feed, env)
    assert every == 600.0 and env.lookback == 3600.0
    prober = BackgroundProber(
        {"production": probe},
        store,
        busy=lambda _: False,
        clock=lambda: 1_800_000_000.0 + clock.now,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    task = asyncio.create_task(prober.run())
    try:
        await clock.run_until(env.lookback - 1e-6, tasks=1)  # the first lookback: [0, 1 h)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await feed.aclose()  # type: ignore[attr-defined]
        await sessions.aclose()
        await server.close()
    per_run = sum(feed.config.requests())  # type: ignore[attr-defined]
    runs = sorted(set(heard))
    assert runs == [0.0, 600.0, 1200.0, 1800.0, 2400.0, 3000.0]  # before: 0, 16, 616, …
    assert len(heard) == 6 * per_run


class Recording(BackgroundProber):
    """A prober whose runs only note when they started."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: dict[str, list[float]] = {}

    async def probe_once(self, name: str, probe: EnvironmentProbe, check: Check) -> None:
        self.runs.setdefault(name, []).append(self.monotonic())

    async def note_changed_checks(self, environments: Sequence[str]) -> None:
        return None


async def test_load_checks_of_other_periods_keep_a_period_between_runs_and_never_overlap() -> None:
    """An environment looking back an hour (a load run every 10 minutes) and one half an
    hour (every 5): each check runs a period after its previous run from the first, and
    no run starts within another's budget. Before, their grids both lay where the first
    runs were done, so every 10 minutes the two ran at the same instant."""
    base = LOAD_ONLY.format(url="http://127.0.0.1:9")
    half = base.replace("  production:", "  half:\n    lookback: 30m")
    envs = {
        "hourly": load_settings_text(base).environments["production"],
        "half": load_settings_text(half).environments["half"],
    }
    probes = {n: EnvironmentProbe(n, e, TargetSessions(), Metrics()) for n, e in envs.items()}
    every = {n: background_every(p.checks[0], envs[n]) for n, p in probes.items()}
    assert every == {"hourly": 600.0, "half": 300.0}
    clock = VirtualClock()
    prober = on_clock(Recording, probes, clock)
    task = asyncio.create_task(prober.run())
    try:
        await clock.run_until(3 * 3600.0 - 1e-6, tasks=2)  # three hours
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    length = max(p.checks[0].budget_s() for p in probes.values())  # the longest a run takes
    starts = sorted(t for ts in prober.runs.values() for t in ts)
    closest = min(b - a for a, b in itertools.pairwise(starts))
    assert closest >= length - 1e-9, closest  # one run at a time (before: two at once)
    assert len(starts) == 18 + 36  # before: one more of each, at the start
    for name, ts in prober.runs.items():
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        assert gaps == pytest.approx([every[name]] * len(gaps)), (name, ts[:3])

"""A round that overruns its slot says what held it, in the running daemon: its checks (a
load check against a target that stalls), its providers (a slow New Relic's baseline
holding the first round), the store (a lease renewal on a slow store) or the host (the
agent's loop blocked). Each is counted in
`postflight_round_overrun_causes_total{environment,outcome}` (the cause as §5's bounded
`outcome`), kept in the stored round (`overrun`) and named in the window's one overrun
log line; the contract's
`postflight_round_overruns_total{environment}` counts them all, as before."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.app import build_app
from agent.appkeys import STORE
from agent.metrics import OVERRUN_CAUSES, Metrics
from agent.records import DeployWindow, Fence, RoundRecord
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from tests.e2e.conftest import AgentFactory, LocalTarget, RunningAgent
from tests.e2e.providers_support import NEWRELIC_KEY, providers_yaml
from tests.fakes.newrelic import FakeNewRelic


class StallingTarget(LocalTarget):
    """/stall answers after `stall_s`, anything else at once; the first request once
    `armed` then blocks the loop it shares with the agent for `burn_s`, as a blocking
    call on the agent's loop does, or (`by_thread`) starts a thread that holds the GIL
    as long, as a busy thread of the agent's process can."""

    def __init__(self, stall_s: float = 0.0, burn_s: float = 0.0, by_thread: bool = False) -> None:
        super().__init__()
        self.stall_s = stall_s
        self.burn_s = burn_s
        self.by_thread = by_thread
        self.armed = False
        self.probed = asyncio.Event()
        self.threads: list[threading.Thread] = []

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/stall":
            await asyncio.sleep(self.stall_s)
        elif self.armed:
            self.armed = False
            if self.by_thread:
                self.threads.append(threading.Thread(target=self.hold_the_gil))
                self.threads[-1].start()
            else:
                asyncio.get_running_loop().call_soon(self.burn)
        self.probed.set()
        return web.json_response({"status": "ok"})

    def burn(self) -> None:
        """Busy on the loop's thread: no callback, no timer of the agent runs meanwhile."""
        until = time.perf_counter() + self.burn_s
        while time.perf_counter() < until:
            pass

    def hold_the_gil(self) -> None:
        """C calls that keep the GIL until each returns (some 0.1 s each here), for
        `burn_s` of CPU: the loop's thread, runnable, gets a turn only between them."""
        started = time.thread_time()
        while time.thread_time() - started < self.burn_s:
            math.factorial(100_000)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{tail:.*}", self.handle)


@pytest.fixture
def window_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="postflight.window")
    # enabled: an earlier test may have run a tool that disables existing loggers
    monkeypatch.setattr(logging.getLogger("postflight.window"), "disabled", False)


def overrun_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "overran its" in r.getMessage()]


def causes(agent: RunningAgent, environment: str) -> dict[str, float]:
    """`postflight_round_overrun_causes_total`'s series of `environment`, by cause."""
    name = "postflight_round_overrun_causes_total"
    return {c: agent.metric(name, environment=environment, outcome=c) for c in OVERRUN_CAUSES}


WINDOW = """
        {name}:
          base_url: {url}
          window: {window}
          interval: 300ms
          background_interval: 1h
          probes_per_round: 2
          checks:
            - {check}
          rules:
            - {{name: errors, source: checks, metric: error_rate, max: 0.5}}
        """


@pytest.mark.usefixtures("window_log")
async def test_a_load_check_waiting_on_a_stalled_target_is_the_checks_cause(
    start_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # a load run's requests wait for their answers (1.2 s) past the 300 ms slot: probes are
    # cut at the slot's end, a load run's last requests are not
    target = StallingTarget(stall_s=1.2)
    await target.start()
    try:
        check = "{name: feed, type: load, path: /stall, rate: 20/s, duration: 200ms, timeout: 5s}"
        agent = await start_agent(
            WINDOW.format(name="stalled", url=target.url, window="2100ms", check=check)
        )
        deploy = await agent.register("stalled", "v1")
        await agent.settled(deploy["id"], within=30)
        rounds = await agent.app[STORE].rounds(deploy["id"])
    finally:
        await target.stop()
    overran = [r.summary["overrun"] for r in rounds if "overrun" in r.summary]
    assert overran, [r.summary for r in rounds]
    assert {o["cause"] for o in overran} == {"checks"}, overran
    counted = causes(agent, "stalled")
    total = agent.metric("postflight_round_overruns_total", environment="stalled")
    assert counted["checks"] == total == len(overran), (counted, total)
    [line] = overrun_lines(caplog)
    assert "cause checks: they ran" in line, line


class SlowLeaseStore(SqliteStore):
    """A store on a slow disk for lease renewals: each takes `delay_s` to commit."""

    def __init__(self, path: Path, delay_s: float) -> None:
        super().__init__(path)
        self.delay_s = delay_s
        self.finished = asyncio.Event()
        self.renewals: list[float] = []
        """When each renewal was asked for (wall clock, as a round's `started_at`)."""

    async def renew_lease(self, window_id: str, fence: Fence, until: float) -> bool:
        self.renewals.append(time.time())
        await asyncio.sleep(self.delay_s)
        return await super().renew_lease(window_id, fence, until)

    async def finish_window(self, *args: Any, **kwargs: Any) -> bool:
        ended = await super().finish_window(*args, **kwargs)
        self.finished.set()
        return ended


def renewal_rounds(rounds: list[RoundRecord], renewals: list[float]) -> set[int]:
    """The rounds that asked for a renewal (each awaits its own): the last started before
    each ask; one asked before the first round (the watch's set-up) is none of them."""
    return {
        max(r.number for r in rounds if r.started_at <= at)
        for at in renewals
        if any(r.started_at <= at for r in rounds)
    }


@pytest.mark.usefixtures("window_log")
async def test_a_lease_renewal_on_a_slow_store_is_the_stores_cause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a 1 s lease is renewed at every round and, with less than the round and 5 s left,
    # waited for: each renewal takes 600 ms of the 300 ms slot
    target = StallingTarget()
    await target.start()
    settings = load_settings_text(
        f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "sqlite:///{tmp_path / "unused.db"}", lease: 1s}}
environments:
  slowdisk:
    base_url: {target.url}
    window: 2100ms
    interval: 300ms
    background_interval: 1h
    checks:
      - {{name: health, type: http, path: /health, timeout: 1s}}
    rules:
      - {{name: errors, source: checks, metric: error_rate, max: 0.05}}
"""
    )
    store = SlowLeaseStore(tmp_path / "slow.db", delay_s=0.6)
    metrics = Metrics()
    app = build_app(
        settings, store=store, metrics=metrics, poll_interval=0.05, background_probing=False
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        now = time.time()
        await store.create_window(
            DeployWindow(
                "dep_slowdisk", "slowdisk", "v1", None, None, {}, "watching", now, now + 2.1, now
            )
        )
        async with asyncio.timeout(30):
            await store.finished.wait()
        rounds = await store.rounds("dep_slowdisk")
    finally:
        await runner.cleanup()
        await target.stop()
    renewing = renewal_rounds(rounds, store.renewals)
    overran = {r.number: r.summary["overrun"] for r in rounds if "overrun" in r.summary}
    assert renewing and renewing <= set(overran), (store.renewals, overran)
    # each renewal round's overrun is the store's; another round's (0.03-0.10 s beside them
    # at load 17) may be the host's, the loaded machine's
    assert {overran[n]["cause"] for n in renewing} == {"store"}, overran
    counted = metrics.round_overrun_causes_total.labels("slowdisk", "store")._value.get()
    assert counted >= len(renewing)
    assert metrics.round_overruns_total.labels("slowdisk")._value.get() == len(overran)
    [line] = overrun_lines(caplog)
    first = overran[min(overran)]
    assert f"cause {first['cause']}: " in line, line
    if min(overran) in renewing:
        assert "cause store: the round waited" in line, line


@pytest.mark.usefixtures("window_log")
@pytest.mark.parametrize("by_thread", [False, True], ids=["blocking-call", "busy-thread"])
async def test_a_blocked_loop_is_the_hosts_cause(
    start_agent: AgentFactory, caplog: pytest.LogCaptureFixture, by_thread: bool
) -> None:
    # the window's first probe blocks the loop for 900 ms or more (a call on it, or a
    # thread holding the GIL): its round's other probe, its judging and storing all wait
    # for the loop, three slots long
    target = StallingTarget(burn_s=0.9, by_thread=by_thread)
    await target.start()
    try:
        check = "{name: health, type: http, path: /health, timeout: 1s}"
        agent = await start_agent(
            WINDOW.format(name="blocked", url=target.url, window="3s", check=check)
        )
        deploy = await agent.register("blocked", "v1")
        target.probed.clear()
        async with asyncio.timeout(10):
            await target.probed.wait()  # the window probes: its next probe blocks the loop
        target.armed = True
        await agent.settled(deploy["id"], within=30)
        rounds = await agent.app[STORE].rounds(deploy["id"])
    finally:
        await target.stop()
        for thread in target.threads:
            thread.join()
    assert not target.armed  # it blocked the loop
    overran = [r.summary["overrun"] for r in rounds if "overrun" in r.summary]
    assert overran, [r.summary for r in rounds]
    # the blocked round's (a loaded machine may make another overrun: the host's too)
    assert {o["cause"] for o in overran} == {"host"}, overran
    counted = agent.metric(
        "postflight_round_overrun_causes_total", environment="blocked", outcome="host"
    )
    assert counted == agent.metric("postflight_round_overruns_total", environment="blocked")
    [line] = overrun_lines(caplog)
    assert "cause host: the agent's loop was" in line, line


NRQL = "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web (production)'"


@pytest.mark.usefixtures("window_log")
async def test_a_slow_providers_baseline_holding_the_first_round_is_the_providers_cause(
    start_agent: AgentFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """New Relic answers in 1.5 s. The first round waits for its baseline half its 2 s
    slot (`BASELINE_WAIT_S`: 1 s), then probes a target that answers in 3 s: each probe
    keeps its room (half the interval) though the round has less left, so the round ends
    past its slot. Its checks kept to their design; the provider's wait took the slot."""
    target = StallingTarget(stall_s=3.0)
    await target.start()
    async with FakeNewRelic(api_key=NEWRELIC_KEY) as newrelic:
        newrelic.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
        newrelic.delay = 1.5
        environment = f"""
            production:
              base_url: {target.url}
              window: 3s
              interval: 2s
              lookback: 1h
              background_interval: 1h
              probes_per_round: 2
              baseline: {{newrelic: {{app_name: "web (production)"}}}}
              checks:
                - {{name: slow, type: http, path: /stall, timeout: 2s}}
              rules:
                - {{name: apm-latency, source: newrelic, nrql: "{NRQL}", max_increase: 50%}}
            """
        try:
            budgets = {"newrelic": ("5s", "3s")}  # slow, not failing
            providers = providers_yaml(newrelic=newrelic, budgets=budgets)
            agent = await start_agent(environment, providers=providers)
            deploy = await agent.register("production", "v1")
            await agent.settled(deploy["id"], within=30)
            rounds = await agent.app[STORE].rounds(deploy["id"])
        finally:
            await target.stop()
    first = rounds[0].summary
    assert first["slot"] == 0 and "overrun" in first, first
    assert first["overrun"]["cause"] == "providers", first["overrun"]
    assert causes(agent, "production")["providers"] >= 1
    [line] = overrun_lines(caplog)
    assert "round 1 overran" in line and "cause providers: the round waited" in line, line


async def test_a_hung_providers_wait_its_timer_ended_is_not_the_cause_of_a_late_timer(
    start_agent: AgentFactory,
) -> None:
    """New Relic never answers: each round's wait for it is ended by the round's timer,
    half the reserve before the slot's end (0.95 s into each 1 s slot), within the slot by
    design. The loop blocks 0.2 s from 0.92 s into rounds 2 to 5, so that timer fires late
    and those rounds overrun: the host's. The wait was counted whole as the providers',
    from the checks' end (~0.55 s, less the stall), and named them (providers 0.44 s,
    host 0.2 s); its part in the reserve (0.05 s) is theirs now."""
    target = StallingTarget()
    await target.start()
    async with FakeNewRelic(api_key=NEWRELIC_KEY) as newrelic:
        newrelic.fail("hang")
        environment = f"""
            production:
              base_url: {target.url}
              window: 7s
              interval: 1s
              lookback: 1h
              background_interval: 1h
              probes_per_round: 4
              checks:
                - {{name: health, type: http, path: /health, timeout: 1s}}
              rules:
                - {{name: apm-latency, source: newrelic, nrql: "{NRQL}", max: 5}}
            """
        blocked: list[int] = []

        async def block_the_loop(deployed_at: float) -> None:
            for slot in range(2, 6):
                await asyncio.sleep(max(0.0, deployed_at + slot + 0.92 - time.time()))
                blocked.append(slot)
                time.sleep(0.2)  # noqa: ASYNC251 (the loop blocked, on purpose)

        try:
            # its budget past the window's end: no answer (an error) ends a round's wait;
            # the last round waits for it (no overrun), some 2 s
            providers = providers_yaml(newrelic=newrelic, budgets={"newrelic": ("8s", "8s")})
            agent = await start_agent(environment, providers=providers)
            deploy = await agent.register("production", "v1")
            window = await agent.app[STORE].get_window(deploy["id"])
            assert window is not None
            blocking = asyncio.create_task(block_the_loop(window.deployed_at))
            await agent.settled(deploy["id"], within=30)
            await blocking
            rounds = await agent.app[STORE].rounds(deploy["id"])
        finally:
            await target.stop()
    assert blocked == [2, 3, 4, 5]
    overran = {r.summary["slot"]: r.summary["overrun"] for r in rounds if "overrun" in r.summary}
    late = {slot: o for slot, o in overran.items() if slot in blocked}
    assert late, overran  # the timer fired 0.17 s late, past the slot's last 0.05 s
    assert {o["cause"] for o in late.values()} == {"host"}, late
    assert all(o["providers_s"] < 0.1 for o in late.values()), late

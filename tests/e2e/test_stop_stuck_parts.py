"""Contract §1's stop, from outside the real daemon, when a part of it does not stop: a
third-party check that swallows its cancellation (so the watcher never ends) or a provider
whose close hangs. `postflight run` still exits 0 within `server.shutdown_timeout`, names
the part it left in one warning, and keeps the window for the next start. Before, the stop
awaited each part with no bound and hung for good."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.rollback.delivery import RollbackDelivery
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.e2e.crash import TOKEN, free_port, request_json
from tests.e2e.plugin_agent import records, start, state_after_restart
from tests.plugin_site import install_distribution
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_S = 2.0

PLUGIN = '''
"""Parts that do not stop, as a plugin author's bugs would have them."""

import asyncio
import threading
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel

from agent.analysis.types import Observation
from checks.base import Check, CheckConfig


class StuckConfig(CheckConfig):
    type: Literal["stuck"] = "stuck"
    started: str


class StuckCheck(Check):
    """Writes `started`, then waits for good, swallowing every cancellation."""

    type = "stuck"
    Config = StuckConfig
    background = True

    async def run(self, ctx):
        Path(self.config.started).touch()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass


class BlockedThreadConfig(CheckConfig):
    type: Literal["blocked-thread"] = "blocked-thread"
    started: str


class BlockedThreadCheck(Check):
    """Calls a synchronous client with no timeout in a worker thread, which never returns:
    the run's task can be cancelled, the thread cannot."""

    type = "blocked-thread"
    Config = BlockedThreadConfig
    background = True

    async def run(self, ctx):
        Path(self.config.started).touch()
        await asyncio.to_thread(threading.Event().wait)


class HangSettings(BaseModel):
    started: str


class HangingCloseProvider:
    """A provider whose close waits for an answer that never comes."""

    name = "hangclose"
    config_model: ClassVar[type[BaseModel]] = HangSettings

    def __init__(self, config, *, metrics, redact=None):
        Path(config.started).touch()

    async def fetch(self, rule, scope, period, release):
        return Observation(value=None, error="no data")

    async def mark(self, scope, event):
        return None

    def link(self, rule, scope, period, *, release=None):
        return None

    async def aclose(self):
        await asyncio.Event().wait()
'''


def install_plugin(site: Path) -> None:
    install_distribution(
        site,
        "postflight-stuck-parts",
        "[postflight.checks]\nstuck = stuck_parts:StuckCheck\n"
        "blocked-thread = stuck_parts:BlockedThreadCheck\n"
        "[postflight.providers]\nhangclose = stuck_parts:HangingCloseProvider\n",
    )
    (site / "stuck_parts.py").write_text(PLUGIN)


def config(tmp_path: Path, port: int, part: str, started: Path) -> Path:
    """The agent's configuration with `part` ("check", "provider" or "thread"), which
    writes `started` as it runs (or is built); or with several ("check+thread"), each
    writing `started` suffixed by its name (`started_mark`)."""
    parts = part.split("+")

    def mark(which: str) -> Path:
        return started_mark(started, which) if len(parts) > 1 else started

    providers = ""
    if "provider" in parts:
        providers = f"providers:\n  hangclose: {{started: '{mark('provider')}'}}\n"
    checks = [
        f"{{name: {kind}, type: {kind}, started: '{mark(which)}'}}"
        for which, kind in (("check", "stuck"), ("thread", "blocked-thread"))
        if which in parts
    ] or ["{name: health, type: http, path: /health, timeout: 200ms}"]
    path = tmp_path / "postflight.yaml"
    path.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"  shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        + providers
        + textwrap.dedent(
            f"""\
            environments:
              production:
                base_url: http://127.0.0.1:{free_port()}
                window: 10m
                interval: 1s
                background_interval: 200ms
                checks: [{", ".join(checks)}]
                rules: [{{name: errors, source: checks, metric: error_rate, max: 1.0}}]
            """
        )
    )
    return path


def started_mark(started: Path, part: str) -> Path:
    """The file `part` writes as it runs (or is built) in `config` of several parts."""
    return started.with_name(f"{started.name}-{part}")


@dataclass(frozen=True)
class Stopped:
    """What one stop (SIGTERM) of an agent running parts that do not stop left."""

    exit_code: int | None
    """None: still running `SHUTDOWN_TIMEOUT_S` + 1 s after the signal (then killed)."""
    log: str
    records: list[dict[str, Any]]
    state_after_restart: str


def stopped_once(tmp_path: Path, part: str) -> Stopped:
    """An agent running `part` (`config`'s), a deploy registered, stopped once `part` runs,
    then started again."""
    site = tmp_path / "site"
    install_plugin(site)
    port = free_port()
    started = tmp_path / "started"
    path = config(tmp_path, port, part, started)
    marks = [started] if "+" not in part else [started_mark(started, p) for p in part.split("+")]
    log = tmp_path / "agent.log"
    agent = start(path, log, site)
    exit_code: int | None = None
    try:
        url = f"http://127.0.0.1:{port}/v1/deploys"
        deploy = request_json("POST", url, {"environment": "production", "version": "v2"})
        deadline = time.monotonic() + 30
        while not all(mark.exists() for mark in marks):  # the stuck checks run (or ...)
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        agent.send_signal(signal.SIGTERM)
        # the contract's bound is `shutdown_timeout`; one more second for a loaded machine
        with contextlib.suppress(subprocess.TimeoutExpired):
            exit_code = agent.wait(timeout=SHUTDOWN_TIMEOUT_S + 1.0)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    said = log.read_text()
    # nothing lost: the next start has the window, still watching
    state = state_after_restart(path, log, site, f"{url}/{deploy['id']}")
    return Stopped(exit_code, said, records(log), state)


@pytest.fixture(scope="module")
def stops(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Stopped]:
    """`stopped_once` of each `part` the tests ask for, once in this module: the stuck
    check and the blocked thread share one agent and one stop, where each took an agent,
    a stop and a restart of its own; each is named in its own warning all the same (the
    checks' step leaves the one, the exit's bound names the other). The hanging provider
    has its own: its close takes the budget to its end, where the loop's end gives a
    left task 0.2 s more before it names it (`run_daemon`), past the exit's bound."""
    done: dict[str, Stopped] = {}

    def stop(part: str) -> Stopped:
        if part not in done:
            done[part] = stopped_once(tmp_path_factory.mktemp(part.replace("+", "-")), part)
        return done[part]

    return stop


ONE_STOP = pytest.mark.xdist_group("stop-stuck-parts")
"""The tests of one `stops` on one worker, which stops each agent once (`--dist loadgroup`)."""


@ONE_STOP
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("part", "left"),
    [
        ("check+thread", "stopping: plugin_run"),
        ("provider", "stopping: closing provider hangclose did not finish within"),
        ("check+thread", f"stopping: still running {SHUTDOWN_TIMEOUT_S:g}s after the signal"),
    ],
    ids=[
        "a check that swallows its cancellation",
        "a provider whose close hangs",
        "a check blocked in a worker thread",
    ],
)
def test_a_part_that_does_not_stop_is_named_and_left_and_the_stop_keeps_its_bound(
    stops: Callable[[str], Stopped], part: str, left: str
) -> None:
    stopped = stops(part)
    assert stopped.exit_code == 0, stopped.log
    warnings = [r["msg"] for r in stopped.records if r.get("level") == "warning"]
    assert [m for m in warnings if m.startswith(left)], warnings
    assert "stopped" in [r["msg"] for r in stopped.records]
    assert "Traceback" not in stopped.log
    assert stopped.state_after_restart == "watching"


@pytest.mark.timeout(60)
async def test_a_rollback_delivery_left_at_a_stop_is_sent_again_with_its_key_on_restart(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a stop leaves is in the store: a rollback whose delivery ignores its
    cancellation (an HTTP client deaf to it while the receiver hangs) is left pending, and
    the next start sends it again with the same Idempotency-Key and body (contract §3),
    counted at the receiver, which acts on it once."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=["hang"])
    deaf = asyncio.Event()
    attempt = RollbackDelivery._attempt

    async def deaf_attempt(self: RollbackDelivery, request: Any, settings: Any) -> Any:
        try:
            return await attempt(self, request, settings)
        except asyncio.CancelledError:
            await deaf.wait()  # hears its cancellation only once the test is done
            raise

    monkeypatch.setattr(RollbackDelivery, "_attempt", deaf_attempt)
    env = environment(
        "production",
        flip_target.url,
        extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}, timeout: 30s}}",
    )
    server = f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s"
    agent = await start_agent(env, server=server, owner="replica-a")
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await receiver.wait_for_attempts(1, within=20)  # the receiver holds it open
    runner = agent.runner
    assert runner is not None
    stopping = asyncio.create_task(runner.cleanup())
    try:
        with caplog.at_level(logging.WARNING, logger="postflight"):
            done, _ = await asyncio.wait({stopping}, timeout=SHUTDOWN_TIMEOUT_S + 1.0)
            assert stopping in done
        agent.runner = None
        left = [r.getMessage() for r in caplog.records if "rollback delivery of" in r.getMessage()]
        assert [m for m in left if m.endswith("; leaving it")], left

        restarted = await start_agent(env, server=server, owner="replica-a")
        final = await restarted.settled(deploy["id"], within=30)
    finally:
        deaf.set()
    assert final["state"] == "rolled_back"
    assert final["rollback"]["state"] == "delivered"
    first, again = receiver.attempts
    assert first.idempotency_key == again.idempotency_key == deploy["id"]
    assert first.body == again.body
    assert again.accepted and not again.duplicate  # the hung first one was never answered

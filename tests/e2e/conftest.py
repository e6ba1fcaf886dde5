"""End-to-end harness: the real daemon (in-process aiohttp app on a free port) against
a local target whose behaviour flips after the deploy, and real receivers."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.app import api_runner, build_app
from agent.appkeys import STORE
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from agent.windows.alert_once import ALERT_RETRY_DELAYS_S
from agent.windows.probing import EnvironmentProbe
from tests.e2e.crash import free_port, start_target
from tests.receivers import flip_fails

TOKEN = "e2e-api-token-01234"
SECRET = "e2e-rollback-secret"


PROBE_ERRORS = "{name: probe-errors, source: checks, metric: error_rate, max: 0.05}"
THRESHOLD = "{policy: threshold, failure_limit: 2}"


def environment(
    name: str,
    base_url: str,
    *,
    window: str = "1500ms",
    interval: str = "300ms",
    background_interval: str = "200ms",
    probes: int = 5,
    timeout: str = "1s",
    analysis: str | None = THRESHOLD,
    rules: Sequence[str] = (PROBE_ERRORS,),
    extra: str = "",
) -> str:
    """One environment's YAML for `start_agent`: an http check `api-health` on /api/health
    and `rules` (flow mappings), with seconds-long windows and sub-second rounds by
    default. `extra`: more keys of the environment (rollback, sources, lookback)."""
    lines = [
        f"{name}:",
        f"  base_url: {base_url}",
        f"  window: {window}",
        f"  interval: {interval}",
        f"  background_interval: {background_interval}",
        f"  probes_per_round: {probes}",
        "  checks:",
        f"    - {{name: api-health, type: http, path: /api/health, timeout: {timeout}}}",
    ]
    if analysis is not None:
        lines.append(f"  analysis: {analysis}")
    lines += ["  rules:", *(f"    - {rule}" for rule in rules)]
    text = "\n".join(lines) + "\n"
    if extra.strip():
        text += textwrap.indent(textwrap.dedent(extra).strip("\n"), "  ") + "\n"
    return text


def failing_production(rollback_url: str) -> str:
    """`production` on a port nothing listens on, so the deploy fails at its first round,
    rolling back through the signed webhook at `rollback_url`: the rollback-refusal tests'."""
    return environment(
        "production",
        f"http://127.0.0.1:{free_port()}",
        window="30s",
        extra=f"rollback: {{url: '{rollback_url}', secret: {SECRET}}}",
    )


def rollback_then_migrations(receiver_url: str, secret: str, follow_url: str, delivery: str) -> str:
    """An environment's `rollback` (for `environment(extra=...)`) to `receiver_url`, with
    `delivery`'s keys (timeout, attempts, backoff) and one `rollback.then` follow-up,
    `migrations`, to `follow_url`: the stop and follow-up tests' set-up."""
    return (
        f"rollback: {{url: {receiver_url}, secret: {secret}, {delivery},"
        f" then: [{{name: migrations, url: '{follow_url}'}}]}}"
    )


def slow_rounds(monkeypatch: pytest.MonkeyPatch, extra_s: float) -> None:
    """Every round's checks take `extra_s` more than they do (a slow machine: a slow
    target cannot make a round overrun, its probes are cut at the slot)."""
    run_round = EnvironmentProbe.run_round

    async def slow_round(self: EnvironmentProbe, *args: Any, **kwargs: Any) -> Any:
        results = await run_round(self, *args, **kwargs)
        await asyncio.sleep(extra_s)
        return results

    monkeypatch.setattr(EnvironmentProbe, "run_round", slow_round)


class LocalTarget:
    """A service on a free port of 127.0.0.1; subclasses add their `routes`."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        # answers a test's slow or hung target still holds when it stops (at the test's end)
        # are cut, not waited out: up to 2 s a test, on the `heavy` worker too
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class RefusingReceiver(LocalTarget):
    """A rollback webhook that refuses every POST with `status` and the words
    `words(request)`; `posts` counts them."""

    def __init__(self, status: int, words: Callable[[web.Request], str]) -> None:
        super().__init__()
        self.status, self.words = status, words
        self.posts = 0

    async def refuse(self, request: web.Request) -> web.Response:
        self.posts += 1
        await request.read()
        return web.Response(status=self.status, text=self.words(request))

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self.refuse)


class FlipTarget(LocalTarget):
    """The service being deployed: healthy until `go_bad()`, then 40% of answers are 5xx
    (deterministically: two of every five requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = False
        self.requests = 0

    async def health(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.bad and flip_fails(self.requests):
            return web.json_response({"status": "error"}, status=503)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


class TargetProcess:
    """`FlipTarget`'s service as a process of its own (`tests.receivers.Target`), for
    tests whose daemons run as processes too: a stall of the test's process (its own
    work, a collection, a CPU it waits for) reads to the daemons probing an in-process
    target as the service timing out, and a good deploy got `probe-errors breached`
    (planted, a 1.5 s `time.sleep` in a test after its kill did it every time). Its
    mode and its count are the process's, asked over HTTP."""

    def __init__(self) -> None:
        self.proc, self.url = start_target()

    async def _ask(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, f"{self.url}{path}", json=body) as r,
        ):
            assert r.status == 200, await r.text()
            return await r.json()

    async def set_mode(self, **mode: Any) -> None:
        """`bad=True`, `status=500`, `delay_ms=200`: see `tests.receivers.Target`."""
        await self._ask("POST", "/_mode", mode)

    async def go_bad(self) -> None:
        """Two of every five requests answered 503 from now on (`FlipTarget.bad`)."""
        await self.set_mode(bad=True)

    async def arrivals(self) -> int:
        """The requests the target got (since its start or its last `reset`)."""
        return int((await self._ask("GET", "/_arrivals"))["arrivals"])

    async def reset(self) -> None:
        """Healthy again, its count at 0."""
        await self._ask("POST", "/_reset")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def watched(
    name: str,
    target: str,
    rollback_url: str | None = None,
    *,
    extra_rule: str = "",
    alerts: bool = False,
    window: str = "20s",
) -> str:
    """One environment of `start_agent` probing `target`'s /api/health five times a
    300 ms round, judged on its error rate at failure_limit 2 (`extra_rule`: a second
    rule, a YAML flow mapping), rolled back to `rollback_url` if given, its alerts
    tagged `oncall` if `alerts`, over a `window` of 20 s unless said."""
    lines = [
        f"{name}:",
        f"  base_url: {target}",
        f"  window: {window}",
        "  interval: 300ms",
        "  background_interval: 200ms",
        "  probes_per_round: 5",
        "  checks:",
        "    - {name: api-health, type: http, path: /api/health, timeout: 1s}",
        "  analysis: {policy: threshold, failure_limit: 2}",
        "  rules:",
        "    - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}",
    ]
    if extra_rule:
        lines.append(f"    - {extra_rule}")
    if rollback_url is not None:
        lines.append(f'  rollback: {{url: "{rollback_url}", secret: {SECRET}, backoff: 100ms}}')
    if alerts:
        lines.append("  alerts: {tags: [oncall]}")
    return "\n".join(lines) + "\n"


@dataclass
class RunningAgent:
    url: str
    app: web.Application
    metrics: Metrics
    http: aiohttp.ClientSession
    runner: web.AppRunner | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {TOKEN}"})

    async def register(self, environment: str, version: str, **extra: Any) -> dict[str, Any]:
        body = {"environment": environment, "version": version, **extra}
        async with self.http.post(f"{self.url}/v1/deploys", json=body, headers=self.headers) as r:
            data: dict[str, Any] = await r.json()
            assert r.status == 201, data
            return data

    async def get(self, deploy_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/v1/deploys/{deploy_id}", headers=self.headers) as r:
            data: dict[str, Any] = await r.json()
            assert r.status == 200, data
            return data

    async def cancel(self, deploy_id: str) -> dict[str, Any]:
        url = f"{self.url}/v1/deploys/{deploy_id}/cancel"
        async with self.http.post(url, headers=self.headers) as r:
            data: dict[str, Any] = await r.json()
            assert r.status == 200, data
            return data

    async def rollback(self, deploy_id: str, reason: str) -> None:
        """A manual rollback asked through the API (`POST /v1/deploys/{id}/rollback`),
        accepted (202)."""
        url = f"{self.url}/v1/deploys/{deploy_id}/rollback"
        async with self.http.post(url, json={"reason": reason}, headers=self.headers) as r:
            assert r.status == 202, await r.text()

    async def wait_until(
        self,
        deploy_id: str,
        done: Callable[[dict[str, Any]], bool],
        within: float = 30.0,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            deploy = await self.get(deploy_id)
            if done(deploy):
                return deploy
            assert loop.time() < deadline, f"gave up waiting; last seen: {deploy}"
            await asyncio.sleep(0.1)

    async def settled(self, deploy_id: str, within: float = 30.0) -> dict[str, Any]:
        """Wait for the final state, including a rollback's delivery."""

        def final(d: dict[str, Any]) -> bool:
            pending = (d.get("rollback") or {}).get("state") == "pending"
            return d["state"] not in ("watching", "scheduled") and not pending

        return await self.wait_until(deploy_id, final, within)

    async def stored_runs(
        self, environment: str, at_least: int, *, check: str | None = None, within: float = 30.0
    ) -> int:
        """Wait until the store holds `at_least` check runs of `environment` (of `check`
        only, if given): a baseline that is there, where a fixed sleep before the deploy
        held a loaded machine's few or none. Returns how many it holds."""
        store = self.app[STORE]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            rows = await store.probe_summaries(environment, 0.0, time.time() + 3600.0)
            held = sum(1 for name, _at, _summary in rows if check in (None, name))
            if held >= at_least:
                return held
            assert loop.time() < deadline, f"{held} runs stored, not {at_least}"
            await asyncio.sleep(0.05)

    async def rounds(self, deploy_id: str, at_least: int, within: float = 30.0) -> int:
        """Wait until the window of `deploy_id` has stored `at_least` rounds, where a fixed
        sleep counted on a quiet machine's pace. Returns how many it has."""
        store = self.app[STORE]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            held = len(await store.rounds(deploy_id))
            if held >= at_least:
                return held
            assert loop.time() < deadline, f"{held} rounds stored, not {at_least}"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Stop this agent as SIGTERM would."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def scraped(self, name: str, **labels: str) -> float:
        """A sample as a scrape of `/metrics` reads it (0 when it is not there)."""
        async with self.http.get(f"{self.url}/metrics") as r:
            assert r.status == 200
            text = await r.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


AgentFactory = Callable[..., Awaitable[RunningAgent]]
"""`start_agent`'s factory: the environments' YAML, then its keywords (`extra=`, `server=`, ...)."""


def held_as_overloaded(final: dict[str, Any]) -> bool:
    """The overload guard's hold: the agent's own loop stalled past what it can judge (a
    loaded machine's, not the target's), so nothing is rolled back, by design."""
    reason = str((final.get("verdict") or {}).get("reason") or "")
    return final["state"] == "inconclusive" and reason.startswith("agent overloaded:")


async def unless_held(
    run: Callable[[], Awaitable[tuple[RunningAgent, dict[str, Any]]]], attempts: int = 3
) -> dict[str, Any]:
    """`run()` (an agent started and a deploy of it settled: both), run again while that
    window ends held as the agent's own overload (`held_as_overloaded`, no verdict to
    assert), its agent stopped first; `attempts` at most. The last deploy's final state."""
    for _ in range(attempts):
        agent, final = await run()
        if not held_as_overloaded(final):
            break
        await agent.stop()
    return final


async def one_deploy_settled(
    start_agent: AgentFactory, environments: str, version: str = "v2"
) -> dict[str, Any]:
    """`version` registered to production on an agent started on `environments`: its final
    state, once not held as the agent's own overload (`unless_held`)."""

    async def run() -> tuple[RunningAgent, dict[str, Any]]:
        agent = await start_agent(environments)
        deploy = await agent.register("production", version)
        return agent, await agent.settled(deploy["id"], within=60)

    return await unless_held(run)


@pytest.fixture
async def flip_target() -> AsyncIterator[FlipTarget]:
    target = FlipTarget()
    await target.start()
    yield target
    await target.stop()


@pytest.fixture
def target_process() -> Iterator[TargetProcess]:
    """A `TargetProcess`, healthy until the test says `go_bad()`; stopped after it."""
    target = TargetProcess()
    yield target
    target.stop()


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[AgentFactory]:
    """Factory: `await start_agent(environments_yaml, alerting_yaml="", providers_yaml="")`
    → a running agent. The YAML snippets are top-level sections (dedented); `server`
    adds lines to the `server:` section; `clock`: the agent's wall clock (one skewed)."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    sockets: list[socket.socket] = []

    async def start(
        environments: str,
        alerting: str = "",
        providers: str = "",
        *,
        store: str | None = None,
        owner: str | None = None,
        extra: str = "",
        server: str = "",
        alert_retry_delays: Sequence[float] = ALERT_RETRY_DELAYS_S,
        clock: Callable[[], float] = time.time,
    ) -> RunningAgent:
        # bound and held from here (port 0: the kernel's pick) until the agent serves it,
        # where free_port()'s bind-read-close let another process take it meanwhile; the
        # settings and the links name the port bound
        sock = socket.socket()
        sockets.append(sock)  # closed at the end if never served (a start that raised)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        store = store or f"url: sqlite:///{tmp_path / 'postflight.db'}"
        text = (
            f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
            + "".join(f"  {line}\n" for line in server.splitlines() if line.strip())
            + f"store:\n  {store}\n"
            + textwrap.dedent(alerting)
            + textwrap.dedent(providers)
            + textwrap.dedent(extra)
            + "environments:\n"
            + textwrap.indent(textwrap.dedent(environments), "  ")
        )
        settings = load_settings_text(text, source="e2e config")
        metrics = Metrics()
        app = build_app(
            settings,
            metrics=metrics,
            poll_interval=0.1,
            owner=owner,
            alert_retry_delays=alert_retry_delays,
            clock=clock,
        )
        # the daemon's own runner (`agent.app.serve`'s), its in-flight bound the daemon's
        # most: a live stream still open at teardown is ended after 2 s instead of
        # holding the runner for aiohttp's default 60 s
        runner = api_runner(app, metrics, in_flight_s=2.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return RunningAgent(f"http://127.0.0.1:{port}", app, metrics, http, runner=runner)

    yield start
    for http in sessions:
        await http.close()
    for runner in runners:
        if runner.server is not None:  # not already stopped by the test
            await runner.cleanup()
    for sock in sockets:
        sock.close()

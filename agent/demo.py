"""`postflight demo`: the whole agent on one machine, no network, no accounts.

It starts a small demo service, a rollback receiver that checks the signature, a
chat sink for alerts and the agent itself (SQLite in a temporary directory; in a process
of its own, `agent.demo_agent`), then ships a good deploy (it passes) and a bad one (it is
rolled back), printing each step so a newcomer sees what the agent does. When the machine
was too busy for the agent to judge the good deploy, it says so and what to do
(`overload_advice`); the exit status is still 1: the demo did not show what it set out to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
import signal
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.settings_file import load_settings_text
from common.durations import format_duration
from common.stop_words import STOPPED_WORDS
from common.units import format_value
from common.words import counted

TOKEN = "demo-token-please-change"
SECRET = "demo-webhook-secret"

CONFIG = """\
server:
  listen: 127.0.0.1:0
  api_tokens: ["{token}"]
store:
  url: sqlite:///{db}
alerting:
  channels:
    - url: json://127.0.0.1:{sink_port}/alerts
      tags: [oncall]
environments:
  demo:
    base_url: http://127.0.0.1:{service_port}
    window: 12s
    interval: 1s
    lookback: 1m
    background_interval: 250ms
    probes_per_round: 40
    checks:
      - name: api-health
        type: http
        path: /api/health
        timeout: 2s
        expect:
          status: 200
          max_latency: 500ms
          json: {{status: ok}}
    analysis:
      policy: sequential
      confidence: 0.99
    rules:
      - name: probe-errors
        source: checks
        metric: error_rate
        max: 0.1   # the bad version's 40% fails it alone by round 6 of 12
      - name: health-latency
        source: checks
        check: api-health
        metric: latency_p95
        max_increase: 100%
    rollback:
      url: http://127.0.0.1:{receiver_port}/rollback
      secret: "{secret}"
    alerts:
      tags: [oncall]
"""


def demo_config(ports: dict[str, int], db: Path) -> str:
    """The demo agent's configuration: the ports of the service, receiver and sink
    (`service`, `receiver`, `sink`), and this SQLite file. The agent takes a free port as
    it binds (`listen: 127.0.0.1:0`) and says it (`agent_address`): a port picked here by
    binding 0, reading it and closing could be taken by another process before the agent
    bound it."""
    return CONFIG.format(
        service_port=ports["service"],
        receiver_port=ports["receiver"],
        sink_port=ports["sink"],
        db=db,
        token=TOKEN,
        secret=SECRET,
    )


class DemoService:
    """The service being deployed: 100–140 ms an answer. A busy machine adds its own delay
    to every measured latency: tens of milliseconds at load average 9, which against a
    20–40 ms service pushed the good version's p95 past twice its baseline's; against
    100–140 ms it stays well inside, so the good version passes on evidence even there. It
    runs in the demo's process, the agent in its own (`agent.demo_agent`: why). Version
    `bad` answers 40% 500s, and slowly (300 ms more)."""

    def __init__(self) -> None:
        self.version = "v1.0.0"
        self.rng = random.Random(7)

    async def health(self, request: web.Request) -> web.Response:
        if self.version.endswith("-bad"):
            await asyncio.sleep(0.3)
            if self.rng.random() < 0.4:
                return web.json_response({"status": "error"}, status=500)
        await asyncio.sleep(0.1 + self.rng.random() * 0.04)
        return web.json_response({"status": "ok", "version": self.version})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/health", self.health)
        return app


class Receivers:
    """The pipeline's rollback webhook and the on-call chat, both on loopback."""

    def __init__(self) -> None:
        self.rollbacks: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []

    async def rollback(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Postflight-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        )
        valid = hmac.compare_digest(expected, request.headers.get("X-Postflight-Signature", ""))
        if not valid:
            return web.json_response({"error": "bad signature"}, status=401)
        self.rollbacks.append(
            {"key": request.headers.get("Idempotency-Key"), "body": json.loads(body)}
        )
        return web.json_response({"ok": True})

    async def alert(self, request: web.Request) -> web.Response:
        self.alerts.append(await request.json())
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rollback", self.rollback)
        app.router.add_post("/alerts", self.alert)
        return app


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    """`app` served on a loopback port the kernel took as it bound: the runner, the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port: int = runner.addresses[0][1]
    return runner, port


def say(text: str = "", *, indent: int = 0) -> None:
    print(textwrap.indent(text, " " * indent), flush=True)


async def _ship(
    http: aiohttp.ClientSession,
    base: str,
    service: DemoService,
    receivers: Receivers,
    version: str,
    previous: str,
    metrics: dict[str, str],
) -> dict[str, Any]:
    """Deploy `version`, follow its window to the end; the deploy object as it ended."""
    service.version = version
    say(f"\n▶ The pipeline deploys {version} and registers a window:")
    say(f"POST {base}/v1/deploys  {{environment: demo, version: {version}}}", indent=2)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(
        f"{base}/v1/deploys",
        json={"environment": "demo", "version": version, "previous_version": previous},
        headers=headers,
    ) as response:
        deploy = await response.json()
        if response.status != 201:
            raise RuntimeError(f"registering failed: {response.status} {deploy}")
    say(f"→ 201 {deploy['id']}, state {deploy['state']}, ends {deploy['ends_at']}", indent=2)
    for warning in deploy.get("warnings") or ():  # e.g. a rule with no baseline yet
        say(f"⚠ {warning}", indent=2)
    rounds: list[dict[str, Any]] = []
    follow = asyncio.ensure_future(
        _follow_rounds(http, f"{base}/v1/deploys/{deploy['id']}/events", headers, rounds)
    )
    seen_rounds = 0
    seen_alerts = len(receivers.alerts)
    try:
        while True:
            await asyncio.sleep(0.25)
            async with http.get(f"{base}/v1/deploys/{deploy['id']}", headers=headers) as response:
                deploy = await response.json()
            for event in rounds[seen_rounds:]:
                say(round_line(event, metrics), indent=2)
            seen_rounds = len(rounds)
            for alert in receivers.alerts[seen_alerts:]:
                say(f"✉ alert to on-call: {alert.get('title')}", indent=2)
            seen_alerts = len(receivers.alerts)
            if deploy["state"] != "watching" and (
                deploy["state"] != "failed"
                or (deploy.get("rollback") or {}).get("state") != "pending"
            ):
                break
        await asyncio.sleep(0.5)  # let the last rounds and alerts arrive
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    for event in rounds[seen_rounds:]:
        say(round_line(event, metrics), indent=2)
    for alert in receivers.alerts[seen_alerts:]:
        say(f"✉ alert to on-call: {alert.get('title')}", indent=2)
    verdict = deploy.get("verdict") or {}
    say(f"■ {version}: {deploy['state'].upper()} — {verdict.get('reason', '')}", indent=2)
    ended: dict[str, Any] = deploy
    return ended


async def _follow_rounds(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], rounds: list[dict[str, Any]]
) -> None:
    """Each `round` event of the window's stream, as it comes."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with http.get(url, headers=headers, timeout=timeout) as response:
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event == "round":
                rounds.append(json.loads(line.removeprefix("data:")))
            elif not line:
                event = ""


def round_line(event: dict[str, Any], metrics: dict[str, str]) -> str:
    """`round  3: probe-errors=fail (47.5%)  …`: each rule's outcome and figure as of that
    round (the deploy object's `progress` is worded at most every 30 s, so its figures
    would repeat an earlier round's), in its metric's unit as alerts, the page and `status`
    write it (`common.units.format_value`: its own `{:.0%}` read 0.4% errors as `0%`)."""
    rules = (event.get("summary") or {}).get("rules") or {}
    shown = "  ".join(
        f"{name}={rule.get('outcome')}"
        + (
            f" ({format_value(metrics.get(name, ''), rule['observed'])})"
            if rule.get("observed") is not None
            else ""
        )
        for name, rule in rules.items()
    )
    return f"round {event.get('round', '?'):>2}: {shown}"


READING = (
    "Each round shows every rule's outcome so far: inconclusive until the evidence shows it"
    " within its bound (pass) or past it (fail: a rollback). A verdict's 'evidence N to 1,"
    " M needed' is the odds the data give for a regression, and the odds that fail a rule."
)
"""How to read the rounds and verdicts below (a good deploy's first rounds are
`inconclusive (0%)`), for a user who has not read the README's "How Postflight decides"."""


AGENT_START_S = 60.0
"""How long the demo waits for its agent to answer `/readyz` (a busy machine's Python start
and imports take seconds)."""


def own_env() -> dict[str, str]:
    """The demo's agent's environment: this one without a `POSTFLIGHT…` variable (it reads
    none, as `agent.demo_agent` says; nor may a tracer or a replica name reach it)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("POSTFLIGHT")}


async def start_agent(config: Path) -> asyncio.subprocess.Process:
    """The demo's agent in a process of its own (`agent.demo_agent`: why). Its standard
    input is a pipe this process holds: when it goes, so does the agent. Its standard
    output says its address, once (`agent_address`)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.demo_agent",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=own_env(),
    )


async def agent_address(agent: asyncio.subprocess.Process) -> str | None:
    """The agent's base URL (`http://127.0.0.1:PORT`, the port it took), as it says it once
    it listens; None when it ended first, or said nothing within `AGENT_START_S`."""
    assert agent.stdout is not None
    try:
        async with asyncio.timeout(AGENT_START_S):
            line = await agent.stdout.readline()
    except TimeoutError:
        return None
    return line.decode().strip() or None


async def stop_agent(agent: asyncio.subprocess.Process) -> int:
    """SIGTERM, and SIGKILL when it has not ended within its stop bound (10 s)."""
    if agent.returncode is None:
        agent.terminate()
        try:
            async with asyncio.timeout(10.0):
                return await agent.wait()
        except TimeoutError:
            agent.kill()
    return await agent.wait()


async def agent_ready(
    http: aiohttp.ClientSession, base: str, agent: asyncio.subprocess.Process
) -> bool:
    """Whether the agent answered `/readyz` within `AGENT_START_S` (False: it ended, or
    never answered; what it said is on this terminal, its stderr being the demo's)."""
    deadline = time.monotonic() + AGENT_START_S
    while agent.returncode is None and time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    return False


BASELINE_LATENCIES = 120
"""Latencies of the service the demo waits for its agent to keep in the background before
the first deploy (three background runs' worth): the baseline its latency rule compares
with. A fixed two seconds was enough for an agent sharing the demo's warm process; one
just started (imports, its first runs) on a busy machine drops its first runs' latencies
as its own lag, and the good deploy then had no baseline ("health-latency: no baseline")."""
BASELINE_WAIT_S = (2.0, 60.0)
"""The least and the most the demo waits for them (past the most, it goes on: the rounds
and the final words then say why the good deploy could not pass)."""


async def baseline_learnt(http: aiohttp.ClientSession, base: str) -> tuple[int, int]:
    """Wait until the agent kept `BASELINE_LATENCIES` latencies of the service's background
    probes (`BASELINE_WAIT_S`); the latencies it kept and dropped as its own lag, read from
    its `/metrics` (`postflight_check_runs_total`, `postflight_samples_dropped_total`)."""
    least, most = BASELINE_WAIT_S
    started = time.monotonic()
    kept = dropped = 0
    while True:
        await asyncio.sleep(0.25)
        async with http.get(f"{base}/metrics") as response:
            kept, dropped = kept_latencies(await response.text())
        waited = time.monotonic() - started
        if waited >= most or (waited >= least and kept >= BASELINE_LATENCIES):
            return kept, dropped


def kept_latencies(exposition: str, environment: str = "demo") -> tuple[int, int]:
    """(latencies kept, latencies dropped) of `environment`'s probes, from the agent's
    metrics: its check runs (a run dropped whole is not one) less the answers whose latency
    was dropped as the agent's own lag (`checks.lag`)."""
    runs = dropped = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.labels.get("environment") != environment:
                continue
            if sample.name == "postflight_check_runs_total":
                runs += sample.value
            elif (
                sample.name == "postflight_samples_dropped_total"
                and sample.labels.get("result") == "agent_lag_latency"
            ):
                dropped += sample.value
    return int(runs - dropped), int(dropped)


def overload_advice(good: dict[str, Any], load: float | None, cpus: int | None) -> str | None:
    """What to tell a newcomer whose good deploy the agent could not judge because the
    machine was too busy for it to keep time (None: that was not why). The agent dropped
    the probes it could not time rather than count its own delay against the service, as
    it does on every deploy; the demo cannot show a pass on evidence it did not keep."""
    reason = str((good.get("verdict") or {}).get("reason", ""))
    if good.get("state") != "inconclusive" or not reason.startswith("agent overloaded:"):
        return None
    busy = (
        f" (load average {load:.1f} on {counted(cpus, 'CPU')})" if load is not None and cpus else ""
    )
    return (
        f"This machine was too busy{busy} for the agent to keep time: its event loop ran"
        " late, so it dropped the probes it could not time rather than count its own delay"
        " against the service. On a real deploy that ends `inconclusive` and nothing is"
        " rolled back. The demo could not show a pass: run `postflight demo` again when"
        " the machine is less busy."
    )


def _load() -> tuple[float | None, int | None]:
    """The 1-minute load average (None where the system has none) and the CPUs."""
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on Windows
        load = None
    return load, os.cpu_count()


async def demo() -> bool:
    _stop_on_terminate()
    service, receivers = DemoService(), Receivers()
    served: dict[str, tuple[web.AppRunner, int]] = {}
    try:
        for name, app in (
            ("service", service.app()),
            ("receiver", receivers.app()),
            ("sink", receivers.app()),
        ):
            served[name] = await _start(app)
        ports = {name: port for name, (_, port) in served.items()}
        return await _story(service, receivers, ports)
    finally:
        for runner, _ in served.values():
            await runner.cleanup()


async def _story(service: DemoService, receivers: Receivers, ports: dict[str, int]) -> bool:
    """The demo's story, told with its service and receivers served on `ports`."""
    with tempfile.TemporaryDirectory(prefix="postflight-demo-") as tmp:
        text = demo_config(ports, Path(tmp) / "postflight.db")
        # self-contained: no POSTFLIGHT__ override (nor any other variable) may point
        # the demo at a real store, port or token
        settings = load_settings_text(text, source="demo config", env={})
        config = Path(tmp) / "postflight.yaml"
        config.write_text(text)
        say("Postflight demo — everything runs on 127.0.0.1, nothing leaves this machine.\n")
        say("The agent's configuration for this demo:")
        say(text.replace(TOKEN, "***").replace(SECRET, "***"), indent=2)
        agent = await start_agent(config)
        try:
            async with aiohttp.ClientSession() as http:
                base = await agent_address(agent)
                if base is None or not await agent_ready(http, base, agent):
                    say(f"\n✘ The demo's agent did not start (exit {agent.returncode}).")
                    return False
                say(
                    f"▶ Demo service v1.0.0 on :{ports['service']}; agent on {base}"
                    f" (its own process, pid {agent.pid})"
                )
                say("  The agent probes the service in the background to learn its normal latency…")
                kept, dropped = await baseline_learnt(http, base)
                say(
                    f"  {kept} latencies kept"
                    + (f", {dropped} dropped: agent overloaded" if dropped else "")
                )
                if kept < BASELINE_LATENCIES:
                    say(
                        f"  (fewer than the {BASELINE_LATENCIES} it should have within"
                        f" {format_duration(BASELINE_WAIT_S[1])}: this machine is too busy for"
                        " the agent to keep time, and the good deploy may end inconclusive)"
                    )
                say(textwrap.fill(READING, width=88, initial_indent="  ", subsequent_indent="  "))
                metrics = {r.name: r.metric or "" for r in settings.environments["demo"].rules}
                good = await _ship(http, base, service, receivers, "v1.1.0", "v1.0.0", metrics)
                bad = await _ship(http, base, service, receivers, "v1.2.0-bad", "v1.1.0", metrics)
        finally:
            await stop_agent(agent)
        say("\n▶ What the pipeline's rollback webhook received (signature verified):")
        for item in receivers.rollbacks:
            body = item["body"]
            say(
                f"Idempotency-Key {item['key']}: roll back {body['deploy']['version']}"
                f" — {body['reason']}",
                indent=2,
            )
        ok = (
            good["state"] == "passed"
            and bad["state"] == "rolled_back"
            and len(receivers.rollbacks) == 1
        )
        say(
            "\n✔ As expected: the good deploy passed, the bad one was rolled back once."
            if ok
            else f"\n✘ Unexpected outcome: good={good['state']}, bad={bad['state']},"
            f" rollbacks={len(receivers.rollbacks)}"
        )
        advice = None if ok else overload_advice(good, *_load())
        if advice is not None:
            say(textwrap.fill(advice, width=88), indent=2)
        return ok


def _stop_on_terminate() -> None:
    """SIGTERM or SIGHUP (a terminal closed, `timeout 10 postflight demo`) stops the demo as
    CTRL-C does: its agent stopped and its temp dir removed (the default action killed it
    there, its store left in /tmp), then exit 143 or 129."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, _terminated, task, sig)


_TERMINATED_BY: list[signal.Signals] = []


def _terminated(task: asyncio.Task[bool], sig: signal.Signals) -> None:
    _TERMINATED_BY.append(sig)
    task.cancel()


def _stopped(sig: signal.Signals) -> int:
    """Says the demo was stopped (it ended silently, 143 or 130, its output cut off
    mid-story) once its agent has stopped and its temp dir is gone; 128 + the signal."""
    code = 128 + sig  # said as every command's end says its code (agent.cli.exits.ended)
    said = f"{STOPPED_WORDS[sig]}; its agent stopped and its temp dir removed (exit {code})"
    print(f"\npostflight demo: {said}", file=sys.stderr)
    return code


def run_demo() -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, format="  log: %(message)s")
    started = time.monotonic()
    try:
        ok = asyncio.run(demo())
    except asyncio.CancelledError:
        if not _TERMINATED_BY:
            raise
        return _stopped(_TERMINATED_BY[0])
    except KeyboardInterrupt:  # CTRL-C: asyncio.run cancelled the demo, then raised
        return _stopped(signal.SIGINT)
    print(f"(demo took {time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0 if ok else 1

"""`postflight demo`: the whole agent on one machine, no network, no accounts.

It starts a small demo service, a rollback receiver that checks the signature, a
chat sink for alerts and the agent itself (SQLite in a temporary directory), then
ships a good deploy (it passes) and a bad one (it is rolled back), printing each
step so a newcomer sees what the agent does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agent.settings_file import load_settings_text

TOKEN = "demo-token-please-change"
SECRET = "demo-webhook-secret"

CONFIG = """\
server:
  listen: 127.0.0.1:{agent_port}
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
        max: 0.05
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DemoService:
    """The service being deployed: 100–140 ms an answer. A busy machine adds its own delay
    to every measured latency (the agent, this service and the receivers share one event
    loop here): tens of milliseconds at load average 9, which against a 20–40 ms service
    pushed the good version's p95 past twice its baseline's; against 100–140 ms it stays
    well inside, so the good version passes on evidence even there. Version `bad` answers
    40% 500s, and slowly (300 ms more)."""

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


async def _start(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


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
) -> str:
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
            if deploy["state"] not in ("watching", "scheduled") and (
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
    state: str = deploy["state"]
    return state


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
    """`round  3: probe-errors=fail (48%)  …`: each rule's outcome and figure as of that
    round (the deploy object's `progress` is worded at most every 30 s, so its figures
    would repeat an earlier round's)."""
    rules = (event.get("summary") or {}).get("rules") or {}
    shown = "  ".join(
        f"{name}={rule.get('outcome')}"
        + (
            f" ({_fmt(rule['observed'], metrics.get(name, ''))})"
            if rule.get("observed") is not None
            else ""
        )
        for name, rule in rules.items()
    )
    return f"round {event.get('round', '?'):>2}: {shown}"


def _fmt(value: float, metric: str) -> str:
    if metric.startswith("latency"):
        return f"{value * 1000:.0f}ms"
    if metric == "error_rate":
        return f"{value:.0%}"
    return f"{value:.3g}"


async def demo() -> bool:
    from agent.api.runner import ApiRunner
    from agent.api.server_log import ServerLog
    from agent.app import build_app
    from agent.appkeys import METRICS

    ports = {name: _free_port() for name in ("agent", "service", "receiver", "sink")}
    with tempfile.TemporaryDirectory(prefix="postflight-demo-") as tmp:
        text = CONFIG.format(
            agent_port=ports["agent"],
            service_port=ports["service"],
            receiver_port=ports["receiver"],
            sink_port=ports["sink"],
            db=Path(tmp) / "postflight.db",
            token=TOKEN,
            secret=SECRET,
        )
        # self-contained: no POSTFLIGHT__ override (nor any other variable) may point
        # the demo at a real store, port or token
        settings = load_settings_text(text, source="demo config", env={})
        service, receivers = DemoService(), Receivers()
        say("Postflight demo — everything runs on 127.0.0.1, nothing leaves this machine.\n")
        say("The agent's configuration for this demo:")
        say(text.replace(TOKEN, "***").replace(SECRET, "***"), indent=2)
        runners = [
            await _start(service.app(), ports["service"]),
            await _start(receivers.app(), ports["receiver"]),
            await _start(receivers.app(), ports["sink"]),
        ]
        agent_app = build_app(settings, poll_interval=0.2, owner="demo", environ={})
        agent_runner = ApiRunner(agent_app, access_log=None, logger=ServerLog(agent_app[METRICS]))
        await agent_runner.setup()
        await web.TCPSite(agent_runner, "127.0.0.1", ports["agent"]).start()
        base = f"http://127.0.0.1:{ports['agent']}"
        say(f"▶ Demo service v1.0.0 on :{ports['service']}; agent on {base}")
        say("  The agent probes the service in the background to learn its normal latency…")
        await asyncio.sleep(2.0)
        try:
            async with aiohttp.ClientSession() as http:
                metrics = {r.name: r.metric or "" for r in settings.environments["demo"].rules}
                good = await _ship(http, base, service, receivers, "v1.1.0", "v1.0.0", metrics)
                bad = await _ship(http, base, service, receivers, "v1.2.0-bad", "v1.1.0", metrics)
        finally:
            await agent_runner.cleanup()
            for runner in runners:
                await runner.cleanup()
        say("\n▶ What the pipeline's rollback webhook received (signature verified):")
        for item in receivers.rollbacks:
            body = item["body"]
            say(
                f"Idempotency-Key {item['key']}: roll back {body['deploy']['version']}"
                f" — {body['reason']}",
                indent=2,
            )
        ok = good == "passed" and bad == "rolled_back" and len(receivers.rollbacks) == 1
        say(
            "\n✔ As expected: the good deploy passed, the bad one was rolled back once."
            if ok
            else f"\n✘ Unexpected outcome: good={good}, bad={bad},"
            f" rollbacks={len(receivers.rollbacks)}"
        )
        return ok


def run_demo() -> int:
    import logging

    logging.basicConfig(level=logging.ERROR, format="  log: %(message)s")
    started = time.monotonic()
    ok = asyncio.run(demo())
    print(f"(demo took {time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0 if ok else 1

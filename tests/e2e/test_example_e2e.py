"""The contract's example configuration (`config/postflight.example.yaml`), run verbatim
by the real `postflight run` and driven as a pipeline and on-call would (contract §6:
"It must validate as is (with its ${VAR}s set), and every key in it must do what its
comment says").

Only its `${VAR}`s are set: Sentry and New Relic at the fakes of `tests.fakes`, the
Prometheus at the worker's real one (`tests.prometheus`) with a lane of `job="web"`, the
query the example's `http-5xx` rule selects, serving 200s only (no 5xx series: a healthy
service, judged 0), the environments at local targets, the rollback at a receiver, the
chat and e-mail channels at a `json://` and an aiosmtpd sink. The one thing changed is
each deploy's `--window` (the example's are 15m and 5m): production's 30 s interval makes
its bad deploy's window end with its rollback at the third round (~90 s, sequential at
confidence 0.99), staging's 15 s one a window of 40 s three rounds. Both run at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.conftest import SECRET, LocalTarget
from tests.e2e.providers_support import GrowingSentry
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import free_port
from tests.fakes.sentry import SentryStats
from tests.prometheus import ONE_PROMETHEUS, PrometheusStack
from tests.receivers import JsonSink, RollbackReceiver, SmtpSink

pytestmark = [pytest.mark.e2e, ONE_PROMETHEUS]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "example-e2e-api-token-0123456789"
SENTRY_TOKEN = "sntrys_example-e2e-0123456789"
NEWRELIC_KEY = "NRAK-EXAMPLEE2E0123456789"
NRQL = "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web (production)'"


class Service(LocalTarget):
    """What the example's checks call: health, login (a token), me (that token), feed.
    `bad`: every answer a 500."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = False
        self.answers = 0
        self.errors = 0

    def _answer(self, body: dict[str, Any], status: int = 200) -> web.Response:
        self.answers += 1
        if self.bad:
            self.errors += 1
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response(body, status=status)

    async def health(self, request: web.Request) -> web.Response:
        return self._answer({"status": "ok"})

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = body == {"user": "smoke", "password": "smoke"}
        return self._answer({"token": "t0k"} if ok else {}, 200 if ok else 401)

    async def me(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == "Bearer t0k"
        return self._answer({"user": "smoke"} if ok else {}, 200 if ok else 401)

    async def feed(self, request: web.Request) -> web.Response:
        return self._answer({"items": []})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_post("/api/login", self.login)
        app.router.add_get("/api/me", self.me)
        app.router.add_get("/api/feed", self.feed)


async def started(service: Service) -> Service:
    await service.start()
    return service


async def cli(env: dict[str, str], *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def services() -> AsyncIterator[tuple[Service, Service]]:
    prod, staging = await started(Service()), await started(Service())
    yield prod, staging
    await prod.stop()
    await staging.stop()


@pytest.mark.timeout(240)
async def test_the_example_run_verbatim_rolls_back_a_bad_deploy_once_and_passes_a_good_one(
    tmp_path: Path,
    prometheus_stack: PrometheusStack,
    rollback_receiver: Callable[..., Any],
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
    services: tuple[Service, Service],
) -> None:
    prod, staging = services
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    web_lane = prometheus_stack.open_lane({"200": 100.0}, job="web")
    try:
        async with (
            GrowingSentry(token=SENTRY_TOKEN) as sentry,
            FakeNewRelic(api_key=NEWRELIC_KEY) as newrelic,
        ):
            sentry.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release="v1")
            sentry.grow("v2", per_second=50, failure_rate=0.01)
            newrelic.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
            await prometheus_stack.wait_for_samples(web_lane, 2)
            await run_the_example(
                tmp_path,
                prometheus_stack,
                receiver,
                json_sink,
                smtp_sink,
                prod,
                staging,
                sentry,
                newrelic,
            )
    finally:
        prometheus_stack.close_lane(web_lane)


async def run_the_example(
    tmp_path: Path,
    prometheus_stack: PrometheusStack,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
    prod: Service,
    staging: Service,
    sentry: GrowingSentry,
    newrelic: FakeNewRelic,
) -> None:
    config = tmp_path / "postflight.example.yaml"
    shutil.copy(ROOT / "config" / "postflight.example.yaml", config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "POSTFLIGHT_LISTEN": f"127.0.0.1:{port}",
        "POSTFLIGHT_API_TOKEN": TOKEN,
        "POSTFLIGHT_STORE": f"sqlite:///{tmp_path / 'postflight.db'}",
        "SENTRY_URL": sentry.url,
        "SENTRY_AUTH_TOKEN": SENTRY_TOKEN,
        "NEW_RELIC_API_URL": newrelic.graphql_url,
        "NEW_RELIC_API_KEY": NEWRELIC_KEY,
        "PROMETHEUS_URL": prometheus_stack.url,
        "ONCALL_CHAT_URL": json_sink.url(),
        "ONCALL_EMAIL_URL": smtp_sink.url(),
        "PROD_URL": prod.url,
        "STAGING_URL": staging.url,
        "ROLLBACK_URL": receiver.url,
        "ROLLBACK_SECRET": SECRET,
        "POSTFLIGHT_URL": url,
    }
    code, said = await cli(env, "validate-config", str(config))
    assert code == 0, said
    log = (tmp_path / "agent.log").open("wb")
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "run",
        "--config",
        str(config),
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the agent was not ready in 30 s")
            prod.bad = True
            bad, good = await asyncio.gather(
                cli(
                    env,
                    "register",
                    "--env",
                    "production",
                    "--version",
                    "v2",
                    "--previous",
                    "v1",
                    "--window",
                    "3m",
                    "--wait",
                ),
                cli(
                    env,
                    "register",
                    "--env",
                    "staging",
                    "--version",
                    "s2",
                    "--previous",
                    "s1",
                    "--window",
                    "40s",
                    "--wait",
                ),
            )
            agent_log = (tmp_path / "agent.log").read_text()
            assert good[0] == 0, good[1] + agent_log
            assert "passed" in good[1], good[1]
            assert bad[0] == 1, bad[1] + agent_log
            assert "rolled back" in bad[1] and "probe-errors" in bad[1], bad[1]
            # counted at the receiver: one signed call, the target's errors behind it
            assert len(receiver.attempts) == 1, receiver.attempts
            assert receiver.attempts[0].signature_ok and receiver.attempts[0].accepted
            assert prod.errors >= 5 and staging.errors == 0
            # every provider rule of the example answered (the healthy service's 5xx
            # share is 0, not no data)
            code, shown = await cli(env, "status", "--json")
            assert code == 0, shown
            deploys = {d["version"]: d for d in json.loads(shown)["items"]}
            rules = {r["name"]: r for r in deploys["v2"]["verdict"]["rules"]}
            assert rules["http-5xx"]["observed"] == 0, rules["http-5xx"]
            for name in ("sentry-errors", "apm-latency"):
                assert rules[name]["observed"] is not None, rules[name]
            titles = [n.title for n in json_sink.notifications]
            assert any("rollback delivered" in t for t in titles), titles
            assert any("staging s2: deploy passed" in t for t in titles), titles
            # each channel takes an alert on its own: on a loaded machine a mail's SMTP
            # exchange can trail the JSON post (or wait for its retry, 5 s after a send not
            # started in time), so the two are compared once the mails caught up, or 20 s on
            loop = asyncio.get_running_loop()
            caught_up_by = loop.time() + 20.0
            while len(smtp_sink.messages) < len(json_sink.notifications):
                if loop.time() > caught_up_by:
                    break
                await asyncio.sleep(0.1)
            assert len(smtp_sink.messages) == len(json_sink.notifications), titles
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(f"{url}/deploys/{deploys['v2']['id']}", headers=headers) as r:
                assert r.status == 200 and "v2" in await r.text()
            async with session.get(f"{url}/metrics") as r:
                metrics = await r.text()
            assert (
                'postflight_rollbacks_total{environment="production",result="delivered"} 1.0'
                in metrics
            )
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
            await asyncio.wait_for(agent.wait(), 15)
        log.close()
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text()

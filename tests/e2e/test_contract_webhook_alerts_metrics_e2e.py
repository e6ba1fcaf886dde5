"""Contract §3 (the rollback webhook), §4 (alerts) and §5 (metrics), sentence by sentence,
as an acceptance test outside the project drives them: the real `postflight run` on a
configuration written from the contract's `postflight.example.yaml` (its keys and
`${VAR}`s; only the paces are cut to seconds, and one more channel with a tag no
environment picks, one that always fails), deploys registered through the API, a rollback
receiver that checks every header and the signature exactly as §3 writes them (its own
HMAC, not the agent's), apprise's `json://` and `mailto://` (aiosmtpd) channels, and a
real Prometheus scraping `/metrics`, read back through Prometheus's query API.

The run, staging and production side by side: staging passes a good deploy, then a
deploy whose probes fail for a while and recover (a breach, then its resolve, then
passed); production rolls a bad deploy back
through a webhook answering 503, 429 (Retry-After: 1), 408, then 200 (four attempts, one
body, one key), with Sentry and New Relic unreachable (one warning each, not one per
round); then a second bad deploy whose webhook answers 400 (failed at once, one attempt,
an alert). Prometheus must then hold what the receivers counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.settings import EnvironmentSettings
from common.times import rfc3339
from tests.e2e.conftest import LocalTarget
from tests.fakes.prometheus import PrometheusProcess, free_port, prometheus_binary
from tests.prometheus import ONE_PROMETHEUS, PrometheusStack
from tests.receivers import (
    HangingServer,
    JsonNotification,
    JsonSink,
    RollbackAttempt,
    RollbackReceiver,
    SmtpSink,
)
from tests.spec_example import EXAMPLE, ROOT

pytestmark = pytest.mark.e2e
"""Only the test that reads the metrics back through a real Prometheus is in
`ONE_PROMETHEUS`'s group (one worker, one test at a time); the others need none and run
on any worker."""

TOKEN = "contract-345-api-token-0123456789"
SECRET = "contract-345-rollback-secret"
PACES = (
    # (the example's text, what this run writes instead): seconds, not minutes
    ("    interval: 30s", "    interval: 1s"),
    ("    background_interval: 30s", "    background_interval: 500ms"),
    ("        duration: 10s", "        duration: 500ms"),
    ("    interval: 15s", "    interval: 2s"),
    ("      failure_limit: 2", "      failure_limit: 3"),
    (
        "      max_attempts: 8",
        "      max_attempts: 8\n      backoff: 50ms\n      max_backoff: 100ms",
    ),
)
"""The only changes to the example's environments (staging's failure_limit 3 gives the
test a round to see the breach's alert before it turns the target healthy again;
production's retries wait at most 100 ms, where the defaults' 1 s doubling waited up to
1 + 4 s, so an attempt that waits 1 s waits out a `Retry-After`, not its backoff)."""

EDGES = """\
  canary:
    base_url: {prod}
    window: 1m
    interval: 1s
    checks:
      - {{name: api-health, type: http, path: /api/health}}
    analysis: {{policy: threshold, failure_limit: 1}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    rollback: {{url: "{hung}", secret: "${{ROLLBACK_SECRET}}", timeout: 500ms, backoff: 50ms,
                max_backoff: 100ms}}
    alerts: {{tags: [oncall]}}
  edge:
    base_url: {prod}
    window: 1m
    interval: 1s
    checks:
      - {{name: api-health, type: http, path: /api/health}}
    analysis: {{policy: threshold, failure_limit: 1}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    rollback: {{url: "{refused}", secret: "${{ROLLBACK_SECRET}}", max_attempts: 3,
                backoff: 50ms, max_backoff: 100ms}}
    alerts: {{tags: [oncall]}}
"""
"""Two environments beside the example's, for the delivery's edges at a test's pace:
`canary`'s webhook hangs once (past its 500ms timeout), then answers 503, with
max_attempts left at its default; `edge`'s refuses connections, 3 attempts."""


class Service(LocalTarget):
    """What the example's checks call; `bad`: every answer a 500."""

    def __init__(self) -> None:
        super().__init__()
        self.bad = False

    def _answer(self, body: dict[str, Any]) -> web.Response:
        if self.bad:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response(body)

    async def health(self, request: web.Request) -> web.Response:
        return self._answer({"status": "ok"})

    async def login(self, request: web.Request) -> web.Response:
        await request.read()
        return self._answer({"token": "t0k"})

    async def me(self, request: web.Request) -> web.Response:
        return self._answer({"user": "smoke"})

    async def feed(self, request: web.Request) -> web.Response:
        return self._answer({"items": []})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)
        app.router.add_post("/api/login", self.login)
        app.router.add_get("/api/me", self.me)
        app.router.add_get("/api/feed", self.feed)


def configuration(channels: str, environments: str, *, alerting_timeout: str = "") -> str:
    """The example, its paces cut, `channels` added to `alerting.channels` and
    `environments` to its environments; `alerting_timeout`: `alerting.timeout` (the
    example leaves it at its 5s default)."""
    text = EXAMPLE.read_text().rstrip("\n") + "\n" + environments
    for was, now in PACES:
        assert was in text, was
        text = text.replace(was, now)
    anchor = "alerting:\n  channels:"
    assert anchor in text
    first = text.index("\n", text.index(anchor) + len(anchor))
    text = text[: first + 1] + channels + text[first + 1 :]
    if alerting_timeout:
        text = text.replace("alerting:\n", f"alerting:\n  timeout: {alerting_timeout}\n", 1)
    return text


def signature_as_written(secret: str, timestamp: str, body: bytes) -> str:
    """§3: `sha256=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<raw body>")>`."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class Daemon:
    """`postflight run` in its own process, and the API client a pipeline would be."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http
        self.headers = {"Authorization": f"Bearer {TOKEN}"}

    async def register(self, **body: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.url}/v1/deploys", json=body, headers=self.headers) as r:
            data: dict[str, Any] = await r.json()
            assert r.status == 201, data
            return data

    async def get(self, deploy_id: str) -> dict[str, Any]:
        async with self.http.get(f"{self.url}/v1/deploys/{deploy_id}", headers=self.headers) as r:
            data: dict[str, Any] = await r.json()
            assert r.status == 200, data
            return data

    async def kept_answers(self, environment: str, check: str) -> float:
        """How many of `check`'s probes in `environment` the agent kept, by §5's
        `postflight_check_runs_total` (every result; a probe dropped as the agent's own lag
        is not counted there)."""
        async with self.http.get(f"{self.url}/metrics") as r:
            text = await r.text()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "postflight_check_runs_total"
            and sample.labels.get("environment") == environment
            and sample.labels.get("check") == check
        )

    async def baseline_kept(self, environment: str, check: str, within: float = 60.0) -> None:
        """Wait until the agent kept answers of more than one background run of `check` (an
        http check) in `environment`, before any deploy there: a check's runs follow one
        another, so a run with answers kept was stored before this returns, and a deploy
        registered after has it in its baseline. Registered at once, production's first
        deploy came 0.35-1.4 s after the daemon began probing: at load 20, 2 of 27 came
        before its first 500 ms run ended, the window cut the runs in flight (by design,
        `agent.windows.in_flight`), and with no baseline its alerts said "baseline n/a"
        (rightly: its bound is absolute, and it was rolled back all the same), where this
        test asserts the figure; in 3 more, the one run in its lookback was stored 7-58 ms
        before it."""
        one_run = EnvironmentSettings.model_fields["probes_per_round"].default
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (kept := await self.kept_answers(environment, check)) <= one_run:
            assert loop.time() < deadline, f"{kept} {check} answers kept in {environment}"
            await asyncio.sleep(0.1)

    async def settled(self, deploy_id: str, within: float = 90.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            deploy = await self.get(deploy_id)
            pending = (deploy.get("rollback") or {}).get("state") == "pending"
            if deploy["state"] not in ("watching", "scheduled") and not pending:
                return deploy
            assert loop.time() < deadline, deploy
            await asyncio.sleep(0.2)


class Scraper:
    """A real Prometheus scraping the daemon, read through its HTTP query API."""

    def __init__(self, process: PrometheusProcess, http: aiohttp.ClientSession) -> None:
        self.process = process
        self.http = http

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.process.url}/api/v1/query", params={"query": promql}) as r:
            data = await r.json()
            assert data["status"] == "success", data
            result: list[dict[str, Any]] = data["data"]["result"]
            return result

    async def value(self, promql: str) -> float | None:
        result = await self.query(promql)
        return float(result[0]["value"][1]) if result else None

    async def until(
        self, promql: str, done: Callable[[float | None], bool], within: float = 30.0
    ) -> float | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            value = await self.value(promql)
            if done(value):
                return value
            assert loop.time() < deadline, f"{promql}: {value}"
            await asyncio.sleep(0.25)


async def wait_for_title(sink: JsonSink, text: str, within: float = 60.0) -> JsonNotification:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = [n for n in sink.notifications if text in n.title]
        if found:
            return found[0]
        assert loop.time() < deadline, (text, [n.title for n in sink.notifications])
        await asyncio.sleep(0.1)


@pytest.fixture
async def services() -> AsyncIterator[tuple[Service, Service]]:
    prod, staging = Service(), Service()
    await prod.start()
    await staging.start()
    yield prod, staging
    await prod.stop()
    await staging.stop()


@ONE_PROMETHEUS
@pytest.mark.timeout(300)
async def test_webhook_alerts_and_metrics_as_the_contract_writes_them(
    tmp_path: Path,
    prometheus_stack: PrometheusStack,
    rollback_receiver: Callable[..., Any],
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
    services: tuple[Service, Service],
) -> None:
    if prometheus_binary() is None:
        pytest.skip("prometheus (Debian package prometheus) is not installed")
    prod, staging = services
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    # max_attempts left out (default 8): a hang (timed out), then 503s; a 9th would be a 200
    hung_then_503: RollbackReceiver = await rollback_receiver(SECRET, ["hang", *[503] * 7])
    unpicked, failing = JsonSink(), JsonSink()
    await unpicked.start()
    await failing.start()
    failing.fail_always(500)
    web_lane = prometheus_stack.open_lane({"200": 100.0}, job="web")
    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        configuration(
            f"    - url: {unpicked.url()}\n      tags: [pager]\n"
            f"    - url: {failing.url()}\n      tags: [oncall]\n",
            EDGES.format(
                prod=prod.url, hung=hung_then_503.url, refused=f"http://127.0.0.1:{free_port()}/r"
            ),
        )
    )
    env = example_env(port, receiver.url, json_sink.url(), smtp_sink.url(), prod, staging)
    env["PROMETHEUS_URL"] = prometheus_stack.url
    scraper_process = PrometheusProcess(
        [f"127.0.0.1:{port}"], job="postflight", scrape_interval="500ms"
    )
    try:
        # Prometheus first: its first scrape comes ~5 s after it starts (when its scrape
        # manager applies the targets), which the daemon's own start then overlaps
        await scraper_process.start()
        async with daemon_run(tmp_path, config, env) as daemon:
            scraper = Scraper(scraper_process, daemon.http)
            await prometheus_stack.wait_for_samples(web_lane, 2)
            await drive(daemon, scraper, receiver, json_sink, smtp_sink, unpicked, failing,
                        prod, staging, hung_then_503)  # fmt: skip
    finally:
        await scraper_process.stop()
        prometheus_stack.close_lane(web_lane)
        await unpicked.stop()
        await failing.stop()
    # §4: a channel that fails is logged (its address, never a secret in it)
    said = (tmp_path / "agent.log").read_text()
    assert f"failed on json://127.0.0.1:{failing.port}/" in said, said


def example_env(
    port: int, rollback: str, chat: str, mail: str, prod: Service, staging: Service
) -> dict[str, str]:
    """The example's `${VAR}`s: Sentry and New Relic where nothing listens (unreachable),
    the rest at this test's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFLIGHT")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "POSTFLIGHT_LISTEN": f"127.0.0.1:{port}",
        "POSTFLIGHT_API_TOKEN": TOKEN,
        "SENTRY_URL": f"http://127.0.0.1:{free_port()}",
        "SENTRY_AUTH_TOKEN": "sntrys_contract-345-0123456789",
        "NEW_RELIC_API_URL": f"http://127.0.0.1:{free_port()}/graphql",
        "NEW_RELIC_API_KEY": "NRAK-CONTRACT3450123456789",
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "ONCALL_CHAT_URL": chat,
        "ONCALL_EMAIL_URL": mail,
        "PROD_URL": prod.url,
        "STAGING_URL": staging.url,
        "ROLLBACK_URL": rollback,
        "ROLLBACK_SECRET": SECRET,
    }


@contextlib.asynccontextmanager
async def daemon_run(
    tmp_path: Path, config: Path, env: dict[str, str], *flags: str
) -> AsyncIterator[Daemon]:
    """`postflight run --config CONFIG [FLAGS]` on a store in `tmp_path`, ready; stopped
    with SIGTERM after, which must end it with 0 and no secret in its log."""
    env = env | {"POSTFLIGHT_STORE": f"sqlite:///{tmp_path / 'postflight.db'}"}
    url = f"http://{env['POSTFLIGHT_LISTEN']}"
    log = (tmp_path / "agent.log").open("wb")
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(config), *flags,
        env=env, cwd=tmp_path, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert agent.returncode is None, (tmp_path / "agent.log").read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"not ready in 60 s:\n{(tmp_path / 'agent.log').read_text()}")
            yield Daemon(url, http)
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
            await asyncio.wait_for(agent.wait(), 15)
        log.close()
    said = (tmp_path / "agent.log").read_text()
    assert agent.returncode == 0, said
    assert SECRET not in said


async def drive(
    daemon: Daemon,
    scraper: Scraper,
    receiver: RollbackReceiver,
    sink: JsonSink,
    smtp: SmtpSink,
    unpicked: JsonSink,
    failing: JsonSink,
    prod: Service,
    staging: Service,
    hung_then_503: RollbackReceiver,
) -> None:
    # §5 postflight_build_info: a gauge of 1 with Postflight's own version
    build = await scraper.until("postflight_build_info", lambda v: v is not None)
    assert build == 1
    (series,) = await scraper.query("postflight_build_info")
    assert series["metric"]["version"] == __version__

    # staging and production (with canary and edge) are watched side by side, as the
    # daemon watches environments: each side's deploys one after another
    async with asyncio.TaskGroup() as sides:
        staging_side = sides.create_task(on_staging(daemon, scraper, receiver, sink, staging))
        production_side = sides.create_task(
            on_production(daemon, receiver, sink, prod, hung_then_503)
        )
    s2, s3, s4, s5, s6 = staging_side.result()
    v2, v3, v4, c2, e2 = production_side.result()
    # the rollbacks v2 and v3 asked for, and none other: not staging's dry run, nor v4
    assert [a.idempotency_key for a in receiver.attempts] == [v2["id"]] * 4 + [v3["id"]]

    # ---- §4 routing: the e-mail channel (tags oncall, email) took every alert the chat
    # one did; the channel tagged pager, which no environment picks, none. A window's last
    # alerts may still be on their way once it settled (at load 39 the chat took v2.4.3's
    # "provider newrelic unreachable" while the mail was waited for, one alert short), so
    # the two are compared until they agree
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (subjects := sorted(str(m["Subject"]) for m in smtp.messages)) != (
        titles := sorted(n.title for n in sink.notifications)
    ):
        assert loop.time() < deadline, (subjects, titles)
        await asyncio.sleep(0.1)
    assert unpicked.arrived == 0
    await failing.wait_arrived(len(sink.notifications), within=30)

    # ---- §4 every alert: its title begins `[postflight] <environment> <version>:`, its
    # body names the deploy id, no secret anywhere
    deploys = (v2, v3, v4, c2, e2, s2, s3, s4, s5, s6)
    versions = {d["id"]: (d["environment"], d["version"]) for d in deploys}
    for note in sink.notifications:
        ids = [i for i in versions if f"`{i}`" in note.message]
        assert len(ids) == 1, note.payload
        environment, version = versions[ids[0]]
        assert note.title.startswith(f"[postflight] {environment} {version}: "), note.title
        assert SECRET not in note.title + note.message and TOKEN not in note.message
    # one notification per deploy and event: no title twice (each names its deploy's version)
    titles = [n.title for n in sink.notifications]
    assert len(titles) == len(set(titles)), titles

    # ---- §5 as Prometheus stored it, against what the receivers counted
    def summed(promql: str) -> str:
        return f"sum({promql})"

    expect: dict[str, Callable[[float | None], bool]] = {
        'postflight_rollbacks_total{environment="production",result="delivered"}': (
            lambda v: v == 1
        ),
        'postflight_rollbacks_total{environment="production",result="failed"}': lambda v: v == 1,
        'postflight_windows_total{environment="production",outcome="rolled_back"}': (
            lambda v: v == 1
        ),
        'postflight_windows_total{environment="production",outcome="failed"}': lambda v: v == 1,
        'postflight_windows_total{environment="staging",outcome="passed"}': lambda v: v == 2,
        'postflight_windows_total{environment="staging",outcome="failed"}': lambda v: v == 1,
        'postflight_windows_total{environment="staging",outcome="superseded"}': lambda v: v == 1,
        'postflight_windows_total{environment="staging",outcome="cancelled"}': lambda v: v == 1,
        'postflight_windows_total{environment="production",outcome="inconclusive"}': (
            lambda v: v == 1
        ),
        'postflight_windows_total{environment=~"canary|edge",outcome="failed"}': lambda v: v == 2,
        'postflight_rollbacks_total{environment=~"canary|edge",result="failed"}': (
            lambda v: v == 2
        ),
        'postflight_rollbacks_total{environment="staging"}': lambda v: not v,
        "postflight_windows_active": lambda v: v == 0,
        'postflight_alerts_total{result="sent"}': lambda v: v == 2 * len(sink.notifications),
        # the failing channel failed each alert: counted once, at its first failure
        'postflight_alerts_total{result="failed"}': lambda v: v == len(sink.notifications),
        'postflight_check_runs_total{environment="production",check="api-health",result="fail"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_check_runs_total{environment="staging",check="api-health",result="pass"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_check_duration_seconds_count{environment="production",check="feed-latency"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_rule_evaluations_total{environment="production",rule="probe-errors",outcome="fail"}': (  # noqa: E501
            lambda v: v is not None and v >= 1
        ),
        'postflight_provider_requests_total{provider="sentry",result="error"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_provider_requests_total{provider="newrelic",result="error"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_provider_requests_total{provider="prometheus",result="ok"}': (
            lambda v: v is not None and v >= 1
        ),
        'postflight_provider_request_duration_seconds_count{provider="prometheus"}': (
            lambda v: v is not None and v >= 1
        ),
    }
    for promql, done in expect.items():
        await scraper.until(summed(promql), done)
    # types and labels as Prometheus's metadata and series say
    async with scraper.http.get(f"{scraper.process.url}/api/v1/metadata") as r:
        metadata = (await r.json())["data"]
    kinds = {
        "postflight_build_info": "gauge",
        "postflight_windows_active": "gauge",
        "postflight_windows_total": "counter",
        "postflight_check_runs_total": "counter",
        "postflight_check_duration_seconds": "histogram",
        "postflight_rule_evaluations_total": "counter",
        "postflight_rollbacks_total": "counter",
        "postflight_alerts_total": "counter",
        "postflight_provider_requests_total": "counter",
        "postflight_provider_request_duration_seconds": "histogram",
    }
    for name, kind in kinds.items():
        said = metadata.get(name) or metadata.get(name.removesuffix("_total"))
        assert said and said[0]["type"] == kind, (name, said)
    labels = {
        "postflight_windows_active": {"environment"},
        "postflight_windows_total": {"environment", "outcome"},
        "postflight_check_runs_total": {"environment", "check", "result"},
        "postflight_check_duration_seconds_bucket": {"environment", "check", "le"},
        "postflight_rule_evaluations_total": {"environment", "rule", "outcome"},
        "postflight_rollbacks_total": {"environment", "result"},
        "postflight_alerts_total": {"result"},
        "postflight_provider_requests_total": {"provider", "result"},
        "postflight_provider_request_duration_seconds_bucket": {"provider", "le"},
    }
    scrape_labels = {"__name__", "job", "instance"}
    for name, names in labels.items():
        series_list = await scraper.query(name)
        assert series_list, name
        for one in series_list:
            assert set(one["metric"]) - scrape_labels == names, (name, one["metric"])
    everything = await scraper.query('{__name__=~"postflight_.+"}')
    deploy_ids = {d["id"] for d in (v2, v3, v4, s2, s3, s4, s5, s6, c2, e2)}
    bounded = {"environment", "check", "rule", "provider", "outcome", "result", "le"}
    for one in everything:
        name = one["metric"]["__name__"]
        extra = set(one["metric"]) - scrape_labels - bounded
        assert not extra or (name, extra) == ("postflight_build_info", {"version"}), one["metric"]
        for key, given in one["metric"].items():
            if key in scrape_labels or (one["metric"]["__name__"], key) == (
                "postflight_build_info",
                "version",
            ):
                continue
            assert given not in deploy_ids and "://" not in given, one["metric"]
            assert not re.fullmatch(r"v2\.4\.\d|[sce]\d", given), one["metric"]


Deployed = dict[str, Any]


async def on_staging(
    daemon: Daemon, scraper: Scraper, receiver: RollbackReceiver, sink: JsonSink, staging: Service
) -> tuple[Deployed, Deployed, Deployed, Deployed, Deployed]:
    """Staging's deploys, one after another: passed, breached and resolved, failed in a
    dry run, superseded, cancelled."""
    # ---- staging: a good deploy passes (window passed: success)
    s2 = await daemon.register(environment="staging", version="s2", previous_version="s1",
                               window="4s")  # fmt: skip
    # §5 windows_active moves with a window: 1 while it watches
    await scraper.until('postflight_windows_active{environment="staging"}', lambda v: v == 1)
    assert (await daemon.settled(s2["id"]))["state"] == "passed"
    passed = await wait_for_title(sink, "[postflight] staging s2: ")
    assert passed.type == "success", passed.payload
    assert s2["id"] in passed.message, passed.message
    await scraper.until('postflight_windows_active{environment="staging"}', lambda v: v == 0)
    await scraper.until(
        'postflight_windows_total{environment="staging",outcome="passed"}', lambda v: v == 1
    )

    # ---- staging: a breach that clears sends a resolve, once each (four rounds of 2 s:
    # the breach's, one that may still hold its probes, then passing ones)
    staging.bad = True
    s3 = await daemon.register(environment="staging", version="s3", previous_version="s2",
                               window="8s")  # fmt: skip
    breach = await wait_for_title(sink, "[postflight] staging s3: ", within=30)
    staging.bad = False
    assert breach.type == "warning", breach.payload
    assert "probe-errors" in breach.title + breach.message, breach.payload
    final = await daemon.settled(s3["id"])
    assert final["state"] == "passed", final
    s3_alerts = [n for n in sink.notifications if n.title.startswith("[postflight] staging s3:")]
    resolved = [n for n in s3_alerts if "resolved" in n.title]
    assert len(resolved) == 1, [n.title for n in s3_alerts]
    assert resolved[0].type == "success"
    breaches = [n for n in s3_alerts if n.type == "warning"]
    assert len(breaches) == 1, [n.title for n in s3_alerts]  # one per deploy, not per round

    # ---- §3 dry_run (staging): a failed verdict calls no webhook; the rollback is skipped
    staging.bad = True
    s4 = await daemon.register(environment="staging", version="s4", previous_version="s3",
                               window="1m")  # fmt: skip
    final4 = await daemon.settled(s4["id"])
    staging.bad = False
    assert final4["state"] == "failed", final4
    assert final4["rollback"]["state"] == "skipped", final4
    assert all(a.idempotency_key != s4["id"] for a in receiver.attempts), receiver.attempts
    skipped = await wait_for_title(sink, "[postflight] staging s4: deploy failed")
    assert skipped.type == "failure" and "dry run" in skipped.title, skipped.title

    # ---- windows superseded and cancelled (staging)
    s5 = await daemon.register(environment="staging", version="s5", window="1m")
    s6 = await daemon.register(environment="staging", version="s6", window="1m")
    assert (await daemon.settled(s5["id"]))["state"] == "superseded"
    async with daemon.http.post(
        f"{daemon.url}/v1/deploys/{s6['id']}/cancel", headers=daemon.headers
    ) as r:
        assert r.status == 200 and (await r.json())["state"] == "cancelled"
    return s2, s3, s4, s5, s6


async def on_production(
    daemon: Daemon,
    receiver: RollbackReceiver,
    sink: JsonSink,
    prod: Service,
    hung_then_503: RollbackReceiver,
) -> tuple[Deployed, Deployed, Deployed, Deployed, Deployed]:
    """Production's deploys, one after another (rolled back, refused, inconclusive), and
    canary's and edge's rollbacks that fail after their retries."""
    # ---- production: a bad deploy rolled back through a retried webhook, its alerts
    # naming the background baseline (0% errors): one is kept before it is registered
    await daemon.baseline_kept("production", "api-health")
    receiver.script(503, "429:retry-after=1", 408, 200)
    # the deploy goes live as the target turns bad, and says so: a background run stored
    # between then and its registration probed the bad target, and is after the deploy,
    # not in its baseline (registered as of now, at load 40: "baseline 4.444%")
    went_live = rfc3339(time.time())
    prod.bad = True
    v2 = await daemon.register(
        environment="production", version="v2.4.1", previous_version="v2.4.0",
        commit="9fceb02", labels={"pipeline": "run-1234"}, deployed_at=went_live,
    )  # fmt: skip
    final = await daemon.settled(v2["id"])
    assert final["state"] == "rolled_back", final
    attempts = receiver.attempts
    assert [a.status for a in attempts] == [503, 429, 408, 200], attempts
    check_webhook(attempts, final)
    assert final["rollback"]["state"] == "delivered"
    assert final["rollback"]["attempts"] == 4
    assert final["rollback"]["last_status"] == 200
    # honouring Retry-After: the attempt after the 429 came no sooner than it asked
    assert attempts[2].at - attempts[1].at >= 1.0 - 0.05, attempts

    delivered = await wait_for_title(sink, "[postflight] production v2.4.1: rollback delivered")
    v2_alerts = [
        n for n in sink.notifications if n.title.startswith("[postflight] production v2.4.1:")
    ]
    titles = [n.title for n in v2_alerts]
    requested = [n for n in v2_alerts if "rollback" in n.title and "requested" in n.title]
    assert len(requested) == 1 and requested[0].type == "failure", titles
    breached = [n for n in v2_alerts if n.type == "warning" and "provider" not in n.title]
    assert len(breached) == 1, titles
    assert "probe-errors" in breached[0].message
    unreachable = [n for n in v2_alerts if "provider" in n.title]
    assert sorted(n.title.split("provider ")[1].split()[0] for n in unreachable) == [
        "newrelic",
        "sentry",
    ], titles  # one per deploy and provider, however many rounds it stayed down
    assert all(n.type == "warning" for n in unreachable)
    assert len([n for n in v2_alerts if n.title == delivered.title]) == 1, titles
    # the body (markdown) names the rules, observed vs baseline vs threshold, the deploy id
    for note in (requested[0], breached[0], delivered):
        body = note.message
        assert f"`{v2['id']}`" in body, body
        assert re.search(
            r"`probe-errors`.*observed \*\*100%\*\* vs baseline 0%.*max 0\.05", body
        ), body

    # ---- production: a rollback the webhook refuses (400) fails at once, and alerts
    receiver.script(400)
    v3 = await daemon.register(environment="production", version="v2.4.2",
                               previous_version="v2.4.1")  # fmt: skip
    final3 = await daemon.settled(v3["id"])
    assert final3["state"] == "failed", final3
    assert final3["rollback"]["state"] == "failed"
    assert final3["rollback"]["attempts"] == 1
    assert len(receiver.attempts) == 5
    refused = await wait_for_title(sink, "[postflight] production v2.4.2: ROLLBACK FAILED")
    assert refused.type == "failure"
    assert v3["id"] in refused.message

    # ---- §3 retries: a timeout and 5xx answers are retried up to max_attempts (its
    # default, 8), connection errors too (edge: 3 attempts), each signed, one body
    c2 = await daemon.register(environment="canary", version="c2", previous_version="c1")
    e2 = await daemon.register(environment="edge", version="e2", previous_version="e1")
    final_c = await daemon.settled(c2["id"], within=120)
    final_e = await daemon.settled(e2["id"], within=120)
    assert final_c["state"] == "failed", final_c
    assert (final_c["rollback"]["state"], final_c["rollback"]["attempts"]) == ("failed", 8)
    hung = hung_then_503.attempts
    assert [a.status for a in hung] == [None, *[503] * 7], hung
    assert all(a.signature_ok and a.idempotency_key == c2["id"] for a in hung), hung
    assert len({a.body for a in hung}) == 1
    assert final_e["state"] == "failed", final_e
    assert (final_e["rollback"]["state"], final_e["rollback"]["attempts"]) == ("failed", 3)
    for version in ("canary c2", "edge e2"):
        alert = await wait_for_title(sink, f"[postflight] {version}: ROLLBACK FAILED")
        assert alert.type == "failure"
    prod.bad = False

    # ---- inconclusive (production: its Sentry and New Relic rules never read, the checks
    # healthy)
    v4 = await daemon.register(environment="production", version="v2.4.3",
                               previous_version="v2.4.2", window="4s")  # fmt: skip
    assert (await daemon.settled(v4["id"]))["state"] == "inconclusive"
    assert len(receiver.attempts) == 5  # never a rollback for it

    return v2, v3, v4, c2, e2


def check_webhook(attempts: list[RollbackAttempt], deploy: dict[str, Any]) -> None:
    """§3's headers, body and signature on every attempt, as the contract writes them."""
    first = attempts[0]
    for attempt in attempts:
        headers = {k.lower(): v for k, v in attempt.headers.items()}
        assert attempt.path == "/rollback"
        assert headers["content-type"] == "application/json", headers
        assert headers["user-agent"] == f"postflight/{__version__}", headers
        assert headers["idempotency-key"] == deploy["id"], headers
        assert headers["x-postflight-event"] == "rollback", headers
        stamp = headers["x-postflight-timestamp"]
        assert re.fullmatch(r"[0-9]+", stamp), stamp  # unix seconds, an integer
        assert abs(int(stamp) - attempt.at) < 60, (stamp, attempt.at)
        signature = headers["x-postflight-signature"]
        assert re.fullmatch(r"sha256=[0-9a-f]{64}", signature), signature
        assert signature == signature_as_written(SECRET, stamp, attempt.body.encode()), attempt
        # every attempt the same body and key
        assert attempt.body == first.body
    # fresh timestamp and signature per attempt: later attempts (one waited out a
    # Retry-After of 1 s) carry a later timestamp, signed anew
    stamps = [int(a.headers["X-Postflight-Timestamp"]) for a in attempts]
    assert stamps == sorted(stamps) and stamps[-1] > stamps[0], stamps
    assert len({a.signature for a in attempts}) == len(set(stamps)), attempts
    body = json.loads(first.body)
    assert list(body) == ["event", "deploy", "reason", "breaches", "requested_at"], body
    assert body["event"] == "rollback"
    expected_deploy = {
        "id": deploy["id"],
        "environment": "production",
        "version": "v2.4.1",
        "previous_version": "v2.4.0",
        "commit": "9fceb02",
        "labels": {"pipeline": "run-1234"},
        "deployed_at": deploy["deployed_at"],
    }
    assert body["deploy"] == expected_deploy, body["deploy"]
    assert isinstance(body["reason"], str) and body["reason"] == deploy["verdict"]["reason"]
    assert body["requested_at"] == deploy["rollback"]["requested_at"], body
    assert isinstance(body["requested_at"], str)
    assert body["breaches"], body
    keys = ["rule", "source", "metric", "observed", "baseline", "threshold", "detail"]
    failing = {r["name"] for r in deploy["verdict"]["rules"] if r["outcome"] == "fail"}
    assert {b["rule"] for b in body["breaches"]} == failing, (body, deploy["verdict"])
    for breach in body["breaches"]:
        assert list(breach) == keys, breach
        assert all(isinstance(breach[k], str) for k in ("rule", "source", "metric", "threshold"))
        assert isinstance(breach["observed"], int | float), breach
        assert breach["baseline"] is None or isinstance(breach["baseline"], int | float)
        assert breach["detail"] is None or isinstance(breach["detail"], str)
    probe = next(b for b in body["breaches"] if b["rule"] == "probe-errors")
    assert (probe["source"], probe["metric"], probe["threshold"]) == (
        "checks",
        "error_rate",
        "max 0.05",
    ), probe


@pytest.mark.timeout(180)
async def test_a_hung_channel_neither_delays_nor_blocks_a_rollback(
    tmp_path: Path,
    rollback_receiver: Callable[..., Any],
    hanging_server: HangingServer,
    smtp_sink: SmtpSink,
    services: tuple[Service, Service],
) -> None:
    """§4: "A channel that fails is logged and counted, and never delays or blocks a
    rollback", with the example's chat channel at a server that never answers: the
    webhook is called while the rollback's own alert still hangs there (its failure not
    yet logged), the rollback is delivered, the mail channel takes every alert, and the
    hung one is logged and counted failed."""
    prod, staging = services
    log = tmp_path / "agent.log"
    logged_at_attempt: list[bool] = []

    def hung_failure(deploy_id: str | None) -> str:
        return f"alert rollback_requested for {deploy_id} failed on {chat.split('/alerts')[0]}/"

    async def look(attempt: RollbackAttempt) -> None:
        logged_at_attempt.append(hung_failure(attempt.idempotency_key) in log.read_text())

    receiver: RollbackReceiver = await rollback_receiver(SECRET, on_attempt=look)
    chat = f"json://127.0.0.1:{hanging_server.port}/alerts"
    port = free_port()
    config = tmp_path / "postflight.yaml"
    # each alert waits out the hung channel for alerting.timeout (and the daemon's stop,
    # the settled rollback's alert): 2 s, not the 5 s default, still far past the webhook
    # call it must not hold up
    config.write_text(configuration("", "", alerting_timeout="2s"))
    env = example_env(port, receiver.url, chat, smtp_sink.url(), prod, staging)
    prod.bad = True
    async with daemon_run(tmp_path, config, env) as daemon:
        deploy = await daemon.register(
            environment="production", version="v9", previous_version="v8", window="1m"
        )
        final = await daemon.settled(deploy["id"])
        assert final["state"] == "rolled_back", final
        assert final["rollback"]["attempts"] == 1
        assert logged_at_attempt == [False]  # the alert still hung when the webhook was called
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30

        def subjects() -> list[str]:
            return [str(m["Subject"]) for m in smtp_sink.messages]

        # the mail channel takes the rollback's alerts; the hung one is logged failed
        while not (
            any("rollback delivered" in s for s in subjects())
            and hung_failure(deploy["id"]) in log.read_text()
        ):
            assert loop.time() < deadline, (subjects(), log.read_text())
            await asyncio.sleep(0.2)
        async with daemon.http.get(f"{daemon.url}/metrics") as r:
            metrics = await r.text()
    assert any("rollback requested" in s for s in subjects()), subjects()
    failed = re.search(r'^postflight_alerts_total\{result="failed"\} (\S+)$', metrics, re.M)
    assert failed and float(failed[1]) >= 1, metrics


@pytest.mark.timeout(180)
async def test_a_debug_log_holds_no_secret(
    tmp_path: Path,
    rollback_receiver: Callable[..., Any],
    json_sink: JsonSink,
    smtp_sink: SmtpSink,
    services: tuple[Service, Service],
) -> None:
    """§6 "secrets are never logged", at `--log-level debug` too (each store statement and
    its values, apprise's own lines): the example rolling a bad deploy back through the
    webhook, its alerts to a chat channel whose URL carries a password, and the API token,
    the rollback secret, Sentry's and New Relic's keys and that password in no line."""
    prod, staging = services
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    password = "chan-pass-0123456789abcdef"
    chat = f"json://pf:{password}@127.0.0.1:{json_sink.port}/alerts"
    config = tmp_path / "postflight.yaml"
    config.write_text(configuration("", ""))
    env = example_env(free_port(), receiver.url, chat, smtp_sink.url(), prod, staging)
    prod.bad = True
    async with daemon_run(tmp_path, config, env, "--log-level", "debug") as daemon:
        deploy = await daemon.register(
            environment="production", version="v9", previous_version="v8", window="1m"
        )
        final = await daemon.settled(deploy["id"])
        assert final["state"] == "rolled_back", final
        await wait_for_title(json_sink, "[postflight] production v9: rollback delivered")
    said = (tmp_path / "agent.log").read_text()
    assert " DEBUG " in said, said[:2000]
    secrets = (TOKEN, SECRET, password, env["SENTRY_AUTH_TOKEN"], env["NEW_RELIC_API_KEY"])
    assert [s for s in secrets if s in said] == [], [s for s in secrets if s in said]


class SlowOnRequested(LocalTarget):
    """An apprise `json://` channel that takes 1.5 s to answer a "rollback requested"
    alert and answers any other at once; `titles` in the order it took them."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []

    async def take(self, request: web.Request) -> web.Response:
        title = str((await request.json()).get("title", ""))
        if "rollback requested" in title:
            await asyncio.sleep(1.5)
        self.titles.append(title)
        return web.json_response({})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self.take)


OUTCOMES = {"refused": ("v9", 400), "delivered": ("v10", 200)}
"""Each rollback's deploy (its version) and what the webhook answers it, one after the
other on one daemon."""


def settled_words(answer: int) -> str:
    """What the alert of a rollback settled by `answer` says."""
    return "ROLLBACK FAILED" if answer == 400 else "rollback delivered"


@dataclass
class Outcomes:
    """What `outcomes_in_one_run` saw: each rollback's deploy as settled, and every title the
    slow channel took, in the order it took them."""

    settled: dict[str, dict[str, Any]]
    titles: list[str]


async def outcomes_in_one_run(tmp_path: Path) -> Outcomes:
    """One daemon on the example, "rollback requested" slow at its chat channel
    (`SlowOnRequested`): a production deploy whose rollback the webhook refuses (400),
    then, once its outcome reached the channel, one whose rollback it takes (200)."""
    prod, staging = Service(), Service()
    chat, smtp = SlowOnRequested(), SmtpSink()
    receiver = RollbackReceiver(SECRET, [answer for _, answer in OUTCOMES.values()])
    servers = (prod, staging, chat, smtp, receiver)
    for server in servers:
        await server.start()
    try:
        config = tmp_path / "postflight.yaml"
        config.write_text(configuration("", ""))
        chat_url = f"json://127.0.0.1:{chat.port}/alerts"
        env = example_env(free_port(), receiver.url, chat_url, smtp.url(), prod, staging)
        prod.bad = True
        settled = {}
        async with daemon_run(tmp_path, config, env) as daemon:
            for name, (version, answer) in OUTCOMES.items():
                deploy = await daemon.register(
                    environment="production", version=version, previous_version="v8", window="1m"
                )
                settled[name] = await daemon.settled(deploy["id"])
                words = settled_words(answer)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not any(words in t and f" {version}:" in t for t in chat.titles):
                    assert loop.time() < deadline, chat.titles
                    await asyncio.sleep(0.1)
        return Outcomes(settled, list(chat.titles))
    finally:
        for server in reversed(servers):
            await server.stop()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """`outcomes_in_one_run`, once for this module's tests of it: each rollback took a
    daemon of its own. Each deploy's alerts are its own (titled by its version), and the
    second registered only once the first's outcome reached the channel."""
    return asyncio.run(outcomes_in_one_run(tmp_path_factory.mktemp("outcomes")))


ONE_OUTCOMES_RUN = pytest.mark.xdist_group("contract-outcome-alerts")
"""The tests of `outcomes` on one worker, which runs it once (`--dist loadgroup`)."""


@ONE_OUTCOMES_RUN
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(OUTCOMES))
def test_a_rollbacks_outcome_alert_never_reaches_a_channel_before_its_request(
    outcomes: Outcomes, name: str
) -> None:
    """§4's events of one rollback, in the order they happened on every channel: a
    webhook answering at once settled the rollback while its "rollback requested" alert
    was still on its way to a slow channel, and "ROLLBACK FAILED" (or "rollback
    delivered") came first there, the request last: on-call reading the newest alert
    took a rollback that had failed for one under way."""
    version, answer = OUTCOMES[name]
    final = outcomes.settled[name]
    assert final["state"] == ("failed" if answer == 400 else "rolled_back"), final
    settled = settled_words(answer)
    order = [
        t
        for t in outcomes.titles
        if f" {version}:" in t and ("rollback requested" in t or settled in t)
    ]
    assert len(order) == 2 and "rollback requested" in order[0], outcomes.titles

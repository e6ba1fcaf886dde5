"""A check plugin's own bug, in the real daemon probing a healthy local target: never a
failed probe, so never the rollback of a good deploy.

The plugin (installed as pip would, through a `postflight.checks` entry point) makes a
real request to the target each run, then has the bug its `mode` names: it raises a
`KeyError` in every run, or a `TypeError` in every other one, or returns what is no
result (a dict), or a latency that is a numpy array. Such a run is left out of the
judge's evidence, its check's bug logged once (the plugin, the exception, where), and a
rule whose every probe was such a bug ends inconclusive naming it; on-call gets one
`check_bug` alert of the check a deploy, across rounds and restarts. An exception about
the target (aiohttp's `ClientResponseError` for a 503) is still a failed probe; numpy's
scalars are read as Python's numbers and judged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.crash import TOKEN, free_port
from tests.e2e.plugin_agent import records, registered, registered_each, start
from tests.plugin_site import install_distribution
from tests.receivers import JsonNotification, JsonSink, RollbackAttempt, RollbackReceiver

pytestmark = pytest.mark.e2e

SECRET = "check-bug-rollback-secret"
PLUGIN_SECRET = "check-bug-plugin-key-7319"

PLUGIN = '''
"""A check whose run requests the target's `path`, then has the bug `mode` names."""

import asyncio
import itertools
import time
from typing import ClassVar, Literal

import numpy as np
from pydantic import SecretStr

from checks.base import Check, CheckConfig, CheckResult, Sample


class FlakyConfig(CheckConfig):
    type: Literal["flaky"] = "flaky"
    mode: str
    path: str = "/health"
    secret: SecretStr


class FlakyCheck(Check):
    type = "flaky"
    Config = FlakyConfig
    background: ClassVar[bool] = True

    def __init__(self, config):
        super().__init__(config)
        self.runs = itertools.count()

    async def run(self, ctx):
        mode = self.config.mode
        started = time.perf_counter()
        async with ctx.session.get(
            ctx.base_url + self.config.path, raise_for_status=mode == "status"
        ) as answer:
            await answer.read()
        latency = time.perf_counter() - started
        if mode == "raise" or (mode == "baseline" and ctx.target == "baseline"):
            fields = {"status": answer.status}
            return fields[f"latency (key {self.config.secret.get_secret_value()})"]
        if mode == "half" and next(self.runs) % 2:
            raise TypeError("unsupported operand type(s) for +: 'float' and 'NoneType'")
        if mode == "dict":
            return {"ok": True, "latency": latency}
        if mode == "cancel":  # what awaiting a future another task cancelled raises
            raise asyncio.CancelledError()
        ok = answer.status == 200
        if mode == "numpy":
            sample = Sample(
                check=self.name,
                ok=np.bool_(ok),
                latency_s=np.float32(latency),
                status=np.int64(answer.status),
                bytes=np.int64(2),
                target=ctx.target,
            )
        elif mode == "array":
            sample = Sample(
                check=self.name, ok=ok, latency_s=np.array([latency, latency]), target=ctx.target
            )
        else:
            sample = Sample(
                check=self.name, ok=ok, latency_s=latency, status=answer.status, target=ctx.target
            )
        return CheckResult(self.name, self.type, ok, (sample,), f"{answer.status}")
'''


def install_plugin(site: Path) -> None:
    install_distribution(
        site, "postflight-flaky", "[postflight.checks]\nflaky = flaky_check:FlakyCheck\n"
    )
    (site / "flaky_check.py").write_text(PLUGIN)


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _down(request: web.Request) -> web.Response:
    return web.Response(status=503, text="down")


async def serve_target() -> tuple[str, web.AppRunner]:
    """A healthy service (`/health`) with one path that is down (`/down`: 503): its URL,
    and its runner to take it away."""
    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_get("/down", _down)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}", runner


@pytest.fixture
async def target() -> AsyncIterator[str]:
    url, runner = await serve_target()
    yield url
    await runner.cleanup()


def config(
    tmp_path: Path,
    port: int,
    target: str,
    mode: str,
    receiver: str,
    sink: str,
    window: str = "3s",
    failure_limit: int = 1,
    *,
    canary: bool = False,
    rules: str = "[{name: probe-errors, source: checks, metric: error_rate, max: 0.1}]",
    modes: Sequence[str] = (),
) -> Path:
    """`production` on `target` with the `flaky` plugin's check `plug` in `mode`; with
    `canary`, `target` is its `baseline_url` too (the canary's baseline runs). With
    `modes`, those environments instead, each named after its check's mode."""
    environments = {mode: "production"} if not modes else {m: m for m in modes}
    made = tmp_path / "postflight.yaml"
    made.write_text(
        f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{tmp_path / 'postflight.db'}\n"
        f"alerting:\n  channels:\n    - {{url: '{sink}', tags: [oncall]}}\n"
        "environments:\n"
        + "".join(
            f"  {name}:\n"
            f"    base_url: {target}\n"
            + (f"    baseline_url: {target}\n" if canary else "")
            + f"    window: {window}\n"
            "    interval: 500ms\n"
            "    background_interval: 200ms\n"
            "    probes_per_round: 4\n"
            f"    checks: [{{name: plug, type: flaky, mode: {mode},"
            f" path: {'/down' if mode == 'status' else '/health'}, secret: {PLUGIN_SECRET}}}]\n"
            f"    analysis: {{policy: threshold, failure_limit: {failure_limit}}}\n"
            f"    rules: {rules}\n"
            "    alerts: {tags: [oncall]}\n"
            f"    rollback: {{url: '{receiver}', secret: {SECRET}}}\n"
            for mode, name in environments.items()
        )
    )
    return made


@dataclasses.dataclass
class Running:
    """An agent with the plugin, its rollback receiver and alerts' sink (`running`)."""

    url: str
    config: Path
    site: Path
    log: Path
    receiver: RollbackReceiver
    sink: JsonSink
    agent: subprocess.Popen[bytes]

    async def registered(self, *more: str) -> tuple[int, str, str]:
        """`postflight register` of v2 (with `more` arguments): its exit code, its
        output and the deploy's id."""
        return await registered(self.url, *more)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, target: str, mode: str, log: str = "agent.log", **more: Any
) -> AsyncIterator[Running]:
    """The agent on `config(…, mode, **more)` with the plugin installed, its log in
    `tmp_path / log`; stopped at the end (the one `Running.agent` names then), with its
    receiver and sink."""
    site = tmp_path / "site"
    install_plugin(site)
    receiver, sink = RollbackReceiver(SECRET), JsonSink()
    await receiver.start()
    await sink.start()
    port = free_port()
    made = config(tmp_path, port, target, mode, receiver.url, sink.url(), **more)
    logged = tmp_path / log
    run = Running(
        f"http://127.0.0.1:{port}", made, site, logged, receiver, sink, start(made, logged, site)
    )
    try:
        yield run
    finally:
        run.agent.send_signal(signal.SIGTERM)
        run.agent.wait(30)
        await receiver.stop()
        await sink.stop()


@dataclasses.dataclass
class Watch:
    """One environment's deploy in a `watched_together` run."""

    code: int
    said: str
    """`register --wait`'s exit code and output."""
    deploy: dict[str, Any]
    """The deploy as the API shows it, its `metrics` a scrape of `/metrics` once every
    deploy of the run ended, its `page` the deploy page then."""
    rollbacks: list[RollbackAttempt]
    """The rollback requests of this deploy (their key)."""
    notifications: list[JsonNotification]
    """The alerts about this deploy (their title's environment)."""
    told: list[dict[str, Any]]
    """The check's bugs logged in this environment (`_bugs_logged`)."""
    logged: list[dict[str, Any]]
    """Every record of the run's agent."""
    text: str
    """The run's agent's log as written."""
    sent: list[JsonNotification]
    """Every alert of the run."""
    asked: list[RollbackAttempt]
    """Every rollback request of the run."""


async def watched_together(tmp_path: Path, target: str, modes: Sequence[str]) -> dict[str, Watch]:
    """v2 registered with `--wait` on each environment (at once) of one agent whose check
    plugin has, in each, the bug `mode` it is named after; the agent stopped once every
    end alert came. Each mode's test ran an agent of its own in turn, its start, window and
    stop: their calls took 49.6 s alone at load 22, the run 15.6 s (windows of 3 s)."""
    async with running(tmp_path, target, "", modes=modes, window=SHARED_WINDOW) as run:
        ends = await registered_each(run.url, modes, "--wait", "--timeout", "30s")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for _, _, deploy in ends.values():
                async with http.get(f"{run.url}/deploys/{deploy['id']}") as page:
                    deploy["page"] = await page.text()
            async with http.get(f"{run.url}/metrics") as scraped:
                metrics = await scraped.text()
        for mode in modes:
            await ended(run.sink, mode)
    logged, text = records(run.log), run.log.read_text()
    watches = {}
    for mode, (code, said, deploy) in ends.items():
        deploy["metrics"] = metrics
        watches[mode] = Watch(
            code,
            said,
            deploy,
            [a for a in run.receiver.attempts if a.idempotency_key == deploy["id"]],
            [n for n in run.sink.notifications if n.title.startswith(f"[postflight] {mode} v2:")],
            [r for r in _bugs_logged(run.log) if f"(environment {mode};" in r["msg"]],
            logged,
            text,
            run.sink.notifications,
            run.receiver.attempts,
        )
    return watches


SHARED_WINDOW = "8s"
"""The shared run's windows: 3 s each where each had an agent of its own. The 7 CLIs that
register them start at once, which holds the agent a while just as the windows begin: at
load 21 (two runs of the module at once) 4 of the 7 windows of 3 s ended after round 1,
and at load 15 (beside the provider bugs' shared run, on two workers) one of 5 s did."""

WATCHED = ("raise", "dict", "array", "cancel", "half", "numpy", "status")
"""The modes of `watched_run`."""


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Watch]:
    """The `WATCHED` modes' run, with its target, shared by their tests (one worker runs
    them all: `ONE_WATCHED_RUN`)."""

    async def run() -> dict[str, Watch]:
        url, runner = await serve_target()
        try:
            return await watched_together(tmp_path_factory.mktemp("watched"), url, WATCHED)
        finally:
            await runner.cleanup()

    return asyncio.run(run())


ONE_WATCHED_RUN = pytest.mark.xdist_group("check-plugin-bugs-watched")
"""The tests of `watched_run` on one worker, which runs it once (`--dist loadgroup`)."""


def bug_title(environment: str = "production") -> str:
    return f"[postflight] {environment} v2: check plug has a bug"


BUG_TITLE = bug_title()


async def ended(sink: JsonSink, environment: str = "production", within: float = 10.0) -> None:
    """Until the window's end alert came (whatever the check's own alert did)."""
    about = f"[postflight] {environment} v2:"
    await sink._wait_until(
        lambda: any(
            n.title.startswith(about) and n.title != bug_title(environment)
            for n in sink.notifications
        ),
        within,
    )


def _bug_alerts(notifications: list[JsonNotification]) -> list[JsonNotification]:
    return [n for n in notifications if "has a bug" in n.title]


def _bugs_logged(log: Path) -> list[dict[str, Any]]:
    return [r for r in records(log) if r["logger"] == "checks.registry" and "has a bug" in r["msg"]]


@ONE_WATCHED_RUN
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "raised"),
    [
        ("raise", "KeyError: 'latency (key ***)'"),
        ("dict", "run() returned dict, not a CheckResult"),
        ("array", "latency_s array(["),  # "[0." but at load 18: a probe of 1.69 s
        ("cancel", "CancelledError"),
    ],
)
def test_a_check_plugin_that_has_a_bug_in_every_run_is_no_rollback(
    watched_run: dict[str, Watch], mode: str, raised: str
) -> None:
    """Before, each run was a failed probe (`check crashed: KeyError…`): every probe of a
    healthy target failed, the window failed and rolled the good deploy back; a latency
    that is an array made the round's observation raise, three times, and the window
    ended at round 1 as a bug of the judge."""
    watch = watched_run[mode]
    code, said, deploy, rollbacks = watch.code, watch.said, watch.deploy, watch.rollbacks

    assert rollbacks == [], said
    assert deploy["state"] == "inconclusive", deploy
    assert deploy["rounds"] > 1, (deploy["verdict"], said)  # went on to its end
    reason = deploy["verdict"]["reason"]
    assert "probe-errors: no data (check plug (flaky) has a bug:" in reason, reason
    assert raised in reason, reason
    assert "not evidence about the target" in reason, reason
    assert "flaky_check.py:" in reason or mode != "raise", reason  # where it raised
    assert code == 3, said
    # on-call is told of the plugin's bug at its first round, once, and why the window
    # ended so (before, the end alone: nothing while the window ran)
    (bug,) = _bug_alerts(watch.notifications)
    assert bug.title == bug_title(mode) and bug.payload["type"] == "warning", bug.payload
    # all its round's runs (but one its round cut short under load: a timeout)
    assert re.search(r"(all \d+|\d+ of \d+) runs of round 1 ended so", bug.message), bug.message
    (end,) = [n for n in watch.notifications if n is not bug]
    assert end.title.startswith(f"[postflight] {mode} v2: inconclusive"), end.title
    alerted = re.sub(r"\\(.)", r"\1", end.message)  # its markdown's escapes undone
    assert "check plug (flaky) has a bug:" in alerted and raised in alerted, end.message
    text = watch.text + json.dumps(deploy) + end.message + bug.message
    assert PLUGIN_SECRET not in text
    told = watch.told
    assert [r["level"] for r in told] == ["warning"], told  # once, not once a probe
    assert raised in told[0]["msg"], told
    assert "Traceback" in told[0]["msg"], told
    assert not [r for r in watch.logged if "watching the window failed" in r["msg"]]
    # each such run counted as the check's error, none as a pass or a fail of the target
    runs = {
        result: float(n)
        for result, n in re.findall(
            r'postflight_check_runs_total\{check="plug",environment="'
            + mode
            + r'",result="(\w+)"\} (\S+)',
            deploy["metrics"],
        )
    }
    assert runs.get("error", 0) >= 4 and set(runs) == {"error"}, runs


@ONE_WATCHED_RUN
@pytest.mark.timeout(90)
def test_a_check_plugin_that_raises_in_some_runs_is_judged_on_the_others(
    watched_run: dict[str, Watch],
) -> None:
    """Before, every other probe of a healthy target failed (`check crashed: TypeError`),
    an error rate of 0.5 against a bound of 0.1: the good deploy was rolled back."""
    watch = watched_run["half"]
    code, said, deploy, rollbacks = watch.code, watch.said, watch.deploy, watch.rollbacks

    assert rollbacks == [], said
    assert deploy["state"] == "passed", (deploy["verdict"], said)
    assert code == 0, said
    told = watch.told
    assert len(told) == 1 and "TypeError: unsupported operand" in told[0]["msg"], told
    assert "flaky_check.py:" in told[0]["msg"], told
    _told_once(watch.notifications, deploy, "half")


def _told_once(
    notifications: list[JsonNotification], deploy: dict[str, Any], environment: str
) -> None:
    """One `check_bug` alert of the deploy (a round of every window had the bug), a
    warning naming the check, the exception and where, how many runs of its round it
    took, and that those are no evidence, redacted; the window's end alert beside it.
    Before, no alert: a WARNING in the log and a metric only."""
    bugs = _bug_alerts(notifications)
    assert [n.title for n in bugs] == [bug_title(environment)], [n.title for n in notifications]
    (bug,) = bugs
    assert bug.payload["type"] == "warning", bug.payload
    said = re.sub(r"\\(.)", r"\1", bug.message)  # its markdown's escapes undone
    assert "**A check has a bug.**" in said, said
    assert "check plug (flaky) has a bug: TypeError: unsupported operand" in said, said
    assert "at flaky_check.py:" in said and " in run" in said, said
    assert re.search(r"\b\d+ of \d+ runs of round \d+ ended so", said), said
    assert "left out of the evidence (neither a pass nor a failure of the target)" in said, said
    assert deploy["id"] in said, said
    assert PLUGIN_SECRET not in json.dumps([n.payload for n in notifications])
    assert [n for n in notifications if "deploy passed" in n.title], notifications
    # the deploy page's "Alerts sent" names it, its event (`check_bug`) and check as it was
    # stored: the one place a user reads the event's name (README: "a check type")
    sent = re.findall(r'<li title="(check_bug:[^"]*)"[^>]*>([^<]*)</li>', deploy["page"])
    assert sent == [("check_bug:plug", "check plug has a bug (its runs not evidence): sent")], sent


async def _ended_on_api(url: str, deploy_id: str, within: float = 40.0) -> dict[str, Any]:
    async with (
        asyncio.timeout(within),
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        while True:
            async with http.get(f"{url}/v1/deploys/{deploy_id}") as answer:
                deploy: dict[str, Any] = await answer.json()
            if deploy["state"] not in ("pending", "watching"):
                async with http.get(f"{url}/deploys/{deploy_id}") as page:
                    deploy["page"] = await page.text()  # as `watched_together` keeps it
                return deploy
            await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_a_check_plugins_bug_is_alerted_once_across_a_restart(
    tmp_path: Path, target: str
) -> None:
    """The agent stopped after the check's bug was alerted, a new one resumes the window
    on the same store, meets the bug again (its log says it) and sends no second alert:
    the store's claim of `check_bug:plug` says the first was sent."""
    second = tmp_path / "second.log"
    async with running(tmp_path, target, "half", log="first.log", window="15s") as run:
        code, said, deploy_id = await run.registered()
        assert code == 0, said
        sink = run.sink
        await sink.wait_for(1, within=20)
        assert [n.title for n in sink.notifications] == [BUG_TITLE]
        run.agent.send_signal(signal.SIGTERM)
        assert run.agent.wait(30) == 0
        run.agent = start(run.config, second, run.site)
        deploy = await _ended_on_api(run.url, deploy_id)
        await ended(sink)
    assert deploy["state"] == "passed", deploy
    assert run.receiver.attempts == []
    assert _bugs_logged(second), second.read_text()  # the new agent had the bug too
    resumed = [r for r in records(second) if r["msg"].startswith("watching production v2")]
    assert resumed and "(round 1," not in resumed[0]["msg"], resumed
    _told_once(sink.notifications, deploy, "production")


@ONE_WATCHED_RUN
@pytest.mark.timeout(90)
def test_a_check_plugin_answering_numpy_scalars_is_judged(watched_run: dict[str, Watch]) -> None:
    """numpy's bool, float32 and int64 in a sample are Python's to the judge and the
    store: the healthy deploy passes, nothing is logged as a bug."""
    watch = watched_run["numpy"]
    code, said, deploy, rollbacks = watch.code, watch.said, watch.deploy, watch.rollbacks

    assert rollbacks == [], said
    assert deploy["state"] == "passed", (deploy["verdict"], said)
    assert code == 0, said
    assert not watch.told
    logged = watch.logged
    assert not [r for r in logged if r["level"] == "error" or r.get("exc")], logged
    assert not [r for r in logged if "watching the window failed" in r["msg"]], logged


@ONE_WATCHED_RUN
@pytest.mark.timeout(90)
def test_a_check_plugin_raising_for_the_targets_http_error_is_a_failed_probe(
    watched_run: dict[str, Watch],
) -> None:
    """The other side of the line (it was so before, kept): aiohttp's `ClientResponseError`
    for the target's 503 is about the target, a failed probe; the bad deploy rolls back."""
    watch = watched_run["status"]
    code, said, deploy, rollbacks = watch.code, watch.said, watch.deploy, watch.rollbacks

    assert deploy["state"] in ("failed", "rolled_back"), deploy
    assert len(rollbacks) == 1, said
    assert code == 1, said
    assert "ClientResponseError: 503" in json.dumps(deploy), deploy
    assert not watch.told


@ONE_WATCHED_RUN
@pytest.mark.timeout(90)
def test_the_shared_run_sent_nothing_its_deploys_tests_leave_out(
    watched_run: dict[str, Watch],
) -> None:
    """Each test reads its deploy's alerts by their title, its rollbacks by their key and
    its bug lines by the environment they name: every one the run sent is one of those, as
    each test's own agent once asserted of all it sent (`(end,)`, `rollbacks == []`), and
    none carries the plugin's secret."""
    run = next(iter(watched_run.values()))
    titles = [n.title for n in run.sent]
    assert sorted(n.title for w in watched_run.values() for n in w.notifications) == sorted(
        titles
    ), titles
    assert sum(len(w.rollbacks) for w in watched_run.values()) == len(run.asked), run.asked
    bugs = [r for r in run.logged if r["logger"] == "checks.registry" and "has a bug" in r["msg"]]
    assert sum(len(w.told) for w in watched_run.values()) == len(bugs), bugs
    assert PLUGIN_SECRET not in json.dumps([n.payload for n in run.sent])


@pytest.mark.timeout(90)
async def test_a_target_gone_away_is_one_warning_of_its_check_not_one_a_probe(
    tmp_path: Path,
) -> None:
    """The plugin's client raises about the target once it went away (aiohttp's
    `ClientConnectorError`, a refused connection): each probe a failed probe, as before,
    and the bad deploy is rolled back; the agent's log says so once for the spell, where
    it said it at every probe of every round and background run."""
    target, runner = await serve_target()
    try:
        async with running(tmp_path, target, "plain", window="4s", failure_limit=3) as run:
            code, said, deploy_id = await run.registered()
            assert code == 0, said
            await runner.cleanup()  # the target goes away
            deploy = await _ended_on_api(run.url, deploy_id)
            await run.receiver.wait_for_attempts(1)
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{run.url}/metrics") as scraped,
            ):
                metrics = await scraped.text()
    finally:
        await runner.cleanup()
    log = run.log
    assert deploy["state"] in ("failed", "rolled_back"), deploy
    assert len(run.receiver.attempts) == 1
    errors = re.search(
        r'postflight_check_runs_total\{check="plug",environment="production",result="error"\}'
        r" (\S+)",
        metrics,
    )
    assert errors is not None and float(errors.group(1)) >= 6, metrics  # failed probes
    crashed = [
        r
        for r in records(log)
        if r["logger"] == "checks.registry" and "crashed in environment" in r["msg"]
    ]
    assert [r["level"] for r in crashed] == ["warning"], [r["msg"] for r in crashed]
    assert "Cannot connect to host" in crashed[0]["msg"] or "Disconnected" in crashed[0]["msg"]
    assert not _bugs_logged(log)

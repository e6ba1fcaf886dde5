"""kill -9 the instant a window's end is stored, then restart: what the end spawns, counted
at its receivers (contract §3, §4, §7).

A window's end is one store write (`Store.finish_window`) and then what it calls for: the
end alert, the final round's alerts (breach, resolve, provider_unreachable, check_bug),
the rollback, a provider's rollback marker (Sentry's deploy of the previous release),
GitHub's deployment and commit statuses. The agent (`postflight run`) is killed with
SIGKILL right after that write commits, by a hook of its own process (`sitecustomize`
here, on its `PYTHONPATH`: a kill placed from outside lands before or after the instant,
never at it), then restarted on the same store. Each receiver is a process (or a thread
of the test) that outlives the agent and counts what it took, repeats included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.times import rfc3339
from tests.e2e.crash import (
    ROOT,
    TOKEN,
    _wait_ready,
    free_port,
    read_attempts,
    request_json,
    store_rows,
    until,
)
from tests.fakes import github as gh
from tests.fakes.sentry import FakeSentry
from tests.receivers import JsonSink, RollbackReceiver

KILL_AFTER_END = "POSTFLIGHT_TEST_KILL_AFTER_END"
"""The agent's environment: a path; the first agent to store a window's end creates it
and is killed there (a restart, which finds it, is not)."""

SITECUSTOMIZE = f'''\
import os

_MARK = os.environ.get("{KILL_AFTER_END}")
if _MARK:
    import signal

    from agent.store.sql import SqlStore

    _finish = SqlStore.finish_window

    async def _killed_after(self, *args, **kwargs):
        ended = await _finish(self, *args, **kwargs)
        if ended and not os.path.exists(_MARK):
            open(_MARK, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return ended

    SqlStore.finish_window = _killed_after
'''

SECRET = "crash-end-rollback-secret"
SENTRY_TOKEN = "crash-end-sentry-token"
GH_TOKEN = "crash-end-github-token"
PREVIOUS, VERSION = "v1.0.0", "v1.0.1"
PROBES = 3
"""Probes a round, and a background run (`run_resolve_trial`)."""
SCHEDULED_AHEAD_S = 6.0
"""`run_resolve_trial`'s deploy goes live this far after its registration."""


CLAIMS = "SELECT event, result, retry_at FROM alerts WHERE window_id = ?"
"""A window's claims (alerts, GitHub statuses, markers) as `claims_settled` reads them."""
WATCH_ONLY = ("github:in_progress", "github:commit:pending")
"""The statuses of a window still watching: once it has ended, the verdict's status is
owed instead, and a claim of these a kill left mid-call is never taken again (it would
come after the verdict's); a trial waiting on it waited out its 60 s."""


def claims_settled(claims: list[tuple[Any, ...]], owed: tuple[str, ...] = ()) -> bool:
    """Whether every claim of an ended window (`CLAIMS`) that the agent still owes has an
    outcome and no retry pending, and those `owed` are made: a status not yet claimed
    (the scan that claims it runs each second) is no claim to wait on, and a trial that
    stopped the agent then counted no status at all."""
    made = {event for event, _, _ in claims}
    return all(key in made for key in owed) and all(
        event in WATCH_ONLY or (result != "claimed" and retry is None)
        for event, result, retry in claims
    )


FINAL_STATUSES = ("github:failure", "github:commit:failure")
"""The GitHub statuses `write_config`'s failed window owes."""


def _env(
    hook: Path, mark_var: str, mark: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = dict(os.environ) | (extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(hook), env.get("PYTHONPATH", "")])
    env[mark_var] = str(mark)
    env.pop("SENTRY_DSN", None)
    env.pop("NEW_RELIC_LICENSE_KEY", None)
    return env


def start_agent(
    workdir: Path,
    config: Path,
    port: int,
    *,
    sitecustomize: str = SITECUSTOMIZE,
    mark_var: str = KILL_AFTER_END,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`postflight run`, killed by its own hook (`sitecustomize`, its mark `workdir/killed`
    named in `mark_var`) the first time a window's end is stored, or what the hook kills at;
    `env`: more of its environment (a replica id)."""
    hook = workdir / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(sitecustomize)
    with (workdir / "agent.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--log-format", "json", "run", "--config", str(config)],
            cwd=ROOT,
            env=_env(hook, mark_var, workdir / "killed", env),
            stdout=out,
            stderr=out,
        )
    try:
        _wait_ready(port, proc, 120.0)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    return proc


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


class _Receivers:
    """The receivers and fakes, servers of one event loop in a thread of the test: they
    outlive the agent's kill as a process of their own would, and cost no interpreter
    start each (a second or two apiece on a loaded machine, four per trial)."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        self._servers: list[Any] = []
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def start(self, server: Any) -> str:
        """`server` started on a free port of 127.0.0.1; its URL."""

        async def started() -> None:
            await server.start(0)

        self._asyncio.run_coroutine_threadsafe(started(), self.loop).result(timeout=30)
        self._servers.append(server)
        url = server.url
        return str(url() if callable(url) else url)

    def close(self) -> None:
        async def stopped() -> None:
            for server in self._servers:
                await server.stop()

        try:
            self._asyncio.run_coroutine_threadsafe(stopped(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


def _stopped(agent: subprocess.Popen[bytes]) -> None:
    """Stop the settled agent (SIGTERM) and wait for it to exit: whatever it still had in
    flight has gone out, and nothing more can, so the receivers' counts are final (a
    fixed 2 s pause guessed at this)."""
    agent.send_signal(signal.SIGTERM)
    agent.wait(timeout=60)


@dataclass
class EndTrial:
    """What each receiver took, repeats included, once the restarted agent settled."""

    killed: bool
    """Whether the first agent was killed at its window's end (else the trial says nothing)."""
    state: str
    alerts: list[str]
    """The alert sink's titles."""
    rollbacks_acted_on: int
    rollback_requests: int
    rollback_markers: int
    """Sentry deploys of the previous release: the rollback's marker."""
    deployment_statuses: list[str]
    commit_statuses: list[str]

    def count(self, text: str) -> int:
        return sum(1 for title in self.alerts if text in title)


def write_config(
    workdir: Path,
    agent_port: int,
    *,
    sink: str,
    receiver: str,
    sentry: str,
    github: str,
    target: str | None = None,
    store_url: str | None = None,
) -> Path:
    """A deploy that fails at its first round (nothing listens at its target, or at
    `target`, a healthy one, it passes until rolled back by hand), with a rollback
    webhook, Sentry markers and a Sentry rule whose reads Sentry fails (a
    `provider_unreachable`), GitHub deployment and commit statuses; on `store_url` (else
    `workdir`'s SQLite file)."""
    target = target or f"http://127.0.0.1:{free_port()}"
    store_url = store_url or f"sqlite:///{workdir / 'postflight.db'}"
    text = f"""\
server:
  listen: 127.0.0.1:{agent_port}
  api_tokens: [{TOKEN}]
store:
  url: {store_url}
alerting:
  timeout: 1s
  channels:
    - {{url: "{sink}", tags: [oncall]}}
providers:
  sentry:
    base_url: {sentry}
    org: acme
    token: {SENTRY_TOKEN}
    timeout: 1s
    request_timeout: 500ms
    max_attempts: 1
    markers: true
integrations:
  github: {{api_url: "{github}", token: {GH_TOKEN}}}
environments:
  production:
    base_url: {target}
    window: 60s
    interval: 500ms
    probes_per_round: 3
    checks:
      - {{name: api-health, type: http, path: /health, timeout: 200ms}}
    analysis: {{policy: threshold, failure_limit: 1}}
    baseline:
      sentry: {{project: web, environment: production}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      - {{name: sentry-errors, source: sentry, metric: error_rate, max: 0.5}}
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production, commit_status: true}}
    rollback:
      url: {receiver}
      secret: {SECRET}
      backoff: 50ms
      max_backoff: 200ms
    alerts:
      tags: [oncall]
"""
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


def run_end_trial(
    workdir: Path, *, manual: bool = False, in_progress_held: bool = False
) -> EndTrial:
    """A failed verdict's end; with `manual`, a healthy deploy's end by a rollback asked
    through the API (`POST /v1/deploys/{id}/rollback`) as it is watched. With
    `in_progress_held`, GitHub holds the deployment's `in_progress` unanswered, the deploy
    live `SCHEDULED_AHEAD_S` after its registration (its watch's status out first): the
    kill at the end leaves that status's claim without an outcome."""
    workdir.mkdir(parents=True, exist_ok=True)
    healthy = _FailingFirst(0) if manual else None
    sink_log, receiver_log = workdir / "sink.jsonl", workdir / "receiver.jsonl"
    helpers = _Receivers()
    agent: subprocess.Popen[bytes] | None = None
    try:
        sink_url = helpers.start(JsonSink(log=sink_log))
        receiver_url = helpers.start(RollbackReceiver(SECRET, log=receiver_log))
        sentry_url = helpers.start(FakeSentry(token=SENTRY_TOKEN))
        github_url = helpers.start(gh.FakeGitHub(token=GH_TOKEN))
        # Sentry's reads fail (its markers are written): the round's provider_unreachable
        _post(f"{sentry_url}/_fake/fail", {"kind": "500", "match": "/events"})
        if in_progress_held:
            statuses = f"/repos/{gh.REPOSITORY}/deployments/{gh.DEPLOYMENT_ID}/statuses"
            _post(f"{github_url}/_fake/fail", {"kind": "hang", "times": 1, "match": statuses})
        port = free_port()
        config = write_config(
            workdir,
            port,
            sink=sink_url.replace("http://", "json://", 1),
            receiver=receiver_url,
            sentry=sentry_url,
            github=github_url,
            target=healthy.url if healthy is not None else None,
        )
        agent = start_agent(workdir, config, port)
        deploys = f"http://127.0.0.1:{port}/v1/deploys"
        ahead = (
            {"deployed_at": rfc3339(time.time() + SCHEDULED_AHEAD_S)} if in_progress_held else {}
        )
        deploy = request_json(
            "POST",
            deploys,
            {
                "environment": "production",
                "version": VERSION,
                "previous_version": PREVIOUS,
                "commit": gh.COMMIT,
                "labels": {
                    "github.repository": gh.REPOSITORY,
                    "github.deployment": str(gh.DEPLOYMENT_ID),
                },
                **ahead,
            },
        )
        if manual:
            until(lambda: request_json("GET", f"{deploys}/{deploy['id']}")["rounds"] >= 1, 30)
            with contextlib.suppress(OSError):  # killed as it answers
                request_json("POST", f"{deploys}/{deploy['id']}/rollback", {"reason": "by hand"})
        agent.wait(timeout=60)  # killed by its hook at the window's end
        killed = (workdir / "killed").exists()
        agent = start_agent(workdir, config, port)
        url = f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}"

        def settled() -> bool:
            state = request_json("GET", url)
            alerts = store_rows(workdir, CLAIMS, deploy["id"])
            return (
                state["state"] != "watching"
                and (state.get("rollback") or {}).get("state") != "pending"
                and claims_settled(alerts, FINAL_STATUSES)
            )

        until(settled, 60)
        state = request_json("GET", url)["state"]
        _stopped(agent)
        return counted(killed, state, sink_log, receiver_log, sentry_url, github_url)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        if healthy is not None:
            healthy.server.shutdown()
        helpers.close()


def counted(
    killed: bool, state: str, sink_log: Path, receiver_log: Path, sentry_url: str, github_url: str
) -> EndTrial:
    """What each receiver took (`write_config`'s), repeats included."""
    requests = _get(f"{sentry_url}/_fake/requests")
    markers = [
        r
        for r in requests
        if r.get("method") == "POST" and f"/releases/{PREVIOUS}/deploys/" in r.get("path", "")
    ]
    gh_requests = _get(f"{github_url}/_fake/requests")
    attempts = read_attempts(receiver_log)
    return EndTrial(
        killed=killed,
        state=state,
        alerts=[
            str((line.get("payload") or {}).get("title", "")) for line in read_attempts(sink_log)
        ],
        rollbacks_acted_on=sum(1 for a in attempts if a.get("accepted") and not a.get("duplicate")),
        rollback_requests=len(attempts),
        rollback_markers=len(markers),
        deployment_statuses=[
            str((r.get("body") or {}).get("state"))
            for r in gh_requests
            if r.get("method") == "POST" and "/deployments/" in r.get("path", "")
        ],
        commit_statuses=[
            str((r.get("body") or {}).get("state"))
            for r in gh_requests
            if r.get("method") == "POST"
            and "/statuses/" in r.get("path", "")
            and "/deployments/" not in r.get("path", "")
        ],
    )


class _FailingFirst:
    """A target that answers the first `failing` requests after `arm()` 500 (armed at
    once unless `armed` is False), the others 200: a window whose first round breaches
    and whose last clears it. `seen`: the requests it took."""

    def __init__(self, failing: int, *, armed: bool = True) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        lock = threading.Lock()
        self.seen = 0
        self._failing_from: int | None = 0 if armed else None
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    target.seen += 1
                    start = target._failing_from
                    status = 500 if start is not None and target.seen <= start + failing else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def arm(self) -> None:
        """The next `failing` requests fail."""
        self._failing_from = self.seen


def run_resolve_trial(
    workdir: Path,
    *,
    kill: bool = True,
    breach_held: bool = False,
    kill_at: float | None = None,
    window: str = "1s",
) -> EndTrial:
    """A window of two rounds whose first breaches and whose last (its end) clears it:
    the last round's resolve, and the end's `passed`, after a kill at the end (none
    without `kill`: the hook finds its mark made). `breach_held`: the sink holds the
    first alert (the breach) unanswered, so it is still being sent when the window ends,
    as a channel slow on a loaded host left it (alerting's timeout raised past the
    window: the agent waits for the channel until it is killed). `kill_at`: killed from
    outside instead, this many seconds after the registration (the deploy goes live
    `SCHEDULED_AHEAD_S` after it), then restarted; `window`: long enough to outlast a
    restart, the rounds after it clear the breach the first round measured."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not kill or kill_at is not None:
        (workdir / "killed").touch()
    sink_log = workdir / "sink.jsonl"
    target = _FailingFirst(PROBES, armed=False)
    helpers = _Receivers()
    sink_url = helpers.start(JsonSink(["hang"] if breach_held else [], log=sink_log))
    timeout = "30s" if breach_held else "1s"
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        config = workdir / "postflight.yaml"
        config.write_text(f"""\
server:
  listen: 127.0.0.1:{port}
  api_tokens: [{TOKEN}]
store:
  url: sqlite:///{workdir / "postflight.db"}
alerting:
  timeout: {timeout}
  channels:
    - {{url: "{sink_url.replace("http://", "json://", 1)}", tags: [oncall]}}
environments:
  production:
    base_url: {target.url}
    window: {window}
    interval: 500ms
    probes_per_round: {PROBES}
    checks:
      - {{name: api-health, type: http, path: /health, timeout: 200ms}}
    analysis: {{policy: threshold, failure_limit: 2}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
""")
        agent = start_agent(workdir, config, port)
        # the target fails the window's first round, not the background run the agent
        # starts with (its next is 30 s on): armed at once, its failures went to that run
        # when the host was slow to register the deploy, and no round breached (2 trials
        # in 2 beside four CPU hogs)
        until(lambda: target.seen >= PROBES, 60)
        target.arm()
        # its first slot ahead, past the API's clock skew (a deployed_at up to 5 s ahead
        # counts as now): registered live, a watch the loaded host started over a round
        # late ran its last slot alone, and the window ended `inconclusive` (2 runs in 17
        # beside four CPU hogs, the watch 0.54-0.6 s after the registration)
        ahead = rfc3339(time.time() + SCHEDULED_AHEAD_S)
        registered = time.monotonic()
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": VERSION, "deployed_at": ahead},
        )
        if kill_at is not None:
            time.sleep(max(0.0, registered + kill_at - time.monotonic()))
            agent.send_signal(signal.SIGKILL)
            agent.wait()
            agent = start_agent(workdir, config, port)
        elif kill:
            agent.wait(timeout=60)
            agent = start_agent(workdir, config, port)
        killed = kill_at is not None or (kill and (workdir / "killed").exists())
        url = f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}"

        def settled() -> bool:
            alerts = store_rows(workdir, CLAIMS, deploy["id"])
            return request_json("GET", url)["state"] != "watching" and claims_settled(alerts)

        until(settled, 60)
        state = request_json("GET", url)["state"]
        _stopped(agent)
        return EndTrial(
            killed=killed,
            state=state,
            alerts=[
                str((line.get("payload") or {}).get("title", ""))
                for line in read_attempts(sink_log)
            ],
            rollbacks_acted_on=0,
            rollback_requests=0,
            rollback_markers=0,
            deployment_statuses=[],
            commit_statuses=[],
        )
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        target.server.shutdown()
        helpers.close()

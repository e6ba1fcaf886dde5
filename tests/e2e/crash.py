"""kill -9 during rollback delivery, then restart: one trial, as real processes.

Used by `tests/e2e/test_process.py` (a few trials) and `bench/crash_resume.py`
(≥20 trials). The agent and the rollback receiver are separate processes; the
agent is killed with SIGKILL at a random instant while it delivers, restarted
on the same store, and killed again while delivery is still unfinished, until
the window settles. With `kill_on_accept` the receiver itself kills the agent the
instant it accepts the rollback: inside the gap no webhook can close (the
pipeline acted, the agent has not recorded it), every time.

What a trial checks is contract §3's promise, counted at the receiver: one
rollback acted on per deploy (a key-respecting receiver acts on the first 2xx of
an `Idempotency-Key` only), every request with that key and the same body, and a
request sent again after a 2xx only by an agent restarted after a kill.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port as free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crash-api-token-0123"
SECRET = "crash-rollback-secret"
RECEIVER_SCRIPT = "503:delay=0.05,503:delay=0.1,503:delay=0.05,200:delay=0.15"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SENTRY_DSN", None)
    env.pop("NEW_RELIC_LICENSE_KEY", None)
    return env


def server_and_store(workdir: Path, agent_port: int) -> str:
    """The `server:` and `store:` sections every trial's configuration starts with."""
    return (
        f"server:\n  listen: 127.0.0.1:{agent_port}\n  api_tokens: [{TOKEN}]\n"
        f"store:\n  url: sqlite:///{workdir / 'postflight.db'}\n"
    )


def store_rows(workdir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """`sql` on the store `server_and_store` names, read on a connection of the test's own
    (what a trial waits on; what it checks is counted at the receiver)."""
    uri = f"file:{workdir / 'postflight.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        return list(db.execute(sql, args).fetchall())


BAD_ENVIRONMENT = """\
environments:
  production:
    base_url: http://127.0.0.1:{dead_port}
    window: 60s
    interval: {interval}
    probes_per_round: {probes}
    checks:
      - {{name: api-health, type: http, path: /health, timeout: 200ms}}
    analysis: {{policy: threshold, failure_limit: 1}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    rollback:
{rollback}{more}"""


def bad_environment(
    rollback: str, *, more: str = "", interval: str = "300ms", probes: int = 5
) -> str:
    """The kill trials' `environments:` section: `production`, whose `base_url` nothing
    listens on, so every probe fails and its deploy is rolled back at its first round.
    `rollback`: the lines of its `rollback:`, `more`: its other keys (both written from
    column 0)."""
    return BAD_ENVIRONMENT.format(
        dead_port=free_port(),
        interval=interval,
        probes=probes,
        rollback=textwrap.indent(textwrap.dedent(rollback), " " * 6),
        more=textwrap.indent(textwrap.dedent(more), " " * 4),
    )


def write_config(workdir: Path, agent_port: int, receiver_url: str) -> Path:
    rollback = f"""\
url: {receiver_url}
secret: {SECRET}
backoff: 50ms
max_backoff: 200ms
max_attempts: 50
"""
    path = workdir / "postflight.yaml"
    path.write_text(server_and_store(workdir, agent_port) + bad_environment(rollback))
    return path


def request_json(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def _wait_ready(port: int, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError("agent did not become ready")


def start_fake(module: str, token: str) -> tuple[subprocess.Popen[bytes], str]:
    """A fake service as its own process (`python -m tests.fakes.<name>`) and its URL."""
    return _serving(module, "--token", token)


def start_rollback_receiver(log: Path, script: str) -> tuple[subprocess.Popen[bytes], str]:
    """The rollback receiver as its own process (`python -m tests.receivers rollback`),
    answering by `script`, logging each request to `log`; and its URL."""
    args = ("--secret", SECRET, "--log", str(log), "--script", script)
    return _serving("tests.receivers", "rollback", *args)


def start_target() -> tuple[subprocess.Popen[bytes], str]:
    """The service being deployed as its own process (`python -m tests.receivers target`,
    `tests.receivers.Target`) and its URL."""
    return _serving("tests.receivers", "target")


def _serving(module: str, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m module args` and the URL it says it serves on its first line."""
    server = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=_env(), stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        url: str = json.loads(server.stdout.readline())["url"]
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server, url


def start_site(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A healthy target (`http.server` on `workdir/site`, its `/health` answers 200) and its
    URL, once it serves: the deploy a trial watches passes. It binds a port the kernel
    gives it and says which (`_SERVING`), where it was given one `free_port` had read and
    let go: another process (a second suite, another worker) took it first, the server
    exited unseen, every probe was refused, and the window failed inside a trial that
    counted its `failure` status as the resend of the `in_progress` it waited on."""
    (workdir / "site").mkdir(exist_ok=True)
    (workdir / "site" / "health").write_text("ok\n")
    target = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=workdir / "site",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert target.stdout is not None
        said = target.stdout.readline()
        serving = _SERVING.match(said)
        assert serving is not None, f"http.server said {said!r}"
    except BaseException:
        target.kill()
        target.wait()
        raise
    return target, f"http://127.0.0.1:{serving[1].decode()}"


_SERVING = re.compile(rb"Serving HTTP on 127\.0\.0\.1 port (\d+) ")
"""`http.server`'s first line, once it listens."""


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to `url` (a hook of the agent's, a fake's control path); its status."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


def until(check: Any, within: float) -> None:
    """Waits until `check()` is truthy; fails if it is not within `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting {within} s")
        time.sleep(0.05)


def for_at_most(check: Any, within: float) -> None:
    """Waits until `check()` is truthy or `within` seconds passed: for what may not come
    (a restart's send a trial counts, there or not; the caller checks)."""
    deadline = time.monotonic() + within
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def end_all(agent: subprocess.Popen[bytes] | None, *helpers: subprocess.Popen[bytes]) -> None:
    """End a trial: kill -9 the agent, SIGTERM each helper (killed after 5 s), each still
    running, in that order."""
    for proc in (agent, *helpers):
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL if proc is agent else signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_agent(
    config: Path, port: int, log: Path, *, within: float = 120.0, pidfile: Path | None = None
) -> subprocess.Popen[bytes]:
    """`postflight run` on `config`, ready within `within` seconds (else killed): a start
    took 37 s on a 2-core machine at load 24 (imports and the store's opening), and a
    30 s bound ended `bench/crash_resume.py` in a traceback at its 14th trial. Its pid is
    in `pidfile` at once, whole (written aside, then renamed): it may send before ready."""
    proc = _spawn(config, log, pidfile)
    try:
        _wait_ready(port, proc, within)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def start_on_port_0(
    config: Path, log: Path, *, within: float = 120.0, pidfile: Path | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """`start_agent` on `config` listening on `127.0.0.1:0`, and the port the kernel gave
    it, as its `listening on` line names it; `config` then names that port, so that its
    restarts (`start_agent`) listen there again. Where the trial chose the port by
    bind-read-close (`free_port`), another process could take it before the agent bound
    it; now only a restart's rebind after a kill can meet that."""
    text = config.read_text()
    assert _PORT_0 in text, f"{config} does not listen on 127.0.0.1:0"
    said = log.stat().st_size if log.exists() else 0  # the log is appended across restarts
    proc = _spawn(config, log, pidfile)
    try:
        deadline = time.monotonic() + within
        while not (found := _LISTENING.search(log.read_bytes()[said:])):
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited early with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("agent did not say where it listens")
            time.sleep(0.05)
        port = int(found[1])
        _wait_ready(port, proc, max(1.0, deadline - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    config.write_text(text.replace(_PORT_0, f"listen: 127.0.0.1:{port}\n", 1))
    return proc, port


_PORT_0 = "listen: 127.0.0.1:0\n"
_LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+) ")


def _spawn(config: Path, log: Path, pidfile: Path | None) -> subprocess.Popen[bytes]:
    """`postflight run` on `config`, its output appended to `log`, its pid in `pidfile`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--log-format", "json", "run", "--config", str(config)],
            cwd=ROOT,
            env=_env(),
            stdout=out,
            stderr=out,
        )
    if pidfile is not None:
        aside = pidfile.with_name(pidfile.name + ".new")
        aside.write_text(str(proc.pid))
        os.replace(aside, pidfile)
    return proc


def kill_and_restart(
    agent: subprocess.Popen[bytes], rng: random.Random, config: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """kill -9 the agent at a random instant within the next 0.35 s, then start it again."""
    time.sleep(rng.uniform(0.0, 0.35))
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    return start_agent(config, port, log)


def start_tracked(config: Path, port: int, log: Path, pidfile: Path) -> subprocess.Popen[bytes]:
    """`start_agent`, its pid written to `pidfile` (for a receiver that kills it)."""
    return start_agent(config, port, log, pidfile=pidfile)


def stop(agent: subprocess.Popen[bytes] | None, helper: subprocess.Popen[bytes]) -> None:
    """End a trial: kill -9 the agent if it still runs, SIGTERM the helper server."""
    if agent is not None and agent.poll() is None:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    helper.send_signal(signal.SIGTERM)
    try:
        helper.wait(timeout=5)
    except subprocess.TimeoutExpired:
        helper.kill()


def read_attempts(path: Path) -> list[dict[str, Any]]:
    """The receiver's log as far as it has written it: its whole lines only. The receiver
    (another process) appends a line while the trial reads, and a line that crosses a
    page of the file shows up cut where the page ends until the write completes (a
    trial's read at that instant failed on half a line: JSONDecodeError, a loaded CI run)."""
    if not path.exists():
        return []
    text = path.read_text()
    written = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in written.splitlines() if line.strip()]


@dataclass
class TrialResult:
    deploy_id: str
    kills: int
    final_state: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    killed_at: list[float] = field(default_factory=list)
    """When each killed agent was seen dead (after its wait, or for the receiver's kill,
    its exit seen), on the receiver's clock: after anything that agent did."""
    rollback: dict[str, Any] | None = None
    """The deploy object's `rollback` as the trial last read it (what it took as settled)."""

    @property
    def accepted(self) -> int:
        """Requests the receiver answered 2xx, duplicates included."""
        return sum(1 for a in self.attempts if a.get("accepted"))

    @property
    def acted_on(self) -> int:
        """Rollbacks the receiver acted on: 2xx answers to a key not accepted before."""
        return sum(1 for a in self.attempts if a.get("accepted") and not a.get("duplicate"))

    @property
    def duplicates(self) -> int:
        """2xx answers to a key already accepted: sent again by a restarted agent."""
        return self.accepted - self.acted_on

    @property
    def same_key_and_body(self) -> bool:
        keys = {a.get("idempotency_key") for a in self.attempts}
        bodies = {a.get("body") for a in self.attempts}
        return keys == {self.deploy_id} and len(bodies) == 1

    @property
    def resent_only_after_a_kill(self) -> bool:
        """No agent sends a rollback again once it heard a 2xx: each request that arrives
        after an accepted one comes after a kill that followed that acceptance (its
        answer, given to a sender still connected: one killed before it is not
        accepted). Its arrival was the mark: a kill recorded just before it was sent
        (the trial's process preempted between the two) then read as no kill at all."""
        accepted_at: float | None = None
        for attempt in sorted(self.attempts, key=lambda a: float(a["at"])):
            at = float(attempt["at"])
            if accepted_at is not None and not any(accepted_at < k < at for k in self.killed_at):
                return False
            if attempt.get("accepted"):
                accepted_at = float(attempt.get("answered_at") or at)
        return True

    @property
    def ok(self) -> bool:
        return (
            self.final_state == "rolled_back"
            and self.acted_on == 1
            and self.same_key_and_body
            and self.resent_only_after_a_kill
            and all(a.get("signature_ok") for a in self.attempts)
        )


def run_trial(
    workdir: Path, rng: random.Random, max_kills: int = 3, *, kill_on_accept: bool = False
) -> TrialResult:
    """One trial: up to `max_kills` kills at random instants of the delivery, and with
    `kill_on_accept` one more by the receiver, the instant it accepts the rollback."""
    workdir.mkdir(parents=True, exist_ok=True)
    receiver_log = workdir / "receiver.jsonl"
    pidfile = workdir / "agent.pid"
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.receivers",
            "rollback",
            "--secret",
            SECRET,
            "--log",
            str(receiver_log),
            "--script",
            RECEIVER_SCRIPT,
            *(["--kill-on-accept", str(pidfile)] if kill_on_accept else []),
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
    )
    agent: subprocess.Popen[bytes] | None = None
    try:
        assert receiver.stdout is not None
        ready = json.loads(receiver.stdout.readline())
        config = write_config(workdir, 0, ready["url"])
        agent_log = workdir / "agent.log"
        agent, port = start_on_port_0(config, agent_log, pidfile=pidfile)
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-crash"},
        )
        deploy_id = deploy["id"]
        killed_at: list[float] = []
        random_kills = 0
        state: dict[str, Any] = deploy
        deadline = time.monotonic() + 60  # of the agents' running time: starts not counted
        while time.monotonic() < deadline:
            if agent.poll() is not None:  # the receiver killed it: restart it
                killed_at.append(time.time())
                started = time.monotonic()
                agent = start_tracked(config, port, agent_log, pidfile)
                deadline += time.monotonic() - started
                continue
            try:
                state = request_json("GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy_id}")
            except (urllib.error.URLError, ConnectionError):
                continue  # killed while asked: seen dead above
            rollback = state.get("rollback") or {}
            settled = state["state"] != "watching" and rollback.get("state") != "pending"
            if settled:
                attempts = read_attempts(receiver_log)
                return TrialResult(
                    deploy_id, len(killed_at), state["state"], attempts, killed_at, rollback
                )
            seen = len(read_attempts(receiver_log))
            if random_kills < max_kills and (seen > 0 or rollback.get("state") == "pending"):
                # somewhere inside the delivery: between attempts, mid-request, or
                # just after the receiver accepted and before the agent recorded it
                time.sleep(rng.uniform(0.0, 0.35))
                random_kills += 1
                if agent.poll() is None:  # else the receiver's kill came first
                    agent.send_signal(signal.SIGKILL)
                    agent.wait()
                    killed_at.append(time.time())
                    started = time.monotonic()
                    agent = start_tracked(config, port, agent_log, pidfile)
                    deadline += time.monotonic() - started
                continue
            time.sleep(0.02)
        raise RuntimeError(f"trial did not settle: {state}")
    finally:
        stop(agent, receiver)

"""kill -9 while a `rollback.then` follow-up is out, then restart (contract §7).

The rollback is taken at once; the follow-up's receiver holds it unanswered (`hang`),
and the agent is killed with its claim taken. The rollback's timeout is long (60 s:
`follow_up_lease` over an hour with 50 attempts), past the trial's 30 s wait after the
restart, so the restart sends the follow-up within the trial only if it takes its killed
process's claim at once. Counted at the receiver (another process).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.crash import (
    ROOT,
    SECRET,
    _env,
    bad_environment,
    end_all,
    for_at_most,
    free_port,
    read_attempts,
    request_json,
    server_and_store,
    start_agent,
    store_rows,
    until,
)


def write_config(
    workdir: Path,
    agent_port: int,
    receiver_url: str,
    delivery: str = "timeout: 60s\nmax_attempts: 50",
) -> Path:
    rollback = f"""\
url: {receiver_url}
secret: {SECRET}
{delivery}
then:
  - {{name: db, url: {receiver_url}}}
"""
    path = workdir / "postflight.yaml"
    path.write_text(server_and_store(workdir, agent_port) + bad_environment(rollback))
    return path


@dataclass
class FollowUpTrial:
    claimed_at_kill: list[tuple[Any, ...]]
    """The follow-up's claim as the killed agent left it (its result)."""
    accepted: list[dict[str, Any]]
    """The follow-ups the receiver took (answered 2xx), repeats included."""


def run_follow_up_trial(workdir: Path, *, wait_s: float = 30.0) -> FollowUpTrial:
    workdir.mkdir(parents=True, exist_ok=True)
    receiver_log = workdir / "receiver.jsonl"
    receiver = subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.receivers", "rollback", "--secret", SECRET),
            *("--log", str(receiver_log), "--script", "200,hang,200"),
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
    )
    agent: subprocess.Popen[bytes] | None = None

    def accepted() -> list[dict[str, Any]]:
        return [
            a
            for a in read_attempts(receiver_log)
            if a["accepted"] and a["headers"].get("X-Postflight-Event") == "rollback.then"
        ]

    def claim() -> list[tuple[Any, ...]]:
        return store_rows(workdir, "SELECT result FROM alerts WHERE event = 'then:db'")

    try:
        assert receiver.stdout is not None
        url = json.loads(receiver.stdout.readline())["url"]
        port = free_port()
        config = write_config(workdir, port, url)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-then"},
        )
        until(claim, 60.0)  # taken: its POST going out, held by the receiver
        time.sleep(0.5)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        at_kill = claim()
        agent = start_agent(config, port, log)
        for_at_most(accepted, wait_s)
        time.sleep(1.0)  # a second send would come with the first
        return FollowUpTrial(at_kill, accepted())
    finally:
        end_all(agent, receiver)


@dataclass
class FollowUpBudgetTrial:
    sent: list[dict[str, Any]]
    """Every follow-up the receiver received (all refused), across the kill."""
    at_kill: int
    """How many of them had come when the agent was killed."""


def run_follow_up_budget_trial(workdir: Path, *, max_attempts: int = 3) -> FollowUpBudgetTrial:
    """The follow-up's receiver refuses every attempt (503, asking for 2 s); the agent is
    killed once it has made two of its `max_attempts`, and started again."""
    workdir.mkdir(parents=True, exist_ok=True)
    receiver_log = workdir / "receiver.jsonl"
    receiver = subprocess.Popen(
        [
            sys.executable,
            *("-m", "tests.receivers", "rollback", "--secret", SECRET),
            *("--log", str(receiver_log), "--script", "200" + ",503:retry-after=2" * 20),
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
    )
    agent: subprocess.Popen[bytes] | None = None

    def sent() -> list[dict[str, Any]]:
        return [
            a
            for a in read_attempts(receiver_log)
            if a["headers"].get("X-Postflight-Event") == "rollback.then"
        ]

    def outcome() -> list[tuple[Any, ...]]:
        return store_rows(
            workdir, "SELECT result FROM alerts WHERE event = 'then:db' AND result <> 'claimed'"
        )

    try:
        assert receiver.stdout is not None
        url = json.loads(receiver.stdout.readline())["url"]
        port = free_port()
        delivery = f"timeout: 5s\nmax_attempts: {max_attempts}"
        config = write_config(workdir, port, url, delivery)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-then"},
        )
        until(lambda: len(sent()) >= 2, 60.0)
        time.sleep(0.3)  # its answer read: in the wait it asks for
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        at_kill = len(sent())
        agent = start_agent(config, port, log)
        until(outcome, 60.0)  # the follow-up failed, its budget spent
        time.sleep(1.0)  # one more would come with the last
        return FollowUpBudgetTrial(sent(), at_kill)
    finally:
        end_all(agent, receiver)

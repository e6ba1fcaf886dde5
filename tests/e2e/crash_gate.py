"""kill -9 while a GitHub deployment protection rule waits, then restart (contract §7).

The gate waits on the staging window of the same sha. The agent is killed (SIGKILL, no
cleanup) right after it acknowledged the gate, while staging still runs; the restarted
agent must answer it when staging ends, once. Counted at the fake GitHub (another
process), repeats included.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.crash import (
    end_all,
    free_port,
    post,
    request_json,
    server_and_store,
    start_agent,
    start_fake,
    start_site,
    store_rows,
    until,
)
from tests.fakes import github as gh

GH_TOKEN = "crash-gate-token"
GH_SECRET = "crash-gate-webhook-secret"
SHA = "5" * 40


def write_config(workdir: Path, agent_port: int, github_url: str, target_url: str) -> Path:
    text = (
        server_and_store(workdir, agent_port)
        + f"""\
integrations:
  github: {{api_url: "{github_url}", token: {GH_TOKEN}, webhook_secret: {GH_SECRET}}}
environments:
  production:
    base_url: {target_url}
    window: 60s
    interval: 300ms
    checks:
      - {{name: health, type: http, path: /health, timeout: 500ms}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production}}
    gate: {{after: staging, timeout: 60s}}
  staging:
    base_url: {target_url}
    window: 5s
    interval: 300ms
    probes_per_round: 3
    analysis: {{policy: threshold}}  # a healthy window passes when it ends
    checks:
      - {{name: health, type: http, path: /health, timeout: 500ms}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
"""
    )
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _gate_hook(agent_url: str, github_url: str) -> int:
    body = gh.protection_rule(github_url, sha=SHA, run_id=77)
    request = urllib.request.Request(
        f"{agent_url}/v1/hooks/github",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_protection_rule",
            "X-GitHub-Delivery": "crash-gate-1",
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
        },
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


def _staging_rounds(url: str, rounds: int) -> None:
    """Waits (30 s at most) until the deploy at `url` has `rounds` rounds, still watching."""
    deadline = time.monotonic() + 30
    seen = request_json("GET", url)
    while seen["rounds"] < rounds and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = request_json("GET", url)
    assert seen["rounds"] >= rounds and seen["state"] == "watching", seen


def _answered(workdir: Path) -> bool:
    """Whether the store holds the gate as answered (its outcome recorded): in
    `gates_by_environment`, where this version keeps its gates since migration 14."""
    found = store_rows(workdir, "SELECT answered_at FROM gates_by_environment")
    return bool(found) and all(answered is not None for (answered,) in found)


@dataclass
class GateTrial:
    answers_before_restart: list[dict[str, Any]]
    staging_state: str
    answers: list[dict[str, Any]]


def _answers_posted(github_url: str) -> int:
    """The answers the fake received, the one it holds unanswered included."""
    with urllib.request.urlopen(f"{github_url}/_fake/requests", timeout=5) as response:
        seen: list[dict[str, Any]] = json.loads(response.read())
    return sum(1 for r in seen if r["path"].endswith("/deployment_protection_rule"))


def _hang_answers(github_url: str) -> None:
    """The fake holds the first answer unanswered (the agent is mid-call when killed)."""
    post(
        f"{github_url}/_fake/fail",
        json.dumps({"kind": "hang", "times": 1, "match": "/deployment_protection_rule"}).encode(),
        {"Content-Type": "application/json"},
    )


def run_gate_trial(workdir: Path, *, mid_answer: bool = False, wait_s: float = 60.0) -> GateTrial:
    """`mid_answer`: killed once staging passed and its answer is out, held by the fake
    (the gate's claim, `GATE_CLAIM_S`, runs past `wait_s`), not while staging runs."""
    workdir.mkdir(parents=True, exist_ok=True)
    target, target_url = start_site(workdir)
    fake, github_url = start_fake("tests.fakes.github", GH_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        agent_url = f"http://127.0.0.1:{port}"
        config = write_config(workdir, port, github_url, target_url)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        staging = request_json(
            "POST", f"{agent_url}/v1/deploys", {"environment": "staging", "version": SHA}
        )
        # staging has rounds on record before the crash: a busy machine's restart took 5-9 s,
        # past the 5 s window, and a window with no round of its own is inconclusive
        _staging_rounds(f"{agent_url}/v1/deploys/{staging['id']}", 2)
        if mid_answer:
            _hang_answers(github_url)
        assert _gate_hook(agent_url, github_url) == 202
        if mid_answer:
            until(lambda: _answers_posted(github_url), 60)
        agent.send_signal(signal.SIGKILL)  # staging still watching: the gate is pending
        agent.wait()
        before = _get(f"{github_url}/_fake/gate_answers")
        agent = start_agent(config, port, log)
        deadline = time.monotonic() + wait_s
        state = "watching"
        while time.monotonic() < deadline:
            state = request_json("GET", f"{agent_url}/v1/deploys/{staging['id']}")["state"]
            # answered in the store: no scan of the agent answers it again (it answers
            # pending gates only); then counted at the fake, repeats included
            if (
                state != "watching"
                and _answered(workdir)
                and _get(f"{github_url}/_fake/gate_answers")
            ):
                break
            time.sleep(0.1)
        return GateTrial(before, state, _get(f"{github_url}/_fake/gate_answers"))
    finally:
        end_all(agent, fake, target)

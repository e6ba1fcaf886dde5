"""kill -9 while a GitHub deployment status is out, then restart (contract §7).

GitHub holds the window's `in_progress` status unanswered (the fake's `hang`): the agent
is killed mid-call, its claim without an outcome. The channel's timeout is long (60 s:
`_status_lease` over five minutes), past the trial's 30 s wait after the restart, so the
restart sends it within the trial only if it takes its killed process's claim at once.
Counted at the fake GitHub (another process), every request it received included.
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
    for_at_most,
    free_port,
    post,
    server_and_store,
    start_agent,
    start_fake,
    start_site,
    store_rows,
    until,
)
from tests.fakes import github as gh

GH_TOKEN = "crash-status-token"
GH_SECRET = "crash-status-webhook-secret"
STATUSES = f"/repos/{gh.REPOSITORY}/deployments/{gh.DEPLOYMENT_ID}/statuses"


def write_config(workdir: Path, agent_port: int, github_url: str, target_url: str) -> Path:
    text = (
        server_and_store(workdir, agent_port)
        + f"""\
integrations:
  github:
    api_url: "{github_url}"
    token: {GH_TOKEN}
    webhook_secret: {GH_SECRET}
    timeout: 60s
environments:
  production:
    base_url: {target_url}
    window: 120s
    interval: 300ms
    checks:
      - {{name: health, type: http, path: /health, timeout: 500ms}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production}}
"""
    )
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


def _status_hook(agent_url: str) -> int:
    body = gh.deployment_status()
    return post(
        f"{agent_url}/v1/hooks/github",
        body,
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "crash-status-1",
            "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
        },
    )


def _posted(github_url: str) -> list[dict[str, Any]]:
    """Every status POST the fake received (the held one, unanswered, included)."""
    with urllib.request.urlopen(f"{github_url}/_fake/requests", timeout=5) as response:
        seen: list[dict[str, Any]] = json.loads(response.read())
    return [r for r in seen if r["method"] == "POST" and r["path"] == STATUSES]


@dataclass
class StatusTrial:
    before_kill: list[dict[str, Any]]
    """The status POSTs the fake had when the agent was killed (the held one)."""
    posted: list[dict[str, Any]]
    """Every status POST at the trial's end."""


def run_status_trial(workdir: Path, *, wait_s: float = 30.0) -> StatusTrial:
    workdir.mkdir(parents=True, exist_ok=True)
    target, target_url = start_site(workdir)
    fake, github_url = start_fake("tests.fakes.github", GH_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    try:
        # the first status POST is held unanswered: the agent is mid-call when killed
        post(
            f"{github_url}/_fake/fail",
            json.dumps({"kind": "hang", "times": 1, "match": STATUSES}).encode(),
            {"Content-Type": "application/json"},
        )
        port = free_port()
        agent_url = f"http://127.0.0.1:{port}"
        config = write_config(workdir, port, github_url, target_url)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        assert _status_hook(agent_url) == 202
        until(lambda: _posted(github_url), 30.0)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        before = _posted(github_url)
        agent = start_agent(config, port, log)
        for_at_most(lambda: len(_posted(github_url)) > len(before), wait_s)
        time.sleep(1.0)  # a second send would come with the first
        return StatusTrial(before, _posted(github_url))
    finally:
        end_all(agent, fake, target)


@dataclass
class AskedWaitTrial:
    asked_s: float
    """The `Retry-After` GitHub's secondary rate limit answered the first status with."""
    posted: list[dict[str, Any]]
    """Every status POST at the trial's end, each with when the fake received it (`at`)."""


def run_asked_wait_trial(workdir: Path, *, asked_s: float = 10.0) -> AskedWaitTrial:
    """GitHub answers the window's first status with a secondary rate limit whose
    `Retry-After` (`asked_s`) is within one call's waits (`CALL_MAX_BACKOFF_S`): the agent
    waits it inside the call, and is killed in that wait, then started again. 10 s, where
    it was 20: a restart that does not keep the wait sends at once, 2-4 s after the first
    (the kill comes as the wait is stored, the restart's start takes the rest), well inside
    10 s; the trial took 23 s, 10 of them past what telling the two apart needs."""
    workdir.mkdir(parents=True, exist_ok=True)
    target, target_url = start_site(workdir)
    fake, github_url = start_fake("tests.fakes.github", GH_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    try:
        post(
            f"{github_url}/_fake/fail",
            json.dumps(
                {
                    "kind": "secondary_rate_limit",
                    "times": 1,
                    "reset_in": asked_s,
                    "match": STATUSES,
                }
            ).encode(),
            {"Content-Type": "application/json"},
        )
        port = free_port()
        agent_url = f"http://127.0.0.1:{port}"
        config = write_config(workdir, port, github_url, target_url)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        assert _status_hook(agent_url) == 202
        until(lambda: _posted(github_url), 30.0)
        # killed once the wait is in the store (its claim's run unsaid), or a few seconds
        # into it where nothing keeps it: well inside the wait either way
        until(lambda: _kept(workdir), 5.0)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        agent = start_agent(config, port, log)
        until(lambda: len(_posted(github_url)) > 1, asked_s + 30.0)
        time.sleep(1.0)  # a third send would come with the second
        return AskedWaitTrial(asked_s, _posted(github_url))
    finally:
        end_all(agent, fake, target)


def _kept(workdir: Path) -> bool:
    """Whether the `in_progress` status's claim is kept as a wait (no live run said)."""
    rows = store_rows(
        workdir,
        "SELECT claimed_run FROM alerts WHERE event = 'github:in_progress' AND result = 'claimed'",
    )
    return bool(rows) and rows[0][0] is None

"""kill -9 while a Rolling Release approval is out, then restart (contract §7).

The window of the release's canary passes; Vercel holds its approval unanswered (the
fake's `hang`) and the agent is killed mid-call. Vercel's timeout is long (60 s:
`_approval_lease` over ten minutes), past the trial's 30 s wait after the restart, so the
restart approves within the trial only if it takes its killed process's claim at once.
Counted at the fake Vercel (another process), every request it received included.
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
    until,
)
from tests.fakes import vercel as vc

VC_TOKEN = "crash-approval-token"
VC_SECRET = "crash-approval-webhook-secret"
APPROVE = f"/v1/projects/{vc.PROJECT}/rolling-release/approve-stage"


def write_config(workdir: Path, agent_port: int, vercel_url: str, target_url: str) -> Path:
    text = (
        server_and_store(workdir, agent_port)
        + f"""\
integrations:
  vercel:
    api_url: "{vercel_url}"
    token: {VC_TOKEN}
    webhook_secret: {VC_SECRET}
    timeout: 60s
environments:
  production:
    base_url: {target_url}
    window: 3s
    interval: 300ms
    probes_per_round: 3
    analysis: {{policy: threshold}}
    checks:
      - {{name: health, type: http, path: /health, timeout: 500ms}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
    sources:
      vercel: {{project: {vc.PROJECT}, target: production, rolling_release: true}}
"""
    )
    path = workdir / "postflight.yaml"
    path.write_text(text)
    return path


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _approvals(vercel_url: str) -> list[dict[str, Any]]:
    """Every approval POST the fake received (the held one, unanswered, included)."""
    return [r for r in _get(f"{vercel_url}/_fake/requests") if r["path"] == APPROVE]


@dataclass
class ApprovalTrial:
    before_kill: list[dict[str, Any]]
    """The approval POSTs the fake had when the agent was killed (the held one)."""
    approvals: list[dict[str, Any]]
    """Every approval POST at the trial's end."""
    release: dict[str, Any]
    """The release at the trial's end, as the fake holds it."""


def run_approval_trial(workdir: Path, *, wait_s: float = 30.0) -> ApprovalTrial:
    workdir.mkdir(parents=True, exist_ok=True)
    target, target_url = start_site(workdir)
    fake, vercel_url = start_fake("tests.fakes.vercel", VC_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    json_type = {"Content-Type": "application/json"}
    try:
        post(f"{vercel_url}/_fake/rolling/{vc.PROJECT}/{vc.NEW}", b"{}", json_type)
        hang = {"kind": "hang", "times": 1, "match": APPROVE}
        post(f"{vercel_url}/_fake/fail", json.dumps(hang).encode(), json_type)
        port = free_port()
        agent_url = f"http://127.0.0.1:{port}"
        config = write_config(workdir, port, vercel_url, target_url)
        log = workdir / "agent.log"
        agent = start_agent(config, port, log)
        body = vc.event(event_id="crash-approval-1", deployment=vc.NEW)
        headers = {**json_type, "x-vercel-signature": vc.signature(VC_SECRET, body)}
        assert post(f"{agent_url}/v1/hooks/vercel", body, headers) == 202
        until(lambda: _approvals(vercel_url), 60.0)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        before = _approvals(vercel_url)
        agent = start_agent(config, port, log)
        for_at_most(lambda: len(_approvals(vercel_url)) > len(before), wait_s)
        time.sleep(1.0)  # a second send would come with the first
        release = _get(f"{vercel_url}/_fake/rolling/{vc.PROJECT}")
        return ApprovalTrial(before, _approvals(vercel_url), release)
    finally:
        end_all(agent, fake, target)

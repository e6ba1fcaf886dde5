"""kill -9 during a rollback through Vercel (contract §7), then restart: one trial.

The sibling of `tests/e2e/crash.py` for `rollback.target: vercel`. Vercel has no
idempotency key, so "exactly once" is counted where it matters: rollbacks the fake
Vercel (another process) acted on, duplicates included. The fake answers the first
rollback attempts 503 and each takes 150 ms, so kills land between attempts, mid-request
and just after Vercel acted but before the agent recorded it.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.crash import (
    bad_environment,
    free_port,
    kill_and_restart,
    request_json,
    server_and_store,
    start_agent,
    start_fake,
    stop,
)

VERCEL_TOKEN = "crash-vercel-token"
PROJECT = "prj_web123"
OLD, NEW = "dpl_old111", "dpl_new222"


def write_config(
    workdir: Path,
    agent_port: int,
    vercel_url: str,
    *,
    backoff: str = "50ms",
    max_backoff: str = "200ms",
    max_attempts: int = 50,
) -> Path:
    """The trial's configuration (`backoff`, `max_backoff`, `max_attempts`: its rollback's)."""
    integrations = f"""\
integrations:
  vercel: {{api_url: "{vercel_url}", token: {VERCEL_TOKEN}}}
"""
    environment = bad_environment(
        f"target: vercel\nbackoff: {backoff}\nmax_backoff: {max_backoff}\n"
        f"max_attempts: {max_attempts}\n",
        more=f"sources:\n  vercel: {{project: {PROJECT}, target: production}}\n",
    )
    path = workdir / "postflight.yaml"
    path.write_text(server_and_store(workdir, agent_port) + integrations + environment)
    return path


def _fake(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path,
        data=data,
        method="POST" if data else "GET",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class VercelTrial:
    deploy_id: str
    kills: int
    final_state: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    reconciled: int = 0
    """Restarts that found the rollback already done at Vercel and did not send it again."""

    @property
    def ok(self) -> bool:
        return (
            self.final_state == "rolled_back"
            and len(self.accepted) == 1
            and self.accepted[0]["deployment"] == OLD
        )


def run_vercel_trial(workdir: Path, rng: random.Random, max_kills: int = 3) -> VercelTrial:
    workdir.mkdir(parents=True, exist_ok=True)
    fake, url = start_fake("tests.fakes.vercel", VERCEL_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    try:
        _fake(url, "/_fake/fail", {"kind": "503", "times": 2, "match": "/rollback/"})
        port = free_port()
        config = write_config(workdir, port, url)
        agent_log = workdir / "agent.log"
        agent = start_agent(config, port, agent_log)
        labels = {"vercel.deployment": NEW, "vercel.previous": OLD}
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-crash", "labels": labels},
        )
        deploy_id = deploy["id"]
        kills = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = request_json("GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy_id}")
            rollback = state.get("rollback") or {}
            if state["state"] != "watching" and rollback.get("state") != "pending":
                requests = [r for r in _fake(url, "/_fake/requests") if "/rollback/" in r["path"]]
                reconciled = agent_log.read_text(errors="replace").count("already took effect")
                return VercelTrial(
                    deploy_id,
                    kills,
                    state["state"],
                    _fake(url, "/_fake/accepted"),
                    len(requests),
                    reconciled,
                )
            seen = [r for r in _fake(url, "/_fake/requests") if "/rollback/" in r["path"]]
            if kills < max_kills and (seen or rollback.get("state") == "pending"):
                agent = kill_and_restart(agent, rng, config, port, agent_log)
                kills += 1
                continue
            time.sleep(0.02)
        raise RuntimeError(f"trial did not settle: {state}")
    finally:
        stop(agent, fake)

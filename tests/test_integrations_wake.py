"""The integrations' scans with a store slow to answer (each scan seconds long), seen at a
fake GitHub: a deployment whose event came during a scan has its `in_progress` status at
the next scan, at once, not a poll interval later (here the poll is an hour; at the
daemon's it is a second)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.app import build_app
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from tests.app_client import AppClient
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.slow_listing import SLOW_S, SlowListing

pytestmark = pytest.mark.timeout(40)
TOKEN = "gh-token"
SECRET = "gh-webhook-secret"


class SlowGates(SlowListing):
    """Its list of pending gates, read at the end of each integrations scan (after the
    windows), takes `SLOW_S`: a scan lasts that long."""

    async def pending_gates(self, *args: Any, **kwargs: Any) -> Any:
        return await self.slowly(functools.partial(super().pending_gates, *args, **kwargs))


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=TOKEN) as server:
        server.deployments = {1, 2}
        yield server


def config(github: FakeGitHub) -> str:
    return f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations:
  github: {{api_url: "{github.url}", token: {TOKEN}, webhook_secret: {SECRET}}}
environments:
  production:
    base_url: http://127.0.0.1:9
    window: 30s
    checks: [{{name: health, type: http, path: /health, timeout: 50ms}}]
    rules: [{{name: errors, source: checks, metric: error_rate, max: 1.0}}]
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production}}
"""


async def deployed(client: AppClient, deployment: int) -> None:
    """GitHub's `deployment_status` event of `deployment` (success): a window opens."""
    body = gh.deployment_status(deployment_id=deployment, sha=f"{deployment:040x}")
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": f"delivery-{deployment}",
        "X-Hub-Signature-256": gh.signature(SECRET, body),
    }
    async with client.post("/v1/hooks/github", data=body, headers=headers) as r:
        assert r.status == 202, await r.text()


async def in_progress(github: FakeGitHub, deployment: int, within: float) -> None:
    """Until `deployment` has its `in_progress` status, at most `within` s from now."""
    asked = time.monotonic()
    while not any(
        s["deployment"] == deployment and s["state"] == "in_progress" for s in github.statuses
    ):
        assert time.monotonic() - asked < within, github.statuses
        await asyncio.sleep(0.05)


async def test_a_deployment_heard_during_a_scan_has_its_status_at_the_next(
    tmp_path: Path, github: FakeGitHub
) -> None:
    """Its event woke the scans while one listed the gates, after it had read the windows:
    the wake was cleared as that scan ended, and the status waited for the next poll."""
    store = SlowGates(tmp_path / "postflight.db")
    app = build_app(
        load_settings_text(config(github)),
        store=store,
        metrics=Metrics(),
        poll_interval=3600,
        background_probing=False,
    )
    async with TestClient(TestServer(app)) as client:
        await asyncio.sleep(SLOW_S + 0.5)  # the first scan, at start, is over
        await deployed(client, 1)  # wakes a scan, which posts its status
        await in_progress(github, 1, 3 * SLOW_S + 5)
        await asyncio.wait_for(store.listing.wait(), 3 * SLOW_S)  # a scan, its windows read
        await deployed(client, 2)
        await in_progress(github, 2, 3 * SLOW_S + 5)

"""Contract §7 / README "One deploy reported by both providers": GitHub's event of the
commit a watched Vercel window deploys joins it, and GitHub then hears `in_progress` and
the verdict's status on its deployment, however late in the window the event comes."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e


async def test_github_joining_a_vercel_window_after_a_scan_hears_its_statuses(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """A Vercel window that owes nothing (its `vercel.previous` known, here from the
    environment's previous window; no Rolling Release, no commit status) was dropped by
    the integrations' scan (each second); GitHub's `deployment_status` of its commit,
    coming after that scan, joined it and added `github.deployment`, but no scan read the
    window again: its deployment heard neither `in_progress` nor the pass's `success`
    (the window passed, nothing rolled back to put it back in the scan's hands)."""
    agent = await start_agent(
        environments(flip_target, window="4s"), extra=integrations(fake_github, fake_vercel)
    )
    serving = vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40)
    assert (await vercel_hook(agent, serving))[0] == 202
    status, opened = await vercel_hook(agent, vc.event("deployment.succeeded", event_id="evt_s"))
    assert status == 202, opened
    assert opened["deploy"]["labels"]["vercel.previous"] == vc.OLD  # it owes Vercel nothing
    await asyncio.sleep(2.5)  # the integrations' scans (each second) have seen it
    body = gh.deployment_status()  # the same commit, deployment 42
    status, joined = await github_hook(agent, "deployment_status", body, "delivery-1")
    assert status == 202, joined
    assert joined["deploy"]["id"] == opened["deploy"]["id"]
    assert joined["deploy"]["labels"]["github.deployment"] == str(gh.DEPLOYMENT_ID)

    final = await agent.settled(opened["deploy"]["id"])
    assert final["state"] == "passed", final
    await eventually(lambda: any(s["state"] == "success" for s in fake_github.statuses))
    await asyncio.sleep(0.5)  # nothing more
    seen = [s["state"] for s in fake_github.statuses if s["deployment"] == gh.DEPLOYMENT_ID]
    assert seen == ["in_progress", "success"], fake_github.statuses

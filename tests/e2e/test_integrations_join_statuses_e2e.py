"""Contract §7 / README "One deploy reported by both providers": GitHub's event of the
commit a watched Vercel window deploys joins it, and GitHub then hears `in_progress` and
the verdict's status on its deployment, however late in the window the event comes."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.e2e.integrations_support import (  # noqa: F401 (fixture)
    Integrated,
    integrated,
    scanned,
)
from tests.e2e.test_integrations_e2e import eventually, github_hook, vercel_hook, windows
from tests.fakes import github as gh
from tests.fakes import vercel as vc

pytestmark = pytest.mark.e2e


async def test_github_joining_a_vercel_window_after_a_scan_hears_its_statuses(
    integrated: Integrated,  # noqa: F811
) -> None:
    """A Vercel window that owes nothing (its `vercel.previous` known, here from the
    environment's previous window; no Rolling Release, no commit status) was dropped by
    the integrations' scan (each second); GitHub's `deployment_status` of its commit,
    coming after that scan, joined it and added `github.deployment`, but no scan read the
    window again: its deployment heard neither `in_progress` nor the pass's `success`
    (the window passed, nothing rolled back to put it back in the scan's hands)."""
    agent = await integrated.start(integrated.environments(window="4s"))
    serving = vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40)
    assert (await vercel_hook(agent, serving))[0] == 202
    status, opened = await vercel_hook(agent, vc.event("deployment.succeeded", event_id="evt_s"))
    assert status == 202, opened
    assert opened["deploy"]["labels"]["vercel.previous"] == vc.OLD  # it owes Vercel nothing
    await scanned(agent)  # the integrations' scans have seen it (and dropped it)
    body = gh.deployment_status()  # the same commit, deployment 42
    status, joined = await github_hook(agent, "deployment_status", body, "delivery-1")
    assert status == 202, joined
    assert joined["deploy"]["id"] == opened["deploy"]["id"]
    assert joined["deploy"]["labels"]["github.deployment"] == str(gh.DEPLOYMENT_ID)

    final = await agent.settled(opened["deploy"]["id"])
    assert final["state"] == "passed", final
    await eventually(lambda: any(s["state"] == "success" for s in integrated.github.statuses))
    await asyncio.sleep(0.5)  # nothing more
    seen = [s["state"] for s in integrated.github.statuses if s["deployment"] == gh.DEPLOYMENT_ID]
    assert seen == ["in_progress", "success"], integrated.github.statuses


def relayed_status(sha: str = gh.COMMIT) -> bytes:
    """A `deployment_status` as a relay forwards it: no `deployment.id` (contract §7: the
    window opens with no statuses to post)."""
    document = json.loads(gh.deployment_status(sha=sha))
    del document["deployment"]["id"]
    return json.dumps(document).encode()


@pytest.mark.parametrize("github_first", [True, False], ids=["relay-first", "vercel-first"])
async def test_a_relayed_github_status_and_vercels_event_of_one_commit_are_one_window(
    integrated: Integrated,  # noqa: F811
    github_first: bool,
) -> None:
    """One deploy reported by both providers is one watch, the GitHub report relayed
    without its `deployment.id` too: the second event, of the same commit, joins the
    first's window. Before, the relayed status (no deployment label to join by) and
    Vercel's event each superseded the other's window: the watch began again, and the
    window left watching lacked the other provider's labels."""
    agent = await integrated.start()
    vercel = vc.event("deployment.succeeded", event_id="evt_s")  # gh.COMMIT, dpl_new222
    relayed = ("deployment_status", relayed_status(), "delivery-1")
    if github_first:
        status, opened = await github_hook(agent, *relayed)
        assert status == 202, opened
        status, joined = await vercel_hook(agent, vercel)
    else:
        status, opened = await vercel_hook(agent, vercel)
        assert status == 202, opened
        status, joined = await github_hook(agent, *relayed)
    assert status == 202, joined
    assert joined["deploy"]["id"] == opened["deploy"]["id"], joined
    labels = joined["deploy"]["labels"]
    assert labels["vercel.deployment"] == vc.NEW and labels["github.repository"] == gh.REPOSITORY
    assert "github.deployment" not in labels  # nothing to post statuses to
    states = [(w["id"], w["state"]) for w in await windows(agent)]
    assert states == [(opened["deploy"]["id"], "watching")], states

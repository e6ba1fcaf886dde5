"""What a long-running daemon keeps per deploy after the deploy is done with: nothing.

The per-deploy locks the integrations side takes (a manual rollback's, a GitHub
deployment's statuses', a commit's statuses') were kept in a dict for as long as the
process ran, one to three a deploy, and one per `POST /v1/deploys/{id}/rollback` even
for an id that matched no deploy (404): memory that grew with every deploy and every
such request, freed only by a restart."""

from __future__ import annotations

from typing import Any

from agent.api.hooks import INTEGRATIONS
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget
from tests.e2e.test_deploy_windows import environment
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    WebhookAgent,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    start_agent,
    webhook_agent,
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.receivers import RollbackReceiver


async def test_manual_rollbacks_and_unknown_ids_leave_no_lock_behind(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    rollback_receiver: Any,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    agent = await start_agent(environment(flip_target, receiver.url, window="1m"))
    integrations = agent.app[INTEGRATIONS]
    statuses = []
    for n in range(20):  # an API client asking for deploys that are not there
        async with agent.http.post(
            f"{agent.url}/v1/deploys/dep_{n:026d}/rollback",
            json={"reason": "by hand"},
            headers=agent.headers,
        ) as r:
            statuses.append(r.status)
    superseded = await agent.register("production", "v1")
    live = await agent.register("production", "v2")
    for deploy in (live, live, superseded):  # accepted, then refused twice (409)
        async with agent.http.post(
            f"{agent.url}/v1/deploys/{deploy['id']}/rollback",
            json={"reason": "by hand"},
            headers=agent.headers,
        ) as r:
            statuses.append(r.status)
    assert statuses == [404] * 20 + [202, 409, 409]
    final = await agent.settled(live["id"], within=20)
    assert final["state"] == "rolled_back" and len(receiver.attempts) == 1
    assert len(integrations._locks) == 0, f"{len(integrations._locks)} per-deploy locks kept"


async def test_a_github_deployments_statuses_leave_no_lock_behind(
    webhook_agent: WebhookAgent,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    agent = await webhook_agent()
    integrations = agent.app[INTEGRATIONS]
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.statuses) >= 1)
    flip_target.bad = True
    await agent.settled(opened["deploy"]["id"])
    await eventually(lambda: len(fake_github.statuses) >= 2)
    assert [s["state"] for s in fake_github.statuses] == ["in_progress", "failure"]
    # the status call still holds its lock while it stores GitHub's answer (a loaded run
    # looked in between): dropped once that is done, or kept for good (the leak)
    await eventually(lambda: len(integrations._locks) == 0, within=5)

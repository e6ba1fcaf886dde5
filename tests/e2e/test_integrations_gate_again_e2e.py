"""Contract §7's gates asked again on one callback URL, through the real daemon: GitHub
scopes a protection rule's callback to the run (`…/actions/runs/{run_id}/deployment_
protection_rule`; the answer names the environment), so the run's next job into that
environment, and a re-run, ask on the URL already answered. The second request was
stored as nothing (the gate existed) and answered `202 pending`, and its job waited for
GitHub's 30 days. A redelivery (the same `X-GitHub-Delivery`) is still one answer."""

from __future__ import annotations

import asyncio

from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.e2e.test_integrations_gate_replay_e2e import eventually_async
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel


async def test_the_runs_next_job_into_a_gated_environment_is_answered_too(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    agent = await start_agent(
        environments(flip_target, staging_window="1500ms"),
        extra=integrations(fake_github, fake_vercel),
    )
    good = "b" * 40
    await agent.settled((await agent.register("staging", good))["id"])
    rule = gh.protection_rule(fake_github.url, sha=good, run_id=5)
    first = await github_hook(agent, "deployment_protection_rule", rule, "job-a")
    assert first == (202, {"gate": "pending", "environment": "production"})
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    await eventually_async(agent.app[STORE].pending_gates, [])  # its answer stored
    # GitHub redelivers the first request: not asked again, told its answer
    approved = (202, {"gate": "approved", "environment": "production", "result": "HTTP 204"})
    assert await github_hook(agent, "deployment_protection_rule", rule, "job-a") == approved
    # the run's next job into Production: the same callback URL, its own deployment
    rule = gh.protection_rule(fake_github.url, sha=good, run_id=5, deployment_id=502)
    assert await github_hook(agent, "deployment_protection_rule", rule, "job-b") == first
    await eventually(lambda: len(fake_github.gate_answers) == 2)
    await asyncio.sleep(1.0)  # and no third answer
    assert [(a["run"], a["state"]) for a in fake_github.gate_answers] == [
        ("5", "approved"),
        ("5", "approved"),
    ]
    assert (
        await agent.scraped(
            "postflight_deploy_events_total", provider="github", result="redelivered"
        )
        == 1
    )

"""Contract §7's last paragraph through the real daemon: a window opened from a GitHub
deployment hears `in_progress` at its open, then `success` for a pass and `error` for an
inconclusive verdict, each with `log_url` pointing at the deploy object. Counted at the
fake GitHub, which checks the statuses' shape (reference/seed-stack-apis.md)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

SOURCES = f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Production}}}}"


@pytest.mark.parametrize(
    ("analysis", "state", "outcome"),
    [
        ("{policy: threshold, failure_limit: 2}", "passed", "success"),
        # 25 clean probes cannot show an error rate within 0.05 on evidence
        ("{policy: sequential, pass_on: evidence}", "inconclusive", "error"),
    ],
    ids=["passed", "inconclusive"],
)
async def test_a_github_deployments_verdict_is_posted_as_its_status_with_the_deploy_object(
    analysis: str,
    state: str,
    outcome: str,
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """`success` at a pass and `error` at an inconclusive verdict: the failure case had an
    end-to-end test (`test_github_deployment_status_opens_a_window_and_hears_in_progress_
    then_failure`), these two had none through the daemon."""
    agent = await start_agent(
        environment("production", flip_target.url, analysis=analysis, extra=SOURCES),
        extra=integrations(fake_github, fake_vercel),
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    deploy = opened["deploy"]
    assert deploy["version"] == gh.COMMIT

    assert (await agent.settled(deploy["id"]))["state"] == state
    await eventually(lambda: len(fake_github.statuses) >= 2)

    assert [s["state"] for s in fake_github.statuses] == ["in_progress", outcome]
    assert {s["deployment"] for s in fake_github.statuses} == {gh.DEPLOYMENT_ID}
    for posted in fake_github.statuses:
        log_url = posted["log_url"]
        assert log_url == f"{agent.url}{deploy['links']['self']}", log_url
    async with agent.http.get(log_url, headers=agent.headers) as r:
        assert r.status == 200
        assert (await r.json())["id"] == deploy["id"]

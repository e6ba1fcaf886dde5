"""README's statuses: "with `integrations.github.token` unset, none are posted" (the
webhook secret alone still opens windows from GitHub's events), through the real daemon:
a signed `deployment_status` opens a window, it passes, and the fake GitHub was asked
nothing, not a status sent without a token to be refused. validate-config's warning has
its test (tests/config/test_integration_warnings.py); the daemon's side had none."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.integrations_support import scanned
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    GH_SECRET,
    fake_github,
    fake_vercel,
    github_hook,
    start_agent,
)
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_a_github_integration_without_a_token_opens_windows_and_posts_no_status(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    extra = f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Production}}}}"
    agent = await start_agent(
        environment("production", flip_target.url, extra=extra),
        extra=f"""
    integrations:
      github: {{api_url: "{fake_github.url}", webhook_secret: {GH_SECRET}}}
    """,
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await scanned(agent)
    assert fake_github.requests == [], fake_github.requests

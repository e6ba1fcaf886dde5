"""README's statuses: "with `integrations.github.token` unset, none are posted" (the
webhook secret alone still opens windows from GitHub's events), through the real daemon:
a signed `deployment_status` opens a window, it passes, and the fake GitHub was asked
nothing, not a status sent without a token to be refused. validate-config's warning has
its test (tests/config/test_integration_warnings.py); the daemon's side had none."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import environment
from tests.e2e.integrations_support import Integrated, integrated, scanned  # noqa: F401
from tests.e2e.test_integrations_e2e import GH_SECRET, github_hook
from tests.fakes import github as gh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_a_github_integration_without_a_token_opens_windows_and_posts_no_status(
    integrated: Integrated,  # noqa: F811
) -> None:
    fake_github = integrated.github
    extra = f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Production}}}}"
    agent = await integrated.start_agent(
        environment("production", integrated.target.url, extra=extra),
        extra=f"""
    integrations:
      github: {{api_url: "{fake_github.url}", webhook_secret: {GH_SECRET}}}
    """,
    )
    integrated.started.append(agent)  # stopped before the fakes
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await scanned(agent)
    assert fake_github.requests == [], fake_github.requests

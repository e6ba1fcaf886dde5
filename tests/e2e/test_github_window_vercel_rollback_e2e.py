"""A window opened by GitHub's `deployment_status` alone rolls back through Vercel (contract
§7, `rollback.target: vercel`). Vercel's GitHub integration posts a GitHub deployment for
each Vercel deployment, and Vercel's own webhooks are for Pro and Enterprise teams only: a
Hobby project's agent hears GitHub only, and its window carries no `vercel.deployment`.
Its rollback failed, "nothing to roll back to", though Vercel lists the deployment of the
window's commit (`meta.githubCommitSha`) and the production deployment before it."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    SHA,
    environments,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel, listed_deployment

pytestmark = pytest.mark.e2e


async def test_a_window_github_opened_rolls_back_to_the_deployment_vercel_lists_before_its_commit(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    fake_vercel.listed[vc.PROJECT] = [
        listed_deployment(vc.NEW, 1764460800000, sha=SHA),
        listed_deployment(vc.OLD, 1764374400000, sha="b" * 40),
    ]
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    assert "vercel.deployment" not in opened["deploy"]["labels"]
    flip_target.bad = True
    final = await agent.settled(opened["deploy"]["id"])
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]
    assert fake_vercel.production[vc.PROJECT] == vc.OLD


async def test_a_window_whose_commit_vercel_does_not_list_is_not_rolled_back_to_a_guess(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """No listed production deployment is of the window's commit: which one came before
    it is not known, and nothing is rolled back (the rollback fails, saying why)."""
    fake_vercel.listed[vc.PROJECT] = [
        listed_deployment(vc.NEW, 1764460800000, sha="c" * 40),
        listed_deployment(vc.OLD, 1764374400000, sha="b" * 40),
    ]
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    flip_target.bad = True
    final = await agent.settled(opened["deploy"]["id"])
    assert (final["state"], final["rollback"]["state"]) == ("failed", "failed"), final
    assert fake_vercel.accepted == []
    assert SHA[:12] in (final["rollback"].get("last_error") or ""), final["rollback"]

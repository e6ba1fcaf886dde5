"""Contract §7: a deploy event opens a window whose version is its commit
(`deployment.sha`, `meta.githubCommitSha`). An event naming a watched window's provider
deployment joins that window (one watch per deployment), but only when it deploys the
same commit: one naming another commit is another deploy, and its answer is its own
window, never the other commit's."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
    windows,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e

FIRST, SECOND = "a" * 40, "b" * 40


async def test_an_event_of_a_watched_deployment_with_another_commit_opens_its_own_window(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """A sender that names one deployment id for every commit (a script, a relay, a test
    fake's fixed template): the second commit's `success` answered 202 with the first
    commit's window (`version` the first sha), still watching, and nothing watched the
    second commit. A provider's own second event of one deployment (the same commit)
    still joins its window."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    answers = []
    for n, sha in enumerate((FIRST, SECOND)):
        body = gh.deployment_status(sha=sha)  # deployment.id 42 both times
        status, answer = await github_hook(agent, "deployment_status", body, f"delivery-{n}")
        assert status == 202, answer
        answers.append(answer["deploy"])
    first, second = answers
    assert second["version"] == SECOND, second
    assert second["id"] != first["id"]
    assert (await agent.get(first["id"]))["state"] == "superseded"

    answers = []
    for n, sha in enumerate(("c" * 40, "d" * 40, "d" * 40)):
        kind = "deployment.promoted" if n == 2 else "deployment.succeeded"
        body = vc.event(kind, event_id=f"evt_{n}", deployment="dpl_fixed", sha=sha)
        status, answer = await vercel_hook(agent, body)
        assert status == 202, answer
        answers.append(answer["deploy"])
    first, second, promoted = answers
    assert second["version"] == "d" * 40, second
    assert second["id"] != first["id"]
    assert promoted["id"] == second["id"]  # the same deployment and commit: joined
    watching = [w["version"] for w in await windows(agent) if w["state"] == "watching"]
    assert watching == ["d" * 40]

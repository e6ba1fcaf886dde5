"""README's `previous_version` of a window a deploy event opened (`rollback.target:
github`): "the `previous_version` the environment served before it, from Postflight's own
windows: the newest earlier one's version, or what a rolled-back one went back to; `""`
for an environment's first". The rollback workflow's script acts on it, so it is read
where the workflow reads it: the dispatch's inputs at the fake GitHub, the windows opened
by signed `deployment_status` events through the real daemon. Only the function's unit
test (tests/api/test_hooks.py) held it before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import environment
from tests.e2e.integrations_support import Integrated, integrated  # noqa: F401 (fixture)
from tests.e2e.test_integrations_e2e import eventually, github_hook
from tests.fakes import github as gh
from tests.fakes.github import FakeGitHub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROLLBACK = "rollback: {target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"
A, B, C = ("a" * 40, "b" * 40, "c" * 40)


def sources(name: str) -> str:
    return f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: {name}}}}}\n{ROLLBACK}"


async def opened(agent: Any, sha: str, deployment: int, environment: str) -> str:
    body = gh.deployment_status(sha=sha, deployment_id=deployment, environment=environment)
    status, answer = await github_hook(agent, "deployment_status", body, f"d-{deployment}")
    assert status == 202, answer
    deploy_id: str = answer["deploy"]["id"]
    return deploy_id


def dispatched(github: FakeGitHub, deploy_id: str) -> dict[str, str]:
    found: list[dict[str, str]] = [
        d["inputs"] for d in github.dispatches if d["inputs"]["deploy_id"] == deploy_id
    ]
    assert len(found) == 1, github.dispatches
    return found[0]


async def test_a_deploy_events_window_dispatches_what_the_environment_served_before(
    integrated: Integrated,  # noqa: F811
) -> None:
    fake_github, flip_target = integrated.github, integrated.target
    config = environment("production", flip_target.url, extra=sources("Production")) + environment(
        "staging", flip_target.url, window="30s", extra=sources("Staging")
    )
    agent = await integrated.start(config)
    # an environment's first window: "" (nothing Postflight saw served before it)
    first = await opened(agent, A, 1, "Staging")
    await agent.rollback(first, "checkout broken")
    await eventually(lambda: len(fake_github.dispatches) == 1)
    assert dispatched(fake_github, first)["previous_version"] == ""
    # production: A passes, then B fails and goes back to A
    w1 = await opened(agent, A, 2, "Production")
    assert (await agent.settled(w1))["state"] == "passed"
    w2 = await opened(agent, B, 3, "Production")
    flip_target.bad = True
    assert (await agent.settled(w2))["state"] == "rolled_back"
    assert dispatched(fake_github, w2)["previous_version"] == A  # the newest earlier one's
    # C after the rollback: production served what B went back to, A (not B)
    flip_target.bad = False
    w3 = await opened(agent, C, 4, "Production")
    await agent.rollback(w3, "by hand")
    await eventually(lambda: len(fake_github.dispatches) == 3)
    assert dispatched(fake_github, w3)["previous_version"] == A

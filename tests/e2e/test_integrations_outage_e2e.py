"""Contract §7's deployment statuses through a GitHub outage, through the real daemon: a
verdict's status that GitHub could not take while it was down goes out once it is back,
once, where it was dropped after one call's few retries."""

from __future__ import annotations

import asyncio

import pytest

from agent.windows import integrations as daemon_side
from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    WebhookAgent,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
    webhook_agent,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel


async def test_a_verdicts_status_refused_while_github_was_down_is_posted_once_it_is_back(
    webhook_agent: WebhookAgent,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GitHub answering 503 for the few seconds of one call's retries at the verdict: the
    status was recorded failed for good, and the GitHub deployment stayed `in_progress`
    (what a pipeline or the environment's page shows) however soon GitHub came back."""
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_S", 0.5, raising=False)
    agent = await webhook_agent(window="1500ms")
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.statuses) >= 1)
    fake_github.fail("503", match="statuses")
    flip_target.bad = True
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "rolled_back"
    # one call's every attempt refused, and the next try too: then GitHub is back
    await eventually(lambda: len(fake_github.seen("statuses")) >= 1 + 4 + 1, within=30.0)
    fake_github.heal()
    await eventually(lambda: len(fake_github.statuses) >= 2, within=15.0)
    await asyncio.sleep(1.5)  # and not again
    assert [s["state"] for s in fake_github.statuses] == ["in_progress", "failure"]
    assert "probe-errors" in fake_github.statuses[-1]["description"]


@pytest.mark.parametrize(
    ("failure", "retried_for", "attempts"),
    [("422", 3600.0, 1), ("503", 0.0, 4)],
    ids=["a-refusal-that-will-not-change", "an-outage-past-the-retry-span"],
)
async def test_a_status_is_not_tried_again_once_a_retry_cannot_help(
    webhook_agent: WebhookAgent,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    retried_for: float,
    attempts: int,
) -> None:
    """A 422 (GitHub will refuse it again) is given up at once, and an outage longer
    than `STATUS_RETRY_FOR_S` after the window ended is given up after one call."""
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_S", 0.2)
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_FOR_S", retried_for)
    agent = await webhook_agent(window="1500ms")
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.statuses) >= 1)
    fake_github.fail(failure, match="statuses")
    await agent.settled(opened["deploy"]["id"])
    await eventually(lambda: len(fake_github.seen("statuses")) >= 1 + attempts, within=30.0)
    await asyncio.sleep(1.5)  # several retry periods: nothing more
    assert len(fake_github.seen("statuses")) == 1 + attempts
    assert [s["state"] for s in fake_github.statuses] == ["in_progress"]


async def test_a_gate_answer_refused_while_github_was_down_is_sent_once_it_is_back(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GitHub answering 503 through one call's retries when staging had passed: the gate
    was marked answered all the same, and production's job waited on a protection rule
    nobody would answer (GitHub gives up after 30 days)."""
    monkeypatch.setattr(daemon_side, "GATE_CLAIM_S", 0.5)
    agent = await start_agent(
        environments(flip_target, staging_window="1500ms"),
        extra=integrations(fake_github, fake_vercel),
    )
    good = "b" * 40
    staging = await agent.register("staging", good)
    fake_github.fail("503", match="deployment_protection_rule")
    rule = gh.protection_rule(fake_github.url, sha=good, run_id=1)
    status, answer = await github_hook(agent, "deployment_protection_rule", rule, "gate-1")
    assert status == 202, answer
    await agent.settled(staging["id"])
    await eventually(lambda: len(fake_github.seen("deployment_protection_rule")) >= 5, within=30)
    fake_github.heal()
    await eventually(lambda: len(fake_github.gate_answers) >= 1, within=15.0)
    await asyncio.sleep(1.5)  # and not again
    assert [(a["run"], a["state"]) for a in fake_github.gate_answers] == [("1", "approved")]


async def test_a_stage_approval_refused_while_vercel_was_down_is_sent_once_it_is_back(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Vercel answering 503 through one call's retries when the canary's window passed:
    the approval was recorded failed for good, and the Rolling Release waited at its
    stage for a person though Postflight had the evidence to advance it."""
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_S", 0.5)
    agent = await start_agent(
        environments(flip_target, window="1500ms", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    fake_vercel.fail("503", match="rolling-release")  # the release's state and its approval
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-1", deployment=vc.NEW))
    assert status == 202, opened
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    # the stage noted at the open (4 tries), the approval's look (4), then a try again
    await eventually(lambda: len(fake_vercel.seen("rolling-release")) >= 4 + 4 + 1, within=30)
    fake_vercel.heal()
    await eventually(lambda: len(fake_vercel.approvals) >= 1, within=15.0)
    await asyncio.sleep(1.5)  # and not again
    assert fake_vercel.approvals == [
        {"activeStageIndex": 0, "nextStageIndex": 1, "canaryDeploymentId": vc.NEW}
    ]

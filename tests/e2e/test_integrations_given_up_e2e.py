"""Contract §7's calls the agent gives up on, through the real daemon and fakes of GitHub
and Vercel that refuse: each is an alert through the window's channels and a count
(`postflight_integration_calls_total`), where it was a log line and on-call never learnt
that production's job, or a Rolling Release, waited on an answer nobody would send. And a
Rolling Release approval a stop cut off between two tries is sent by the restarted agent,
once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from agent.api.hooks import INTEGRATIONS
from agent.windows import integrations as daemon_side
from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent
from tests.e2e.integrations_support import scanned
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    alerts_to,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
    vercel_hook,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import JsonNotification, JsonSink


def given_up(sink: JsonSink) -> list[JsonNotification]:
    return [n for n in sink.notifications if "NOT" in n.title]


async def failed_calls(agent: RunningAgent, provider: str) -> float:
    return await agent.scraped(
        "postflight_integration_calls_total", provider=provider, result="failed"
    )


@dataclass
class Refusing:
    """What every test here starts its agents with: production's target and the fakes."""

    start: AgentFactory
    target: FlipTarget
    github: FakeGitHub
    vercel: FakeVercel

    async def alerting(self, sink: JsonSink, *, server: str = "", **options: Any) -> RunningAgent:
        """An agent with both integrations whose environments (`options`) alert to `sink`
        (`server`: lines of its `server:` section)."""
        return await self.start(
            environments(self.target, **options),
            alerting=alerts_to(sink),
            extra=integrations(self.github, self.vercel),
            server=server,
        )


@pytest.fixture
def refusing(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> Refusing:
    """The fixtures every test here asked for one by one, in the same order."""
    return Refusing(start_agent, flip_target, fake_github, fake_vercel)


async def passed_release_window(agent: RunningAgent, event_id: str) -> str:
    """The deploy a Rolling Release's event opens, once its window has passed."""
    status, opened = await vercel_hook(agent, vc.event(event_id=event_id, deployment=vc.NEW))
    assert status == 202, opened
    deploy: str = opened["deploy"]["id"]
    assert (await agent.settled(deploy))["state"] == "passed"
    return deploy


async def told_once(sink: JsonSink, agent: RunningAgent) -> JsonNotification:
    """The one given-up alert, and no second one after a few scans."""
    await eventually(lambda: len(given_up(sink)) >= 1)
    await scanned(agent)
    told = given_up(sink)
    assert len(told) == 1, [n.title for n in told]
    return told[0]


async def test_a_refused_verdict_status_is_an_alert_naming_the_deploy_and_what_to_do(
    refusing: Refusing, json_sink: JsonSink
) -> None:
    """GitHub refusing the verdict's deployment status (422, which will not change): the
    deployment stayed `in_progress` and only the log said so."""
    agent = await refusing.alerting(json_sink, window="1500ms")
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    deploy = opened["deploy"]["id"]
    await eventually(lambda: len(refusing.github.statuses) >= 1)
    refusing.github.fail("422", match="statuses")
    assert (await agent.settled(deploy))["state"] == "passed"
    told = await told_once(json_sink, agent)
    assert told.title.startswith(f"[postflight] production {deploy_version(opened)}: ")
    assert "GitHub deployment status NOT posted" in told.title
    assert deploy in told.message and "HTTP 422" in told.message
    assert "HTTP 422: fake failure 422" in told.message  # GitHub's words, not its JSON
    assert "Post the status by hand" in told.message
    assert told.type == "failure"
    assert await failed_calls(agent, "github") == 1
    sent = await agent.scraped(
        "postflight_integration_calls_total", provider="github", result="sent"
    )
    assert sent == 1  # its in_progress


def deploy_version(opened: dict[str, object]) -> str:
    deploy = opened["deploy"]
    assert isinstance(deploy, dict)
    return str(deploy["version"])


@pytest.mark.parametrize("failure", ["403", "503"], ids=["refused", "past-the-retries"])
async def test_a_rolling_release_approval_given_up_is_an_alert(
    refusing: Refusing, json_sink: JsonSink, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """Vercel refusing the approval (403), or not taking it through the retries (503,
    the hour made 0 here): the release waited at its stage and no one was told."""
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_FOR_S", 0.0)
    agent = await refusing.alerting(json_sink, window="1500ms", rolling_release=True)
    refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    refusing.vercel.fail(failure, match="approve-stage")
    deploy = await passed_release_window(agent, "rr-up")
    told = await told_once(json_sink, agent)
    assert "Rolling Release stage NOT approved, approve it by hand" in told.title
    assert deploy in told.message and f"HTTP {failure}" in told.message
    assert "Approve the stage (or complete the release) by hand in Vercel" in told.message
    if failure == "503":
        assert "not taken through an hour of retries" in told.message
    assert refusing.vercel.approvals == []
    assert await failed_calls(agent, "vercel") == 1


async def test_a_gate_answer_github_refuses_is_an_alert_to_the_gated_environment(
    refusing: Refusing, json_sink: JsonSink, caplog: pytest.LogCaptureFixture
) -> None:
    """Staging passed, and GitHub refused the approval (422: the token cannot answer the
    rule): production's job waited on its protection rule for GitHub's 30 days. Said in
    the log too, once, where the log said nothing of it."""
    caplog.set_level(logging.INFO, logger="postflight")
    agent = await refusing.alerting(json_sink, staging_window="1500ms")
    good = "b" * 40
    staging = await agent.register("staging", good)
    refusing.github.fail("422", match="deployment_protection_rule")
    rule = gh.protection_rule(refusing.github.url, sha=good, run_id=7)
    status, answer = await github_hook(agent, "deployment_protection_rule", rule, "gate-7")
    assert status == 202, answer
    await agent.settled(staging["id"])
    told = await told_once(json_sink, agent)
    assert "protection rule NOT answered, answer it by hand" in told.title
    assert "production's protection rule for bbbbbbbbbbbb" in told.message
    assert "approved" in told.message and "HTTP 422" in told.message
    assert staging["id"] in told.message  # the window it answers from
    assert "Review deployments" in told.message
    # a 422 may be a run with nothing left waiting (cancelled, answered by hand): said so
    assert "a 422 also when nothing waits any more: the run cancelled" in told.message
    assert await failed_calls(agent, "github") == 1
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "given up, not answered" in r.getMessage()
    ]
    assert len(logged) == 1, logged
    assert "production's protection rule for bbbbbbbbbbbb" in logged[0], logged
    assert "HTTP 422" in logged[0] and f"(deploy {staging['id']})" in logged[0], logged
    assert refusing.github.token not in "\n".join(r.getMessage() for r in caplog.records)


async def test_a_gate_with_no_staging_window_whose_rejection_is_refused_is_an_alert(
    refusing: Refusing, json_sink: JsonSink
) -> None:
    """No staging window of the sha ended in time, and GitHub refused the rejection: an
    alert about the sha, there being no window to tell it on."""
    agent = await refusing.alerting(json_sink, gate_timeout="1s")
    refusing.github.fail("404", match="deployment_protection_rule")
    rule = gh.protection_rule(refusing.github.url, sha="e" * 40, run_id=3)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-3")
    assert status == 202
    told = await told_once(json_sink, agent)
    assert told.title.startswith(f"[postflight] production {'e' * 40}: protection rule NOT")
    assert "rejected" in told.message and "HTTP 404" in told.message
    assert "HTTP 404: fake failure 404" in told.message  # GitHub's words, not its JSON
    assert "none (staging window ended in time)" in told.message
    assert await failed_calls(agent, "github") == 1


def past_the_lease(agent: RunningAgent) -> float:
    """When the approval lease (1 s here) of a claim taken by now has lapsed, on the
    agent's integrations' clock."""
    return float(agent.app[INTEGRATIONS].clock()) + 1.0


async def restarted_after_a_cut_off_approval(
    refusing: Refusing,
    monkeypatch: pytest.MonkeyPatch,
    *,
    match: str,
    looks: int,
    meanwhile: Callable[[], object] = lambda: None,
    sink: JsonSink | None = None,
) -> tuple[RunningAgent, str]:
    """An agent whose window passed while Vercel answered 503 to `match` (`looks`
    requests to the release's paths by then), stopped while its approval waits for its
    next try; Vercel back, `meanwhile` done; a new agent on the same store. Both alert
    to `sink`, if given."""
    monkeypatch.setattr(daemon_side, "STATUS_RETRY_S", 3600.0)  # no try before the stop
    monkeypatch.setattr(daemon_side.Integrations, "_approval_lease", lambda self: 1.0)
    config = environments(refusing.target, window="1500ms", rolling_release=True)
    extra = integrations(refusing.github, refusing.vercel)
    alerting = alerts_to(sink) if sink is not None else ""
    agent = await refusing.start(config, alerting=alerting, extra=extra)
    refusing.vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    refusing.vercel.fail("503", match=match)
    deploy = await passed_release_window(agent, "rr-stop")
    await eventually(lambda: len(refusing.vercel.seen("rolling-release")) >= looks, within=30)
    await agent.stop()
    refusing.vercel.heal()
    meanwhile()
    return await refusing.start(config, alerting=alerting, extra=extra), deploy


async def test_an_approval_a_stop_cut_off_between_two_tries_is_sent_after_the_restart_once(
    refusing: Refusing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The approval's claim stayed open for its next try, in memory only: the restarted
    agent took the claim for final, and the release waited at its stage for a person."""
    agent, _ = await restarted_after_a_cut_off_approval(
        refusing,
        monkeypatch,
        match="rolling-release",
        looks=4 + 4,  # the stage's note at the open, the approval's look
    )
    await eventually(lambda: len(refusing.vercel.approvals) >= 1, within=15.0)
    await scanned(agent, at=past_the_lease(agent))  # several scans and a lease: not again
    assert refusing.vercel.approvals == [
        {"activeStageIndex": 0, "nextStageIndex": 1, "canaryDeploymentId": vc.NEW}
    ]
    assert refusing.vercel.completions == []  # nor the next stage's (the last: `complete`)


async def test_an_approval_that_took_effect_before_the_restart_is_not_sent_again(
    refusing: Refusing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release moved on from the stage the window watched while no agent ran (the
    approval took effect though its answer was lost, or a person approved it): the
    restarted agent reads the release afresh and approves no second stage."""
    looks: list[int] = []

    def moved_on() -> None:
        refusing.vercel.move_stage(vc.PROJECT, 1)
        looks.append(len(refusing.vercel.seen("/rolling-release")))

    agent, deploy = await restarted_after_a_cut_off_approval(
        refusing,
        monkeypatch,
        match="approve-stage",
        looks=1 + 1 + 4,  # the note, the approval's look, its 4 attempts
        meanwhile=moved_on,
    )
    # the restarted agent's look at the release (it took the approval over)
    await eventually(lambda: len(refusing.vercel.seen("/rolling-release")) > looks[0], within=15.0)
    await scanned(agent, at=past_the_lease(agent))  # a take-over's lease lapsed: not sent
    assert refusing.vercel.approvals == []
    assert refusing.vercel.completions == []  # stage 1's next is the last: `complete`
    assert refusing.vercel.rolling[vc.PROJECT]["activeStage"]["index"] == 1
    assert (await agent.get(deploy))["labels"]["vercel.rolling_stage"] == "0"


async def test_the_runs_next_job_whose_answer_is_refused_too_is_told_again(
    refusing: Refusing, json_sink: JsonSink
) -> None:
    """GitHub asks again on the same callback URL for the run's next job into the
    environment: its answer refused too is a job waiting too, told as the first was."""
    agent = await refusing.alerting(json_sink, staging_window="1500ms")
    good = "b" * 40
    await agent.settled((await agent.register("staging", good))["id"])
    refusing.github.fail("422", match="deployment_protection_rule")
    rule = gh.protection_rule(refusing.github.url, sha=good, run_id=8)
    assert (await github_hook(agent, "deployment_protection_rule", rule, "job-a"))[0] == 202
    await eventually(lambda: len(given_up(json_sink)) >= 1)
    await asyncio.sleep(1.0)  # a second in the request's time
    rule = gh.protection_rule(refusing.github.url, sha=good, run_id=8, deployment_id=802)
    assert (await github_hook(agent, "deployment_protection_rule", rule, "job-b"))[0] == 202
    await eventually(lambda: len(given_up(json_sink)) >= 2)
    assert await failed_calls(agent, "github") == 2

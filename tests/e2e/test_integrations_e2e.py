"""Contract §7 end to end through the real daemon: signed Vercel and GitHub events open
windows, a regression rolls back through Vercel once, GitHub hears the statuses, gates
answer, manual rollbacks and their follow-ups go out once. Counted at the fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from agent.records import DeployWindow, WindowState
from agent.rollback import rollback_intent
from agent.store import store_from_url
from agent.store.base import AlertClaim, Store
from agent.windows.integrations import finishes
from agent.windows.lifecycle import FOLLOW_UPS
from common.times import rfc3339
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, RunningAgent, environment
from tests.e2e.crash import free_port
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import JsonSink, RollbackReceiver

GH_TOKEN = "gh-token-e2e"
GH_SECRET = "gh-webhook-secret"
VC_TOKEN = "vc-token-e2e"
VC_SECRET = "vc-webhook-secret"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
WebhookAgent = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
async def fake_vercel() -> AsyncIterator[FakeVercel]:
    async with FakeVercel(token=VC_TOKEN) as fake:
        yield fake


@pytest.fixture
async def fake_github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=GH_TOKEN) as fake:
        yield fake


@pytest.fixture
def start_agent(
    fake_github: FakeGitHub, fake_vercel: FakeVercel, start_agent: AgentFactory
) -> AgentFactory:
    """The e2e harness's, set up after the fakes and so stopped before them: stopped after,
    an agent posting a status at its stop retried the fake GitHub, gone, for the whole 5 s
    grace a delivery in flight gets (`agent.stopping`), at each such test's teardown."""
    return start_agent


def integrations(github: FakeGitHub, vercel: FakeVercel) -> str:
    return f"""
    integrations:
      github: {{api_url: "{github.url}", token: {GH_TOKEN}, webhook_secret: {GH_SECRET}}}
      vercel: {{api_url: "{vercel.url}", token: {VC_TOKEN}, webhook_secret: {VC_SECRET}}}
    """


def environments(
    target: FlipTarget,
    *,
    rollback: str = "{target: vercel, backoff: 50ms, max_backoff: 200ms}",
    window: str = "30s",
    rolling_release: bool = False,
    staging_window: str = "30s",
    gate_timeout: str = "30s",
) -> str:
    rr = str(rolling_release).lower()
    production = f"""
    sources:
      vercel: {{project: {vc.PROJECT}, target: production, rolling_release: {rr}}}
      github: {{repository: {gh.REPOSITORY}, environment: Production}}
    gate: {{after: staging, timeout: {gate_timeout}}}
    rollback: {rollback}
    """
    staging = f"""
    sources:
      vercel: {{project: {vc.PROJECT}, target: staging}}
      github: {{repository: {gh.REPOSITORY}, environment: Staging}}
    """
    return environment("production", target.url, window=window, extra=production) + environment(
        "staging", target.url, window=staging_window, extra=staging
    )


async def post_hook(
    agent: RunningAgent, provider: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with agent.http.post(
        f"{agent.url}/v1/hooks/{provider}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
    ) as r:
        return r.status, await r.json(content_type=None)


async def vercel_hook(agent: RunningAgent, body: bytes) -> tuple[int, dict[str, Any]]:
    return await post_hook(
        agent, "vercel", body, {"x-vercel-signature": vc.signature(VC_SECRET, body)}
    )


async def github_hook(
    agent: RunningAgent, event: str, body: bytes, delivery: str
) -> tuple[int, dict[str, Any]]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": gh.signature(GH_SECRET, body),
    }
    return await post_hook(agent, "github", body, headers)


async def eventually(check: Any, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


@pytest.fixture
def webhook_agent(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_github: FakeGitHub,
    fake_vercel: FakeVercel,
    rollback_receiver: Any,
) -> WebhookAgent:
    """Factory: `await webhook_agent(window=...)` → an agent with both integrations whose
    production (`flip_target`) rolls back through the signed webhook rather than Vercel."""

    async def start(window: str = "30s") -> RunningAgent:
        receiver: RollbackReceiver = await rollback_receiver(SECRET)
        rollback = f"{{url: '{receiver.url}', secret: {SECRET}, backoff: 50ms}}"
        return await start_agent(
            environments(flip_target, rollback=rollback, window=window),
            extra=integrations(fake_github, fake_vercel),
        )

    return start


async def windows(agent: RunningAgent) -> list[dict[str, Any]]:
    async with agent.http.get(f"{agent.url}/v1/deploys", headers=agent.headers) as r:
        data: dict[str, Any] = await r.json()
        return list(data["items"])


async def test_signed_vercel_event_opens_a_window_and_a_regression_rolls_back_once(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    # production served OLD, then NEW: the window knows what to go back to
    first = vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40)
    status, opened = await vercel_hook(agent, first)
    assert status == 202, opened
    old_id = opened["deploy"]["id"]
    body = vc.event(event_id="evt_new", deployment=vc.NEW)
    status, opened = await vercel_hook(agent, body)
    assert status == 202, opened
    assert (await agent.get(old_id))["state"] == "superseded"  # as the API does
    deploy = opened["deploy"]
    assert deploy["version"] == SHA
    assert deploy["labels"]["vercel.deployment"] == vc.NEW
    assert deploy["labels"]["vercel.previous"] == vc.OLD
    # the same event again: the same answer, one window
    again_status, again = await vercel_hook(agent, body)
    assert (again_status, again) == (202, opened)
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back", final
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]
    assert fake_vercel.production[vc.PROJECT] == vc.OLD
    assert len([w for w in await windows(agent) if w["version"] == SHA]) == 1
    # Vercel's list (GET /v6/deployments, outside the reference) is a fallback only: NEW's
    # previous came from the earlier window; at most OLD's own window asked it
    assert len(fake_vercel.seen("/v6/deployments")) <= 1


async def test_a_fresh_agents_first_vercel_window_rolls_back_to_what_vercel_lists_before_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """A fresh agent (no earlier window of the environment) hears NEW's event, which
    names no previous deployment: its rollback went nowhere ("nothing to roll back to")
    though Vercel lists OLD as production's deployment before NEW."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    status, opened = await vercel_hook(agent, vc.event(event_id="evt_first", deployment=vc.NEW))
    assert status == 202, opened
    assert "vercel.previous" not in opened["deploy"]["labels"]
    # kept on the window's labels (contract section 7), asked of Vercel once it opened:
    # the deploy object shows what a rollback goes back to before there is one
    labels: dict[str, str] = {}

    async def look() -> None:
        labels.update((await agent.get(opened["deploy"]["id"]))["labels"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while "vercel.previous" not in labels and loop.time() < deadline:
        await look()
        await asyncio.sleep(0.1)
    assert labels.get("vercel.previous") == vc.OLD, labels
    flip_target.bad = True
    final = await agent.settled(opened["deploy"]["id"])
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]
    assert fake_vercel.production[vc.PROJECT] == vc.OLD
    listed = fake_vercel.seen("/v6/deployments")
    assert len(listed) == 1
    assert ("projectId", vc.PROJECT) in listed[0].query
    assert ("target", "production") in listed[0].query


async def test_bad_signatures_are_401_and_store_nothing(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    body = vc.event()
    for headers in (
        {},
        {"x-vercel-signature": "0" * 40},
        {"x-vercel-signature": vc.signature("x", body)},
    ):
        status, problem = await post_hook(agent, "vercel", body, headers)
        assert status == 401, problem
    gh_body = gh.deployment_status()
    status, _ = await post_hook(
        agent,
        "github",
        gh_body,
        {
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": gh.signature("wrong", gh_body),
        },
    )
    assert status == 401
    assert await windows(agent) == []
    # valid signature, but an event that opens nothing
    status, ignored = await vercel_hook(agent, vc.event("deployment.created", event_id="evt_c"))
    assert (status, set(ignored)) == (200, {"ignored"})
    status, ignored = await vercel_hook(agent, vc.event(event_id="evt_u", project="prj_other"))
    assert (status, set(ignored)) == (200, {"ignored"})
    status, problem = await post_hook(
        agent, "vercel", b"[1]", {"x-vercel-signature": vc.signature(VC_SECRET, b"[1]")}
    )
    assert status == 400
    assert await windows(agent) == []
    # a dashboard tells a wrong secret (rejected) from junk and from events of no window
    events = "postflight_deploy_events_total"
    counts = {
        (provider, result): await agent.scraped(events, provider=provider, result=result)
        for provider in ("vercel", "github")
        for result in ("rejected", "invalid", "ignored", "opened")
    }
    assert counts == {
        ("vercel", "rejected"): 3,
        ("vercel", "invalid"): 1,
        ("vercel", "ignored"): 2,
        ("vercel", "opened"): 0,
        ("github", "rejected"): 1,
        ("github", "invalid"): 0,
        ("github", "ignored"): 0,
        ("github", "opened"): 0,
    }


async def test_github_deployment_status_opens_a_window_and_hears_in_progress_then_failure(
    webhook_agent: WebhookAgent, flip_target: FlipTarget, fake_github: FakeGitHub
) -> None:
    agent = await webhook_agent()
    body = gh.deployment_status()
    status, opened = await github_hook(agent, "deployment_status", body, "delivery-1")
    assert status == 202, opened
    again = await github_hook(agent, "deployment_status", body, "delivery-1")
    assert again == (202, opened)
    deploy = opened["deploy"]
    assert (deploy["environment"], deploy["version"]) == ("production", SHA)
    await eventually(lambda: len(fake_github.statuses) >= 1)
    flip_target.bad = True
    await agent.settled(deploy["id"])
    await eventually(lambda: len(fake_github.statuses) >= 2)
    states = [s["state"] for s in fake_github.statuses]
    assert states == ["in_progress", "failure"]
    last = fake_github.statuses[-1]
    log_url = last["log_url"]  # the deploy object, under server.public_url
    assert log_url.startswith("http://") and log_url.endswith(deploy["links"]["self"])
    assert "probe-errors" in last["description"]
    assert last["environment_url"] == "https://web-new.vercel.app"
    # pending states open nothing
    pending = gh.deployment_status("pending")
    status, ignored = await github_hook(agent, "deployment_status", pending, "delivery-2")
    assert status == 200 and "ignored" in ignored
    assert len(await windows(agent)) == 1


async def test_the_deployment_status_events_of_postflights_own_statuses_open_nothing(
    webhook_agent: WebhookAgent, fake_github: FakeGitHub
) -> None:
    """GitHub sends a `deployment_status` event for every status created, Postflight's
    own too. Old code opened a new window for the echo of its `success`, which passed and
    posted `success` again: a window after window on one deployment, for ever."""
    agent = await webhook_agent(window="1500ms")
    status, opened = await github_hook(
        agent, "deployment_status", gh.deployment_status(), "delivery-1"
    )
    assert status == 202, opened
    await agent.settled(opened["deploy"]["id"])
    await eventually(lambda: len(fake_github.statuses) >= 2)
    assert [s["state"] for s in fake_github.statuses] == ["in_progress", "success"]
    for n, posted in enumerate(fake_github.statuses):
        # the event as GitHub sends it: the status as created (`target_url` is `log_url`)
        event = json.loads(gh.deployment_status(posted["state"]))
        event["deployment_status"].update(
            {
                "description": posted["description"],
                "log_url": posted["log_url"],
                "target_url": posted["log_url"],
                "environment_url": posted["environment_url"],
                "creator": {"login": "postflight-bot", "type": "Bot"},
            }
        )
        body = json.dumps(event).encode()
        status, answer = await github_hook(agent, "deployment_status", body, f"echo-{n}")
        assert status == 200 and "ignored" in answer, answer
    assert len(await windows(agent)) == 1


async def test_protection_rule_gate_approves_after_passing_staging_and_rejects_after_failing(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target, staging_window="1500ms"),
        extra=integrations(fake_github, fake_vercel),
    )
    good = "b" * 40
    staging = await agent.register("staging", good)
    # asked while staging still runs: it waits
    rule = gh.protection_rule(fake_github.url, sha=good, run_id=1)
    status, answer = await github_hook(agent, "deployment_protection_rule", rule, "gate-1")
    assert status == 202, answer
    await asyncio.sleep(0.5)
    assert fake_github.gate_answers == []
    await agent.settled(staging["id"])
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    assert fake_github.gate_answers[0]["state"] == "approved"
    assert fake_github.gate_answers[0]["environment_name"] == "Production"
    assert fake_github.gate_answers[0]["run"] == "1"

    bad = "c" * 40
    flip_target.bad = True
    failing = await agent.register("staging", bad)
    assert (await agent.settled(failing["id"]))["state"] == "failed"
    rule = gh.protection_rule(fake_github.url, sha=bad, run_id=2)
    await github_hook(agent, "deployment_protection_rule", rule, "gate-2")
    await eventually(lambda: len(fake_github.gate_answers) == 2)
    assert fake_github.gate_answers[1]["state"] == "rejected"


async def test_rolling_release_stage_is_approved_on_pass_and_aborted_on_fail(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target, window="1500ms", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-1", deployment=vc.NEW))
    assert status == 202
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.approvals) == 1)
    assert fake_vercel.approvals[0] == {
        "activeStageIndex": 0,
        "nextStageIndex": 1,
        "canaryDeploymentId": vc.NEW,
    }
    assert fake_vercel.accepted == []

    # the next canary fails: abort = roll back to what production served
    canary = "dpl_canary333"
    fake_vercel.deployments.add(canary)
    fake_vercel.start_rolling_release(vc.PROJECT, canary=canary)
    flip_target.bad = True
    body = vc.event(event_id="rr-2", deployment=canary, sha="d" * 40)
    status, opened = await vercel_hook(agent, body)
    assert opened["deploy"]["labels"]["vercel.previous"] == vc.NEW
    final = await agent.settled(opened["deploy"]["id"])
    assert final["state"] == "rolled_back"
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.NEW]
    assert fake_vercel.rolling[vc.PROJECT]["state"] == "ABORTED"
    assert len(fake_vercel.approvals) == 1


async def test_a_pass_approves_only_the_rolling_release_stage_its_window_watched(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """The window watched stage 0 (10%); the release moved on to stage 1 meanwhile (a
    person approved it, or a replica's approval went out before it died and another took
    the window over): the pass approved stage 1 -> 2 too, a stage no window watched. The
    stage watched is kept on the window's labels, in the store, for whichever replica
    ends it."""
    agent = await start_agent(
        environments(flip_target, window="3s", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-moved", deployment=vc.NEW))
    assert status == 202
    deploy_id = opened["deploy"]["id"]
    labels: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while "vercel.rolling_stage" not in labels and loop.time() < deadline:
        labels = (await agent.get(deploy_id))["labels"]
        await asyncio.sleep(0.05)
    assert labels.get("vercel.rolling_stage") == "0", labels
    fake_vercel.move_stage(vc.PROJECT, 1)
    assert (await agent.settled(deploy_id))["state"] == "passed"
    # the approval's own look at the release, after the one that noted the stage
    await eventually(lambda: len(fake_vercel.seen("/rolling-release")) >= 2)
    await asyncio.sleep(0.5)
    assert fake_vercel.approvals == []
    assert fake_vercel.completions == []
    assert fake_vercel.rolling[vc.PROJECT]["activeStage"]["index"] == 1


async def test_a_pass_at_the_last_stage_before_100_percent_completes_the_rolling_release(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """The window watched the last stage that waits for approval (50%; the next one is
    the final 100%): its pass finishes the release with `rolling-release/complete`
    (`{"canaryDeploymentId"}`), as the reference has it ("complete finishes it"), where
    it sent `approve-stage` towards the final stage."""
    agent = await start_agent(
        environments(flip_target, window="1500ms", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW, stages=2)
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-last", deployment=vc.NEW))
    assert status == 202
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.completions) == 1)
    assert fake_vercel.completions == [{"canaryDeploymentId": vc.NEW}]
    assert fake_vercel.approvals == []
    assert fake_vercel.rolling[vc.PROJECT]["state"] == "COMPLETE"


@pytest.mark.parametrize(
    ("release", "index", "expected"),
    [
        # Vercel's document: activeStage / nextStage with isFinalStage
        ({"activeStage": {"index": 0}, "nextStage": {"index": 1, "isFinalStage": False}}, 0, False),
        ({"activeStage": {"index": 1}, "nextStage": {"index": 2, "isFinalStage": True}}, 1, True),
        ({"activeStage": {"index": 2, "isFinalStage": True}, "nextStage": None}, 2, True),
        ({"activeStage": {"index": 1}, "nextStage": None}, 1, True),
        # stages alone: the last one is the final 100%
        ({"stages": [{"index": 0}, {"index": 1}, {"index": 2}]}, 0, False),
        ({"stages": [{"index": 0}, {"index": 1}, {"index": 2}]}, 1, True),
        ({"stages": [{"index": 0}, {"index": 1}]}, 1, True),
        # says nothing of its stages: advanced, as before
        ({"activeStageIndex": 0}, 0, False),
    ],
)
def test_which_rolling_release_stage_a_pass_finishes(
    release: dict[str, Any], index: int, expected: bool
) -> None:
    """A pass of the last stage before 100% (or of a stage with none after it) calls
    `complete`; approve-stage with `nextStageIndex` past the last stage names no stage."""
    assert finishes(release, index) is expected


async def test_a_rate_limited_rolling_release_approval_waits_for_vercels_reset(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """Vercel's 429 names its window's end in `X-RateLimit-Reset` only: the approval was
    retried after our own backoff (under a second), inside the window, up to four times,
    and the stage was left unapproved. It waits for the reset."""
    agent = await start_agent(
        environments(flip_target, window="1500ms", rolling_release=True),
        extra=integrations(fake_github, fake_vercel),
    )
    fake_vercel.start_rolling_release(vc.PROJECT, canary=vc.NEW)
    fake_vercel.fail("rate_limit", times=1, reset_in=2.0, match="approve-stage")
    status, opened = await vercel_hook(agent, vc.event(event_id="rr-limit", deployment=vc.NEW))
    assert status == 202
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_vercel.approvals) == 1)
    sent = fake_vercel.seen("/approve-stage")
    assert len(sent) == 2
    assert sent[1].at - sent[0].at >= 1.5  # the reset: 2 to 3 s away, in whole seconds


async def test_manual_rollback_is_delivered_once_and_its_follow_ups_run_after_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    rollback_receiver: Any,
) -> None:
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    cache: RollbackReceiver = await rollback_receiver(SECRET)
    cache.script(503)
    rollback = f"""{{target: vercel, secret: {SECRET}, backoff: 50ms, max_backoff: 200ms,
        then: [{{name: migrations, url: '{migrations.url}', secret: follow-secret}},
               {{name: cache-purge, url: '{cache.url}'}}]}}"""
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"

    async def ask() -> tuple[int, dict[str, Any]]:
        async with agent.http.post(
            url, json={"reason": "checkout broken"}, headers=agent.headers
        ) as r:
            return r.status, await r.json(content_type=None)

    first, second = await asyncio.gather(ask(), ask())
    assert sorted([first[0], second[0]]) == [202, 409], (first, second)
    accepted = first[1] if first[0] == 202 else second[1]
    # a failed window's verdict failed (contract section 2): the person's, decided now
    if accepted["state"] == "failed":
        assert accepted["verdict"]["outcome"] == "fail", accepted
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back"
    verdict = final["verdict"]
    assert verdict["outcome"] == "fail" and verdict["decided_at"] is not None
    assert verdict["reason"] == "checkout broken"  # as given: the alert names who asked
    assert len(fake_vercel.accepted) == 1
    assert fake_vercel.accepted[0]["description"].endswith(": checkout broken")
    await migrations.wait_for_attempts(1)
    await cache.wait_for_attempts(2)
    assert all(a.signature_ok for a in migrations.attempts + cache.attempts)
    assert migrations.attempts[0].idempotency_key == f"{deploy['id']}:migrations"
    assert migrations.attempts[0].at >= fake_vercel.accepted[0]["at"]
    done = await agent.wait_until(
        deploy["id"],
        lambda d: (
            {t["name"]: t["state"] for t in d["rollback"].get("then") or []}
            == {"migrations": "delivered", "cache-purge": "delivered"}
        ),
    )
    assert done["rollback"]["state"] == "delivered"
    # a third ask, after it all: refused
    status, problem = await ask()
    assert status == 409, problem
    assert len(fake_vercel.accepted) == 1


async def test_a_manual_rollback_in_dry_run_says_nothing_was_sent_to_its_target(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    json_sink: JsonSink,
) -> None:
    """With `dry_run` on, a manual rollback to Vercel is accepted and skipped. Its alert
    read "Rollback requested by hand from Vercel (back to the previous production
    deployment)" and its `last_error` "the webhook was not called": on-call was told a
    rollback went to Vercel when nothing did, and of a webhook that is not configured."""
    rollback = "{target: vercel, dry_run: true}"
    agent = await start_agent(
        environments(flip_target, rollback=rollback),
        alerting=alerts_to(json_sink),
        extra=integrations(fake_github, fake_vercel),
    )
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    from tests.e2e.conftest import TOKEN

    args = ["rollback", deploy["id"], "--reason", "checkout broken", "--url", agent.url]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", *args, "--token", TOKEN, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out
    assert "accepted: skipped (dry run: Vercel was not called)" in out.decode()
    accepted = await agent.get(deploy["id"])
    assert accepted["rollback"]["state"] == "skipped"
    assert accepted["rollback"]["last_error"] == "dry run: Vercel was not called"
    await eventually(lambda: len(json_sink.notifications) >= 1)
    await asyncio.sleep(0.3)  # no second alert follows
    (alert,) = json_sink.notifications
    assert alert.title.endswith(": rollback by hand skipped (dry run)"), alert.title
    assert "not sent" in alert.message and "rollback.dry_run" in alert.message
    assert "from Vercel" not in alert.message
    assert "checkout broken" in alert.message
    assert fake_vercel.seen("/rollback/") == []


async def test_vercel_retries_429_with_retry_after_and_5xx(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    fake_vercel.fail("503", times=1, match="/rollback/")
    fake_vercel.fail("429", times=1, match="/rollback/")
    deploy = await agent.register(
        "production", "v4", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back"
    assert final["rollback"]["attempts"] == 3
    assert len(fake_vercel.accepted) == 1


@pytest.mark.parametrize("target", ["github"])
async def test_github_target_dispatches_the_rollback_workflow(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    target: str,
) -> None:
    rollback = "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    deploy = await agent.register("production", "v5", previous_version="v4")
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back"
    assert len(fake_github.dispatches) == 1
    dispatch = fake_github.dispatches[0]
    assert dispatch["workflow"] == "rollback.yml" and dispatch["ref"] == "main"
    assert dispatch["inputs"]["deploy_id"] == deploy["id"]
    assert dispatch["inputs"]["previous_version"] == "v4"
    assert (dispatch["inputs"]["environment"], dispatch["inputs"]["version"]) == (
        "production",
        "v5",
    )
    assert dispatch["inputs"]["reason"] == final["verdict"]["reason"], dispatch["inputs"]
    assert set(dispatch["inputs"]) == {
        "deploy_id",
        "environment",
        "version",
        "previous_version",
        "reason",
    }


async def test_manual_rollback_refusals(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    deploy = await agent.register("production", "v6")
    await agent.cancel(deploy["id"])
    url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"
    async with agent.http.post(url, json={"reason": "x"}, headers=agent.headers) as r:
        assert r.status == 409
    async with agent.http.post(url, json={"reason": ""}, headers=agent.headers) as r:
        assert r.status == 422
    # a reason goes into logs, alerts, the webhook and Vercel's description: blank, or with
    # control or invisible characters (a terminal escape, a NUL), it is refused as the
    # CLI refuses a blank one, and as `version` is on registration
    for reason in ("   ", "ok\x1b[31m red", "a\x00b", "line\nbreak", "\u202eevil"):
        async with agent.http.post(url, json={"reason": reason}, headers=agent.headers) as r:
            assert r.status == 422, reason
            assert (await r.json())["errors"][0]["loc"] == ["reason"]
    async with agent.http.post(url, json={"reason": "x"}) as r:
        assert r.status == 401
    missing = f"{agent.url}/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/rollback"
    async with agent.http.post(missing, json={"reason": "x"}, headers=agent.headers) as r:
        assert r.status == 404


async def test_cli_rollback_exits_0_accepted_1_refused_2_unreachable(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    from tests.e2e.conftest import TOKEN

    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    deploy = await agent.register(
        "production", "v7", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )

    async def cli(url: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent",
            "rollback",
            deploy["id"],
            "--reason",
            "by hand",
            "--url",
            url,
            "--token",
            TOKEN,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await cli(agent.url)
    assert code == 0, out
    code, out = await cli(agent.url)
    assert code == 1, out
    assert "already has a rollback" in out
    code, out = await cli(f"http://127.0.0.1:{free_port()}")
    assert code == 2, out
    await agent.settled(deploy["id"])
    assert len(fake_vercel.accepted) == 1


async def test_a_gate_with_no_staging_window_rejects_after_its_timeout(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    agent = await start_agent(
        environments(flip_target, gate_timeout="1s"), extra=integrations(fake_github, fake_vercel)
    )
    rule = gh.protection_rule(fake_github.url, sha="e" * 40, run_id=3)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-3")
    assert status == 202
    await asyncio.sleep(0.5)
    assert fake_github.gate_answers == []
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    assert fake_github.gate_answers[0]["state"] == "rejected"
    # signed and linked as every other answer: it was the bare words, no "Postflight:" and
    # no link (no staging window to link: the deploy pages)
    assert fake_github.gate_answers[0]["comment"] == (
        f"Postflight: no staging window of {'e' * 12} ended in time — {agent.url}/deploys"
    )


async def test_a_gate_whose_staging_window_still_watches_at_its_timeout_links_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """Rejected at its timeout while staging's window of the sha still runs: the comment
    says so as the others do and links that window's page (it was the bare words)."""
    agent = await start_agent(
        environments(flip_target, gate_timeout="1s", staging_window="60s"),
        extra=integrations(fake_github, fake_vercel),
    )
    sha = "f" * 40
    staging = await agent.register("staging", sha)
    rule = gh.protection_rule(fake_github.url, sha=sha, run_id=5)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-5")
    assert status == 202
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    assert fake_github.gate_answers[0]["state"] == "rejected"
    assert fake_github.gate_answers[0]["comment"] == (
        f"Postflight: no staging window of {'f' * 12} ended in time"
        f" — {agent.url}/deploys/{staging['id']}"
    )
    assert (await agent.get(staging["id"]))["state"] == "watching"
    await agent.cancel(staging["id"])


async def test_a_gate_after_a_cancelled_staging_window_links_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """Staging's window of the sha ended neither passed nor failed (cancelled): rejected,
    "not passed", and now with that window's page, as the other answers link theirs."""
    agent = await start_agent(
        environments(flip_target, staging_window="60s"),
        extra=integrations(fake_github, fake_vercel),
    )
    sha = "a1" * 20
    staging = await agent.register("staging", sha)
    await agent.cancel(staging["id"])
    rule = gh.protection_rule(fake_github.url, sha=sha, run_id=6)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-6")
    assert status == 202
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    assert fake_github.gate_answers[0]["state"] == "rejected"
    assert fake_github.gate_answers[0]["comment"] == (
        f"Postflight: staging window cancelled, not passed — {agent.url}/deploys/{staging['id']}"
    )


@pytest.mark.parametrize("use_event_url", [True, False])
async def test_a_window_can_probe_the_url_its_deploy_event_names(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    use_event_url: bool,
) -> None:
    flag = str(use_event_url).lower()
    env = environment(
        "preview",
        f"http://127.0.0.1:{free_port()}",
        background_interval="10s",
        extra=f"sources: {{github: {{repository: {gh.REPOSITORY}, environment: Preview,"
        f" use_environment_url: {flag}}}}}",
    )
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    body = gh.deployment_status(environment="Preview").replace(
        b"https://web-new.vercel.app", flip_target.url.encode()
    )
    status, opened = await github_hook(agent, "deployment_status", body, "preview-1")
    assert status == 202, opened
    final = await agent.settled(opened["deploy"]["id"])
    # the environment's base_url is dead: only the event's URL can pass
    assert final["state"] == ("passed" if use_event_url else "failed")
    assert (flip_target.requests > 0) == use_event_url


def commit_status_staging(target: FlipTarget, **options: Any) -> str:
    """Staging, whose windows put a commit status on their commit (`commit_status`)."""
    source = (
        f"{{github: {{repository: {gh.REPOSITORY}, environment: Staging, commit_status: true}}}}"
    )
    return environment("staging", target.url, extra=f"sources: {source}", **options)


async def test_commit_status_on_the_sha_pending_then_success(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    env = commit_status_staging(flip_target)
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    deploy = await agent.register("staging", "v8", commit=SHA)
    assert (await agent.settled(deploy["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_github.commit_statuses) >= 2)
    assert [(s["sha"], s["state"]) for s in fake_github.commit_statuses] == [
        (SHA, "pending"),
        (SHA, "success"),
    ]
    assert {s["context"] for s in fake_github.commit_statuses} == {"postflight/staging"}
    # the page, with no view token: a public repository's commit statuses are public
    page = f"{agent.url}/deploys/{deploy['id']}"
    assert [s["target_url"] for s in fake_github.commit_statuses] == [page, page]


async def test_a_short_commit_gets_its_status_on_the_full_sha(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--commit 9fceb02` (the contract's own example) posted to `statuses/9fceb02`, which
    GitHub refuses (a commit status needs the full SHA): the commit never got one. The
    short SHA is resolved through the commits API first; one GitHub does not know is said
    in the log and the window goes on."""
    env = commit_status_staging(flip_target)
    caplog.set_level("WARNING", logger="postflight.integrations")
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    deploy = await agent.register("staging", "v8", commit=gh.COMMIT[:7])
    assert (await agent.settled(deploy["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_github.commit_statuses) >= 2)
    assert [(s["sha"], s["state"]) for s in fake_github.commit_statuses] == [
        (gh.COMMIT, "pending"),
        (gh.COMMIT, "success"),
    ]
    unknown = await agent.register("staging", "v9", commit="abcdef0")
    assert (await agent.settled(unknown["id"]))["state"] == "passed"
    said = "No commit found for SHA: abcdef0"
    await eventually(lambda: any(said in r.getMessage() for r in caplog.records))
    assert len(fake_github.commit_statuses) == 2


async def test_a_window_superseded_by_one_of_its_full_sha_leaves_the_commit_to_it(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """`--commit 9fceb02` then the same commit in full: one commit, so the superseded
    window's `error` would stand on it beside (or after) the newer window's `pending`."""
    env = commit_status_staging(flip_target, window="30s")
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    await agent.register("staging", "v1", commit=gh.COMMIT[:7])
    await eventually(lambda: len(fake_github.commit_statuses) >= 1)
    await agent.register("staging", "v2", commit=gh.COMMIT)
    await eventually(lambda: len(fake_github.commit_statuses) >= 2)
    await asyncio.sleep(1.5)  # nothing for the window superseded on the same commit
    seen = [(s["sha"], s["state"], s["description"]) for s in fake_github.commit_statuses]
    assert seen == [
        (gh.COMMIT, "pending", "Postflight is watching v1"),
        (gh.COMMIT, "pending", "Postflight is watching v2"),
    ]


async def test_a_manual_rollback_after_a_pass_does_not_count_the_window_twice(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """The window ended `passed` and was counted so; its later manual rollback moves it
    to `rolled_back` without a second count in `postflight_windows_total`."""
    agent = await start_agent(
        environments(flip_target, window="1s"), extra=integrations(fake_github, fake_vercel)
    )
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    assert (await agent.settled(deploy["id"]))["state"] == "passed"
    await agent.rollback(deploy["id"], "late regression")
    await agent.wait_until(deploy["id"], lambda d: d["state"] == "rolled_back")
    await eventually(lambda: len(fake_vercel.accepted) == 1)
    await asyncio.sleep(0.3)  # let the delivery's own bookkeeping finish
    total = "postflight_windows_total"
    assert agent.metric(total, environment="production", outcome="passed") == 1
    assert agent.metric(total, environment="production", outcome="rolled_back") == 0


async def test_a_github_deployment_rolled_back_by_hand_after_a_pass_says_why(
    webhook_agent: WebhookAgent, fake_github: FakeGitHub
) -> None:
    """A GitHub deployment that passed, then was rolled back by hand, got `failure` with
    the verdict's words as its description ("no rule failed over 3 rounds…"): GitHub
    showed a failed deployment explained by a pass. It says the rollback's reason."""
    agent = await webhook_agent(window="1s")
    status, opened = await github_hook(
        agent, "deployment_status", gh.deployment_status(), "delivery-late"
    )
    assert status == 202, opened
    deploy = opened["deploy"]
    assert (await agent.settled(deploy["id"]))["state"] in ("passed", "inconclusive")
    await eventually(lambda: len(fake_github.statuses) >= 2)
    await agent.rollback(deploy["id"], "late regression")
    await eventually(lambda: len(fake_github.statuses) >= 3)
    last = fake_github.statuses[-1]
    assert last["state"] == "failure"
    assert last["description"] == "rolled back by hand: late regression"


async def test_a_github_deployment_rolled_back_by_hand_while_watched_says_so(
    webhook_agent: WebhookAgent, fake_github: FakeGitHub
) -> None:
    """Rolled back by hand while its window still ran: its `failure` said only the reason
    as given ("checkout broken"), as if a rule had found it, where one rolled back by
    hand after a pass said "rolled back by hand: ..."; now both say so."""
    agent = await webhook_agent(window="60s")
    status, opened = await github_hook(
        agent, "deployment_status", gh.deployment_status(), "delivery-watched"
    )
    assert status == 202, opened
    deploy = opened["deploy"]
    await eventually(lambda: len(fake_github.statuses) >= 1)  # in_progress
    await agent.rollback(deploy["id"], "checkout broken")
    await agent.wait_until(deploy["id"], lambda d: d["state"] == "rolled_back")
    await eventually(lambda: any(s["state"] == "failure" for s in fake_github.statuses))
    await asyncio.sleep(0.3)  # a second status, if one were sent on rolled_back
    failures = [s for s in fake_github.statuses if s["state"] == "failure"]
    assert {s["description"] for s in failures} == {"rolled back by hand: checkout broken"}


def failed_github_window(at: float, reason: str) -> DeployWindow:
    """A GitHub-opened production window deployed at `at` that failed 600 s later."""
    return DeployWindow(
        id=f"dep_{ULID()}",
        environment="production",
        version=SHA,
        previous_version=None,
        commit=SHA,
        labels={
            "github.repository": gh.REPOSITORY,
            "github.deployment": str(gh.DEPLOYMENT_ID),
            "github.environment": "Production",
        },
        state="failed",
        deployed_at=at,
        ends_at=at + 600.0,
        created_at=at,
        verdict={"outcome": "fail", "reason": f"probe-errors: {reason}"},
        ended_at=at + 600.0,
    )


async def test_a_status_whose_sender_died_mid_call_is_posted_after_a_restart(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    """An agent killed while GitHub was answering 503 to a verdict's deployment status
    left the status claimed with no outcome; the restarted agent never posted it, and the
    GitHub deployment stayed `in_progress` for good. A claim older than the status call's
    longest retry budget is a dead sender's and is taken over; a live sender's is not."""
    now = time.time()
    store = store_from_url(f"sqlite:///{tmp_path / 'postflight.db'}")
    await store.open()
    for name, claimed_at in (("dead", now - 3600.0), ("live", now)):
        window = failed_github_window(now - 7200.0, f"{name} sender")
        await store.create_window(window)
        assert await store.claim_alert(window.id, "github:in_progress", now - 7200.0)
        await store.record_alert(window.id, "github:in_progress", "sent", "HTTP 201")
        assert await store.claim_alert(window.id, "github:failure", claimed_at)
    await store.close()
    await start_agent(environments(flip_target), extra=integrations(fake_github, fake_vercel))
    await eventually(lambda: len(fake_github.statuses) >= 1, within=10.0)
    await asyncio.sleep(1.0)  # the live sender's claim is not taken over meanwhile
    assert [(s["state"], s["description"]) for s in fake_github.statuses] == [
        ("failure", "probe-errors: dead sender")
    ]


async def test_a_github_window_ending_after_50_newer_ones_still_gets_its_final_status(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """The scan read only the 50 newest windows: a GitHub-opened window that ended after
    more were registered never had its verdict posted, and stayed `in_progress`."""
    agent = await start_agent(
        environments(flip_target, window="4s", staging_window="30s"),
        extra=integrations(fake_github, fake_vercel),
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.statuses) >= 1)
    for n in range(60):  # each supersedes the one before: one staging window watching
        await agent.register("staging", f"v{n}")
    assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
    await eventually(lambda: len(fake_github.statuses) >= 2, within=5.0)
    assert [s["state"] for s in fake_github.statuses] == ["in_progress", "success"]


async def test_a_window_that_ended_unposted_behind_50_newer_ones_is_posted_after_a_restart(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    """An agent stopped between a verdict and its status, with 60 newer windows since:
    the restarted agent's scan never reached it (it read the 50 newest). An older one that
    no agent ever began (GitHub configured since) is history: nothing is posted for it."""
    now = time.time()
    store = store_from_url(f"sqlite:///{tmp_path / 'postflight.db'}")
    await store.open()
    for reason, at in (("never begun", now - 9000.0), ("long ago", now - 7200.0)):
        old = failed_github_window(at, reason)
        await store.create_window(old)
    assert await store.claim_alert(old.id, "github:in_progress", now - 7200.0)
    await store.record_alert(old.id, "github:in_progress", "sent", "HTTP 201")
    for n in range(60):
        at = now - 3600.0 + n
        newer = DeployWindow(
            id=f"dep_{ULID()}",
            environment="staging",
            version=f"v{n}",
            previous_version=None,
            commit=None,
            labels={},
            state="passed",
            deployed_at=at,
            ends_at=at + 1.0,
            created_at=at,
            verdict={"outcome": "pass", "reason": "ok"},
            ended_at=at + 1.0,
        )
        await store.create_window(newer)
    await store.close()
    await start_agent(environments(flip_target), extra=integrations(fake_github, fake_vercel))
    await eventually(lambda: len(fake_github.statuses) >= 1, within=10.0)
    await asyncio.sleep(1.0)  # and nothing for the one never begun
    assert [(s["state"], s["description"]) for s in fake_github.statuses] == [
        ("failure", "probe-errors: long ago")
    ]


async def test_a_cancelled_or_superseded_github_window_gets_a_final_status(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """A window that ended cancelled or superseded posted nothing more, and its GitHub
    deployment stayed `in_progress`: superseded is `inactive` (a later registration replaced
    it), cancelled is `error` (nobody judged it)."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    fake_github.deployments |= {1001, 1002}
    first = gh.deployment_status(deployment_id=1001, sha="a" * 40)
    status, opened = await github_hook(agent, "deployment_status", first, "d-1")
    assert status == 202, opened
    await eventually(lambda: len(fake_github.statuses) >= 1)
    second = gh.deployment_status(deployment_id=1002)
    status, newer = await github_hook(agent, "deployment_status", second, "d-2")
    assert status == 202, newer
    await eventually(lambda: len(fake_github.statuses) >= 3)
    await agent.cancel(newer["deploy"]["id"])
    await eventually(lambda: len(fake_github.statuses) >= 4)
    await asyncio.sleep(0.5)  # nothing more
    by_deployment = {(s["deployment"], s["state"], s["description"]) for s in fake_github.statuses}
    assert by_deployment == {
        (1001, "in_progress", f"Postflight is watching {'a' * 40}"),
        (1001, "inactive", "superseded by a later registration before a verdict"),
        (1002, "in_progress", f"Postflight is watching {SHA}"),
        (1002, "error", "cancelled before a verdict"),
    }
    assert len(fake_github.statuses) == 4


async def test_a_cancelled_or_superseded_window_ends_its_commit_status(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """Its commit status stayed `pending`; now `error` with why. A window superseded by
    one of the same commit leaves the commit to the newer window's status."""
    env = commit_status_staging(flip_target, window="30s")
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    other = "b" * 40
    await agent.register("staging", "v1", commit=other)
    await eventually(lambda: len(fake_github.commit_statuses) >= 1)
    await agent.register("staging", "v2", commit=SHA)
    await eventually(lambda: len(fake_github.commit_statuses) >= 3)
    third = await agent.register("staging", "v2-again", commit=SHA)
    await eventually(lambda: len(fake_github.commit_statuses) >= 4)  # its pending
    await agent.cancel(third["id"])
    await eventually(lambda: len(fake_github.commit_statuses) >= 5)
    await asyncio.sleep(0.5)  # nothing for the window superseded on the same commit
    seen = [(s["sha"], s["state"], s["description"]) for s in fake_github.commit_statuses]
    assert sorted(seen) == sorted(
        [
            (other, "pending", "Postflight is watching v1"),
            (other, "error", "superseded by a later registration before a verdict"),
            (SHA, "pending", "Postflight is watching v2"),
            (SHA, "pending", "Postflight is watching v2-again"),
            (SHA, "error", "cancelled before a verdict"),
        ]
    )


async def test_a_window_superseded_by_a_late_registration_does_not_blame_a_newer_deploy(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """A late registration of v1, deployed 10 s before v2, supersedes v2's window:
    its commit status says a later registration did it, where it said "superseded by a
    newer deploy" of a deploy that was older."""
    env = commit_status_staging(flip_target, window="30s")
    agent = await start_agent(env, extra=integrations(fake_github, fake_vercel))
    other = "b" * 40
    await agent.register("staging", "v2", commit=other)
    await eventually(lambda: len(fake_github.commit_statuses) >= 1)
    earlier = rfc3339(time.time() - 10, millis=False)
    late = await agent.register("staging", "v1", commit=SHA, deployed_at=earlier)
    assert len(late["warnings"]) == 1, late  # v2 was deployed after it
    await eventually(lambda: len(fake_github.commit_statuses) >= 3)
    await agent.cancel(late["id"])
    await eventually(lambda: len(fake_github.commit_statuses) >= 4)
    ended = [s["description"] for s in fake_github.commit_statuses if s["sha"] == other]
    assert ended == [
        "Postflight is watching v2",
        "superseded by a later registration before a verdict",
    ], ended


async def test_a_rollback_failed_alert_names_its_target_and_counts_only_sent_attempts(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    json_sink: JsonSink,
) -> None:
    """The alert said "The pipeline's webhook did not accept it" for a Vercel or GitHub
    target, and a Vercel rollback that could not be sent (no previous deployment known)
    reported "after 1 attempt(s)" though nothing went out."""
    alerting = f"alerting: {{channels: [{{url: '{json_sink.url()}'}}]}}"
    agent = await start_agent(
        environments(flip_target), alerting=alerting, extra=integrations(fake_github, fake_vercel)
    )
    fake_vercel.listed[vc.PROJECT] = [vc.listed_deployment(vc.NEW, 1764460800000)]
    deploy = await agent.register("production", "v6", labels={"vercel.deployment": vc.NEW})
    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert (final["state"], final["rollback"]["state"]) == ("failed", "failed")
    assert final["rollback"]["attempts"] == 0
    assert fake_vercel.seen("/rollback/") == []

    def failed() -> list[Any]:
        return [n for n in json_sink.notifications if "ROLLBACK FAILED" in n.title]

    await eventually(lambda: len(failed()) == 1)
    text = failed()[0].message
    assert "Vercel did not accept it, or it could not be sent" in text
    assert "webhook" not in text
    assert "rollback NOT sent: no previous production deployment" in text
    assert f"Vercel lists no READY production deployment before {vc.NEW}" in text
    assert "attempt(s)" not in text


async def test_a_refused_github_dispatch_alert_names_the_workflow_dispatch(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    json_sink: JsonSink,
) -> None:
    alerting = f"alerting: {{channels: [{{url: '{json_sink.url()}'}}]}}"
    rollback = "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"
    agent = await start_agent(
        environments(flip_target, rollback=rollback),
        alerting=alerting,
        extra=integrations(fake_github, fake_vercel),
    )
    fake_github.token = "rotated"  # 401, never retried
    deploy = await agent.register("production", "v7", previous_version="v6")
    flip_target.bad = True
    assert (await agent.settled(deploy["id"]))["rollback"]["state"] == "failed"
    await eventually(lambda: any("ROLLBACK FAILED" in n.title for n in json_sink.notifications))
    text = next(n.message for n in json_sink.notifications if "ROLLBACK FAILED" in n.title)
    assert "The GitHub workflow dispatch was not accepted" in text
    assert "webhook" not in text
    assert "rollback NOT delivered after 1 attempt: GitHub answered HTTP 401" in text


def ended_window(environment: str, version: str, at: float, state: WindowState) -> DeployWindow:
    """A window of `environment` deployed at `at` that ended `state` a second later."""
    return DeployWindow(
        id=f"dep_{ULID()}",
        environment=environment,
        version=version,
        previous_version=None,
        commit=None,
        labels={},
        state=state,
        deployed_at=at,
        ends_at=at + 1.0,
        created_at=at,
        verdict={"outcome": "pass" if state == "passed" else "fail", "reason": "ok"},
        ended_at=at + 1.0,
    )


async def seed(path: Path, *windows: DeployWindow) -> Store:
    """An opened store at `path` holding `windows` and 60 newer staging ones."""
    store = store_from_url(f"sqlite:///{path}")
    await store.open()
    for window in windows:
        await store.create_window(window)
    now = time.time()
    for n in range(60):
        await store.create_window(ended_window("staging", f"v{n}", now - 3600.0 + n, "passed"))
    return store


async def test_a_gate_finds_its_staging_window_behind_50_newer_ones(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    tmp_path: Path,
) -> None:
    """The gate looked for staging's window of its sha among the 50 newest: on a busy agent
    one that had passed was not found, and the gate was rejected at its timeout."""
    good = "d" * 40
    staging = ended_window("staging", good, time.time() - 7200.0, "passed")
    await (await seed(tmp_path / "postflight.db", staging)).close()
    agent = await start_agent(
        environments(flip_target, gate_timeout="3s"), extra=integrations(fake_github, fake_vercel)
    )
    rule = gh.protection_rule(fake_github.url, sha=good, run_id=4)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-4")
    assert status == 202
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    assert fake_github.gate_answers[0]["state"] == "approved"
    # the staging window's page, no view token: a gate's comment is public on a public
    # repository
    assert fake_github.gate_answers[0]["comment"].endswith(f"{agent.url}/deploys/{staging.id}")


async def test_follow_ups_owed_behind_50_newer_windows_go_out_after_a_restart(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    rollback_receiver: Any,
    tmp_path: Path,
) -> None:
    """An agent killed just after a rollback was delivered, before its `rollback.then`
    follow-up, with 60 windows registered since: the restarted agent looked among the 50
    newest only, and the follow-up never went out. Once done, nothing is owed."""
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    path, at = tmp_path / "postflight.db", time.time() - 7200.0
    failed = ended_window("production", "v1", at, "failed")
    store = await seed(path, failed)
    intent = rollback_intent(failed, "probe-errors: 31% failed", [], at + 1.0)
    assert await store.add_rollback(intent)
    delivered = dataclasses.replace(intent, state="delivered", attempts=1, finished_at=at + 2.0)
    # what the crash leaves: the outcome and its claims, committed together
    assert await store.settle_rollback(delivered, None, [AlertClaim(FOLLOW_UPS)])
    await store.close()
    rollback = f"""{{target: vercel, secret: {SECRET},
        then: [{{name: migrations, url: '{migrations.url}', secret: follow-secret}}]}}"""
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    await migrations.wait_for_attempts(1)
    await agent.wait_until(
        failed.id,
        lambda d: (
            {t["name"]: t["state"] for t in d["rollback"].get("then") or []}
            == {"migrations": "delivered"}
        ),
    )
    assert [a.idempotency_key for a in migrations.attempts] == [f"{failed.id}:migrations"]
    reader = store_from_url(f"sqlite:///{path}")
    await reader.open()
    try:
        for _ in range(100):  # the mark's outcome is stored just after the follow-up's
            if not await reader.claims_without_outcome(FOLLOW_UPS):
                break
            await asyncio.sleep(0.05)
        assert await reader.claims_without_outcome(FOLLOW_UPS) == []
    finally:
        await reader.close()


# one watch per deployment: a second opening event of a watched deployment joins its window


def alerts_to(sink: JsonSink) -> str:
    return f"alerting: {{channels: [{{url: '{sink.url()}'}}]}}"


async def test_succeeded_then_promoted_is_one_window_and_promoted_after_it_ended_a_new_one(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    json_sink: JsonSink,
) -> None:
    """Vercel sends `deployment.succeeded` then `deployment.promoted` (another event id) for
    one production deployment. Old code opened a window for each: the first ended
    `superseded` and the watch (baseline, rounds, timing) began again with the second. Now
    the second answers with the first's window; once that window has ended (rolled back to
    OLD), the deployment promoted again is a new deploy: a new window."""
    agent = await start_agent(
        environments(flip_target),
        alerting=alerts_to(json_sink),
        extra=integrations(fake_github, fake_vercel),
    )
    old = vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40)
    status, serving = await vercel_hook(agent, old)
    assert status == 202, serving
    status, opened = await vercel_hook(agent, vc.event("deployment.succeeded", event_id="evt_s"))
    assert status == 202, opened
    deploy = opened["deploy"]
    # another deployment still supersedes, as the API does
    assert (await agent.get(serving["deploy"]["id"]))["state"] == "superseded"
    promoted = vc.event("deployment.promoted", event_id="evt_p")
    status, joined = await vercel_hook(agent, promoted)
    assert status == 202, joined
    assert joined["deploy"]["id"] == deploy["id"]
    assert joined["deploy"]["state"] == "watching"
    assert joined["deploy"]["deployed_at"] == deploy["deployed_at"]
    assert await vercel_hook(agent, promoted) == (202, joined)  # its redelivery: the same
    assert [w["id"] for w in await windows(agent) if w["version"] == SHA] == [deploy["id"]]
    counts = {
        result: await agent.scraped(
            "postflight_deploy_events_total", provider="vercel", result=result
        )
        for result in ("opened", "joined", "redelivered")
    }
    assert counts == {"opened": 2, "joined": 1, "redelivered": 1}

    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back", final
    assert final["deployed_at"] == deploy["deployed_at"]  # the watch was never restarted
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]

    def requested() -> list[Any]:
        return [n for n in json_sink.notifications if "rollback requested" in n.title]

    await eventually(lambda: len(requested()) >= 1)
    await asyncio.sleep(0.5)  # and no second one
    assert len(requested()) == 1
    assert all(deploy["id"] in n.message for n in json_sink.notifications)

    # the window ended: the promoted event's redelivery still answers what it answered,
    # and NEW promoted again (production is OLD since the rollback) is watched anew
    assert await vercel_hook(agent, promoted) == (202, joined)
    again = vc.event("deployment.promoted", event_id="evt_p2")
    status, reopened = await vercel_hook(agent, again)
    assert status == 202, reopened
    assert reopened["deploy"]["id"] != deploy["id"]
    assert reopened["deploy"]["state"] == "watching"
    assert reopened["deploy"]["labels"]["vercel.previous"] == vc.OLD
    assert len([w for w in await windows(agent) if w["version"] == SHA]) == 2
    assert (await agent.settled(reopened["deploy"]["id"]))["state"] == "rolled_back"
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD, vc.OLD]


async def test_a_second_success_status_of_one_github_deployment_posts_no_second_set(
    webhook_agent: WebhookAgent, fake_github: FakeGitHub
) -> None:
    """Another actor (a re-run, a bot) posting `success` on the same GitHub deployment sent
    another `deployment_status` event. Old code opened a second window: the deployment
    heard in_progress, inactive, in_progress, success. Now one window, one set."""
    agent = await webhook_agent(window="1500ms")
    status, opened = await github_hook(
        agent, "deployment_status", gh.deployment_status(), "delivery-1"
    )
    assert status == 202, opened
    rerun = json.loads(gh.deployment_status())
    rerun["deployment_status"]["id"] = 8
    rerun["sender"] = {"login": "octocat", "type": "User"}
    body = json.dumps(rerun).encode()
    status, joined = await github_hook(agent, "deployment_status", body, "delivery-2")
    assert status == 202, joined
    final = await agent.settled(joined["deploy"]["id"])
    await eventually(lambda: len(fake_github.statuses) >= 2)
    await asyncio.sleep(0.5)  # nothing more
    seen = [(s["deployment"], s["state"]) for s in fake_github.statuses]
    assert seen == [(gh.DEPLOYMENT_ID, "in_progress"), (gh.DEPLOYMENT_ID, "success")]
    assert (final["id"], final["state"]) == (opened["deploy"]["id"], "passed")
    assert len(await windows(agent)) == 1


async def test_succeeded_and_promoted_arriving_together_open_one_window(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """Both events in flight at once on one agent: old code opened two windows."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    answers = await asyncio.gather(
        vercel_hook(agent, vc.event("deployment.succeeded", event_id="evt_s")),
        vercel_hook(agent, vc.event("deployment.promoted", event_id="evt_p")),
    )
    assert [status for status, _ in answers] == [202, 202], answers
    ids = {answer["deploy"]["id"] for _, answer in answers}
    assert len(ids) == 1, answers
    assert [w["id"] for w in await windows(agent)] == list(ids)


async def test_two_replicas_hearing_one_deployment_at_once_open_one_window(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    pg_url: str,
) -> None:
    """Vercel's succeeded and promoted of each deployment land on two replicas sharing
    PostgreSQL at the same instant (five deployments, one after another): old code opened
    two windows per deployment. The check runs under the environment's lock with the
    insert, so it cannot pass on both replicas."""
    env = environments(flip_target)
    extra = integrations(fake_github, fake_vercel)
    store = f"url: {pg_url}"
    first = await start_agent(env, store=store, owner="replica-a", extra=extra)
    second = await start_agent(env, store=store, owner="replica-b", extra=extra)
    opened: dict[str, set[str]] = {}
    for n in range(5):
        deployment = f"dpl_pair{n}"
        answers = await asyncio.gather(
            vercel_hook(first, vc.event(event_id=f"s{n}", deployment=deployment, sha=None)),
            vercel_hook(
                second,
                vc.event("deployment.promoted", event_id=f"p{n}", deployment=deployment, sha=None),
            ),
        )
        assert [status for status, _ in answers] == [202, 202], answers
        opened[deployment] = {answer["deploy"]["id"] for _, answer in answers}
    assert all(len(ids) == 1 for ids in opened.values()), opened
    stored = await windows(first)
    by_deployment = sorted(w["labels"]["vercel.deployment"] for w in stored)
    assert by_deployment == sorted(opened), "a deployment got two windows"
    assert [w["state"] for w in stored] == ["watching"] + ["superseded"] * 4


@pytest.mark.parametrize("github_first", [True, False], ids=["github-first", "vercel-first"])
async def test_one_deploy_reported_by_vercel_and_by_github_is_one_window(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
    github_first: bool,
) -> None:
    """Vercel's GitHub integration posts a GitHub deployment (`vercel[bot]`, `success`) for
    each Vercel deployment it also sends a webhook for: an environment with both sources
    (as the example configuration has) opened a window for each, the second superseding
    the first (GitHub heard `inactive` for a deploy that was live). Now the second event of
    the same commit joins the first window and adds its deployment's labels: GitHub hears
    its statuses, and the rollback goes through Vercel to the deployment before."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    serving = vc.event(event_id="evt_old", deployment=vc.OLD, sha="a" * 40)
    assert (await vercel_hook(agent, serving))[0] == 202
    github = ("deployment_status", gh.deployment_status(), "delivery-1")
    vercel = vc.event("deployment.succeeded", event_id="evt_s")  # the same commit, SHA
    if github_first:
        status, opened = await github_hook(agent, *github)
        assert status == 202, opened
        status, joined = await vercel_hook(agent, vercel)
    else:
        status, opened = await vercel_hook(agent, vercel)
        assert status == 202, opened
        status, joined = await github_hook(agent, *github)
    assert status == 202, joined
    deploy = opened["deploy"]
    assert joined["deploy"]["id"] == deploy["id"]
    # the version served before, from our own windows (a GitHub rollback workflow's input)
    assert deploy["previous_version"] == "a" * 40
    labels = joined["deploy"]["labels"]
    assert labels["vercel.deployment"] == vc.NEW and labels["vercel.previous"] == vc.OLD
    assert labels["github.deployment"] == str(gh.DEPLOYMENT_ID)
    assert [w["id"] for w in await windows(agent) if w["version"] == SHA] == [deploy["id"]]

    flip_target.bad = True
    final = await agent.settled(deploy["id"])
    assert final["state"] == "rolled_back", final
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]
    await eventually(lambda: any(s["state"] == "failure" for s in fake_github.statuses))
    await asyncio.sleep(0.5)  # nothing more
    seen = [s["state"] for s in fake_github.statuses if s["deployment"] == gh.DEPLOYMENT_ID]
    assert seen == ["in_progress", "failure"], fake_github.statuses


async def test_a_hook_answer_carries_no_view_token(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,
    fake_github: FakeGitHub,
) -> None:
    """GitHub shows each delivery's response to the repository's admins (Vercel its own
    log): a page link's `?view=` token there let them all read the deploy until it
    expired. The answer links the deploy object; the page stays behind a token. A
    redelivery's answer is the first one's, its `Location` too (it had none)."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    body = vc.event(event_id="evt_v")
    answers = []
    for _ in range(2):  # the event, then its redelivery: the same answer, Location too
        async with agent.http.post(
            f"{agent.url}/v1/hooks/vercel",
            data=body,
            headers={"x-vercel-signature": vc.signature(VC_SECRET, body)},
        ) as r:
            answers.append((r.status, r.headers.get("Location"), await r.json()))
    (status, location, opened), again = answers
    assert status == 202 and location == f"/v1/deploys/{opened['deploy']['id']}", opened
    assert again == answers[0]
    redelivered = again[2]
    for answer in (opened, redelivered):
        links = answer["deploy"]["links"]
        assert links == {"self": f"/v1/deploys/{answer['deploy']['id']}", "page": None}
        assert "view=" not in json.dumps(answer)

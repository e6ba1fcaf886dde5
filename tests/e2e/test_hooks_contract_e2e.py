"""Contract §7's inbound hooks and Vercel target through the real daemon, where only a
component test or a test client proved them: a team's `teamId` on the rollback and the
Rolling Release calls, a deployment without a commit opening a window versioned by its
id, a forged delivery that takes no delivery id from the real one after it, a superseded
window's manual rollback refused. Counted at the fakes (reference/seed-stack-apis.md's
shapes)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    GH_SECRET,
    GH_TOKEN,
    VC_SECRET,
    VC_TOKEN,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    post_hook,
    start_agent,
    vercel_hook,
    windows,
)
from tests.fakes import github as gh
from tests.fakes import vercel as vc
from tests.fakes._server import Seen
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

TEAM = "team_acme42"


async def test_a_teams_vercel_rollback_carries_its_team_id_and_goes_to_the_previous_deployment(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """`integrations.vercel.team_id` set: the instant rollback is `POST /v1/projects/
    {project}/rollback/{previous}?teamId=...` (the fake refuses it without, 403); the
    deployments' events carry no commit, so each window's version is its deployment id."""
    async with FakeVercel(token=VC_TOKEN, team_id=TEAM) as fake:
        extra = integrations(fake_github, fake).replace(
            f"webhook_secret: {VC_SECRET}}}", f"webhook_secret: {VC_SECRET}, team_id: {TEAM}}}"
        )
        agent = await start_agent(environments(flip_target), extra=extra)
        status, opened = await vercel_hook(
            agent, vc.event(event_id="e1", deployment=vc.OLD, sha=None)
        )
        assert status == 202, opened
        assert opened["deploy"]["version"] == vc.OLD
        status, opened = await vercel_hook(
            agent, vc.event(event_id="e2", deployment=vc.NEW, sha=None)
        )
        assert status == 202, opened
        deploy = opened["deploy"]
        assert deploy["version"] == vc.NEW
        assert deploy["labels"]["vercel.deployment"] == vc.NEW
        assert deploy["labels"]["vercel.previous"] == vc.OLD

        flip_target.bad = True
        final = await agent.settled(deploy["id"])

        assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered")
        [sent] = fake.seen("/rollback/")
        assert sent.path == f"/v1/projects/{vc.PROJECT}/rollback/{vc.OLD}"
        assert sent.param("teamId") == TEAM
        assert [a["deployment"] for a in fake.accepted] == [vc.OLD]


async def test_a_teams_rolling_release_is_read_and_approved_with_its_team_id(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
) -> None:
    """README: `team_id` goes with every Vercel call, as `?teamId=`: the Rolling Release
    read at the window's open and its approval at the pass too, where a team's Vercel
    answers 403 to a call without it (as the fake does)."""
    async with FakeVercel(token=VC_TOKEN, team_id=TEAM) as fake:
        extra = integrations(fake_github, fake).replace(
            f"webhook_secret: {VC_SECRET}}}", f"webhook_secret: {VC_SECRET}, team_id: {TEAM}}}"
        )
        config = environments(flip_target, window="1500ms", rolling_release=True)
        agent = await start_agent(config, extra=extra)
        fake.start_rolling_release(vc.PROJECT, canary=vc.NEW)
        status, opened = await vercel_hook(agent, vc.event(event_id="t1", deployment=vc.NEW))
        assert status == 202, opened
        assert (await agent.settled(opened["deploy"]["id"]))["state"] == "passed"
        await eventually(lambda: len(fake.approvals) == 1)
        calls = fake.seen("/rolling-release")
        assert {call.path.rsplit("/", 1)[-1] for call in calls} >= {
            "rolling-release",
            "approve-stage",
        }, calls
        assert {call.param("teamId") for call in calls} == {TEAM}, calls


async def test_a_forged_delivery_keeps_nothing_and_a_superseded_window_is_not_rolled_back(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """A delivery that fails its signature, under the GUID the real one then comes with:
    401 problem+json, and the real one opens its window (nothing was kept of the forgery,
    not even its delivery id); a signed body that is not a `deployment_status` under that
    GUID: 400 problem+json, nothing kept either. A window superseded by the next
    deployment's: a manual rollback of it is a 409 problem+json, and nothing reaches GitHub
    or Vercel."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    first = gh.deployment_status(sha="a" * 40, deployment_id=41)
    forged = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "guid-1",
        "X-Hub-Signature-256": gh.signature("not-the-secret", first),
    }
    async with agent.http.post(f"{agent.url}/v1/hooks/github", data=first, headers=forged) as r:
        assert r.status == 401 and r.content_type == "application/problem+json"
    assert await windows(agent) == []
    junk = b'{"zen": "Keep it logically awesome."}'  # signed, but no deployment_status
    async with agent.http.post(
        f"{agent.url}/v1/hooks/github",
        data=junk,
        headers={**forged, "X-Hub-Signature-256": gh.signature(GH_SECRET, junk)},
    ) as r:
        assert r.status == 400 and r.content_type == "application/problem+json"
    assert await windows(agent) == []
    status, opened = await github_hook(agent, "deployment_status", first, "guid-1")
    assert status == 202 and set(opened) == {"deploy"}, opened
    superseded = opened["deploy"]["id"]
    status, newer = await github_hook(agent, "deployment_status", gh.deployment_status(), "guid-2")
    assert status == 202, newer
    assert (await agent.get(superseded))["state"] == "superseded"

    url = f"{agent.url}/v1/deploys/{superseded}/rollback"
    async with agent.http.post(url, json={"reason": "by hand"}, headers=agent.headers) as r:
        assert r.status == 409 and r.content_type == "application/problem+json"
    assert (await agent.get(superseded))["rollback"] is None
    assert fake_vercel.accepted == [] and fake_github.dispatches == []


async def test_github_events_that_open_nothing_are_a_200_ignored_and_keep_no_window(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """Contract §7: a valid, signed event that opens nothing (another event type, a
    repository or environment no source maps) is `200 {"ignored": reason}`; the Vercel
    side had this end to end, GitHub's only in component tests."""
    agent = await start_agent(
        environments(flip_target), extra=integrations(fake_github, fake_vercel)
    )
    ping = b'{"zen": "Design for failure.", "hook_id": 1, "hook": {"type": "Repository"}}'
    push = b'{"ref": "refs/heads/main", "repository": {"full_name": "acme/web"}}'
    deliveries = [
        ("ping", ping),
        ("push", push),
        ("deployment_status", gh.deployment_status(repository="acme/other")),
        ("deployment_status", gh.deployment_status(environment="Preview")),
        ("deployment_status", gh.deployment_status("failure")),
    ]
    for n, (event, body) in enumerate(deliveries):
        status, answer = await github_hook(agent, event, body, f"ignored-{n}")
        assert status == 200, (event, answer)
        assert set(answer) == {"ignored"} and isinstance(answer["ignored"], str), answer
        assert answer["ignored"], answer
    assert await windows(agent) == []
    assert fake_github.statuses == []


def _sent_headers(seen: Seen) -> dict[str, str]:
    return {name.lower(): value for name, value in seen.headers.items()}


async def test_github_hears_its_statuses_and_a_manual_rollback_s_dispatch_as_its_api_asks(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """reference/seed-stack-apis.md: GitHub's REST calls carry `Authorization: Bearer`,
    `Accept: application/vnd.github+json` and `X-GitHub-Api-Version: 2022-11-28` (the
    fake checks only the token, and the version when sent). A manual rollback of a watched
    GitHub window (contract §7) answers 202 with the deploy object, goes to the
    environment's target (the workflow's dispatch, once), and the window ends
    `rolled_back` once it is delivered."""
    rollback = "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms}"
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    status, opened = await github_hook(agent, "deployment_status", gh.deployment_status(), "g-1")
    assert status == 202, opened
    deploy = opened["deploy"]
    await eventually(lambda: len(fake_github.statuses) >= 1)

    url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"
    async with agent.http.post(url, json={"reason": "by hand"}, headers=agent.headers) as r:
        assert r.status == 202, await r.text()
        accepted = await r.json()
    assert accepted["id"] == deploy["id"] and accepted["environment"] == "production"
    assert accepted["version"] == gh.COMMIT
    final = await agent.wait_until(deploy["id"], lambda d: d["state"] == "rolled_back")
    assert final["rollback"]["state"] == "delivered", final
    await eventually(lambda: len(fake_github.statuses) >= 2)

    [dispatch] = fake_github.dispatches
    assert (dispatch["workflow"], dispatch["ref"]) == ("rollback.yml", "main")
    assert dispatch["inputs"]["deploy_id"] == deploy["id"]
    assert dispatch["inputs"]["reason"].endswith("by hand"), dispatch
    assert [s["state"] for s in fake_github.statuses] == ["in_progress", "failure"]
    calls = fake_github.seen("/statuses") + fake_github.seen("/dispatches")
    assert {c.path.rsplit("/", 1)[-1] for c in calls} == {"statuses", "dispatches"}, calls
    for call in calls:
        headers = _sent_headers(call)
        assert headers.get("authorization") == f"Bearer {GH_TOKEN}", call
        assert headers.get("accept") == "application/vnd.github+json", call
        assert headers.get("x-github-api-version") == "2022-11-28", call


async def test_a_manual_rollback_of_an_inconclusive_window_goes_to_vercel_once(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """Contract §7: a manual rollback is taken "for a window that is watching, passed,
    failed or inconclusive"; the other three had a test through the daemon, inconclusive
    none. 25 clean probes cannot show an error rate within 0.05 on evidence: inconclusive.
    A second ask is the 409 of a deploy that already has its rollback."""
    extra = (
        f"sources: {{vercel: {{project: {vc.PROJECT}, target: production}}}}\n"
        "rollback: {target: vercel, backoff: 50ms, max_backoff: 200ms}"
    )
    agent = await start_agent(
        environment(
            "production",
            flip_target.url,
            analysis="{policy: sequential, pass_on: evidence}",
            extra=extra,
        ),
        extra=integrations(fake_github, fake_vercel),
    )
    deploy = await agent.register(
        "production", "v3", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    assert (await agent.settled(deploy["id"]))["state"] == "inconclusive"

    url = f"{agent.url}/v1/deploys/{deploy['id']}/rollback"
    async with agent.http.post(url, json={"reason": "by hand"}, headers=agent.headers) as r:
        assert r.status == 202, await r.text()
        assert (await r.json())["id"] == deploy["id"]
    final = await agent.wait_until(deploy["id"], lambda d: d["state"] == "rolled_back")
    assert final["rollback"]["state"] == "delivered", final
    assert [a["deployment"] for a in fake_vercel.accepted] == [vc.OLD]
    async with agent.http.post(url, json={"reason": "again"}, headers=agent.headers) as r:
        assert r.status == 409 and r.content_type == "application/problem+json"
    assert len(fake_vercel.accepted) == 1


@pytest.mark.parametrize(
    "rollback",
    [
        "{target: vercel, dry_run: true}",
        "{target: github, github: {workflow: rollback.yml, ref: main}, dry_run: true}",
    ],
    ids=["vercel", "github"],
)
async def test_a_failed_verdict_in_dry_run_calls_neither_vercel_nor_github(
    rollback: str,
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_github: FakeGitHub,  # noqa: F811
    fake_vercel: FakeVercel,  # noqa: F811
) -> None:
    """Contract §7: the Vercel and GitHub targets keep section 3's `dry_run`. The webhook
    and a manual rollback to Vercel had a test of it through the daemon; a verdict's own
    rollback to either provider none: the window fails, its rollback `skipped`, and
    neither fake hears a rollback or a dispatch."""
    agent = await start_agent(
        environments(flip_target, rollback=rollback), extra=integrations(fake_github, fake_vercel)
    )
    flip_target.bad = True
    deploy = await agent.register(
        "production", "v9", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    final = await agent.settled(deploy["id"])
    assert (final["state"], final["rollback"]["state"]) == ("failed", "skipped"), final
    await asyncio.sleep(0.3)
    assert fake_vercel.seen("/rollback/") == [] and fake_vercel.accepted == []
    assert fake_github.seen("/dispatches") == [] and fake_github.dispatches == []

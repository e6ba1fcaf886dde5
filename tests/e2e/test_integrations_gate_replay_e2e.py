"""Contract §7's gates replayed, through the real daemon and a fake GitHub that refuses an
answer no request waits for: a protection rule's request answered once is not answered
again when it comes back under a fresh `X-GitHub-Delivery`, before or after retention
forgot its delivery. It was: the answered gate opened again, GitHub refused the second
answer, and on-call was paged (`integration_failed`) for a job that was not waiting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.appkeys import STORE
from tests.e2e.conftest import RunningAgent, environment
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
)
from tests.e2e.test_integrations_given_up_e2e import (  # noqa: F401 (fixtures)
    Refusing,
    failed_calls,
    given_up,
    refusing,
)
from tests.fakes import github as gh
from tests.receivers import JsonSink

RULE = "deployment_protection_rule"


async def events(agent: RunningAgent, result: str) -> float:
    """`postflight_deploy_events_total` of the GitHub hook ending so."""
    return await agent.scraped("postflight_deploy_events_total", provider="github", result=result)


async def test_a_request_joining_its_runs_waiting_gate_is_counted_joined(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    """The run's next job into the environment asks while the gate still waits for staging:
    it joins that gate (one answer for the run's environment), and was counted
    `redelivered` though GitHub had never sent it before. Once answered, each request
    replayed is told the answer."""
    agent = await refusing.alerting(json_sink, staging_window="3s")
    github = refusing.github
    good = "b" * 40
    staging = await agent.register("staging", good)
    pending = (202, {"gate": "pending", "environment": "production"})
    first = github.ask_gate(sha=good, run_id=41, deployment_id=9101)
    assert await github_hook(agent, RULE, first, "guid-41a") == pending
    nxt = github.ask_gate(sha=good, run_id=41, deployment_id=9102)
    assert await github_hook(agent, RULE, nxt, "guid-41b") == pending
    assert (await events(agent, "gate"), await events(agent, "joined")) == (1, 1)
    assert await events(agent, "redelivered") == 0
    await agent.settled(staging["id"])
    await eventually(lambda: len(github.gate_answers) == 1)
    store = agent.app[STORE]
    await eventually_async(lambda: store.pending_gates(), [])
    approved = (202, {"gate": "approved", "environment": "production", "result": "HTTP 204"})
    assert await github_hook(agent, RULE, nxt, "guid-41c") == approved
    assert await github_hook(agent, RULE, first, "guid-41d") == approved
    assert await events(agent, "redelivered") == 2
    await asyncio.sleep(1.0)
    assert len(github.gate_answers) == 1
    assert given_up(json_sink) == []


async def eventually_async(read: Any, expected: object, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while await read() != expected:
        assert loop.time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


async def test_an_answered_gate_replayed_under_a_fresh_delivery_is_not_answered_again(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    agent = await refusing.alerting(json_sink, staging_window="1500ms")
    github = refusing.github
    good = "b" * 40
    await agent.settled((await agent.register("staging", good))["id"])
    rule = github.ask_gate(sha=good, run_id=11)
    first = await github_hook(agent, RULE, rule, "guid-1")
    assert first == (202, {"gate": "pending", "environment": "production"})
    await eventually(lambda: len(github.gate_answers) == 1)
    store = agent.app[STORE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await store.pending_gates():  # answered, in the store
        assert loop.time() < deadline
        await asyncio.sleep(0.05)

    # the same signed body under a fresh GUID: a replay, not a job asking; told its
    # gate's answer (it was told "pending" again, its answer sent long since)
    approved = (202, {"gate": "approved", "environment": "production", "result": "HTTP 204"})
    assert await github_hook(agent, RULE, rule, "guid-2") == approved
    # retention forgets the deliveries, and it comes again
    assert await store.prune_idempotency(time.time() + 1) >= 1
    assert await github_hook(agent, RULE, rule, "guid-3") == approved
    assert await events(agent, "redelivered") == 2
    await scanned(agent)  # several scans
    assert [(a["run"], a["state"]) for a in github.gate_answers] == [("11", "approved")]
    assert given_up(json_sink) == []
    assert await failed_calls(agent, "github") == 0
    assert await store.pending_gates() == []

    # the run's next job into Production (its own deployment) is asked, and answered
    nxt = github.ask_gate(sha=good, run_id=11, deployment_id=9001)
    assert await github_hook(agent, RULE, nxt, "guid-4") == first
    await eventually(lambda: len(github.gate_answers) == 2)
    assert given_up(json_sink) == []


async def test_a_request_older_than_the_requests_kept_is_ignored(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    """Past the 90 days a request is kept (`GATES_KEPT_S`), its replay would open the
    gate again and answer a job no longer waiting (GitHub waits 30 days): GitHub would
    refuse the answer and page on-call. Its deployment's `created_at` tells it apart."""
    agent = await refusing.alerting(json_sink, staging_window="1500ms")
    github = refusing.github
    good = "b" * 40
    await agent.settled((await agent.register("staging", good))["id"])
    old = github.ask_gate(sha=good, run_id=51, created_at=time.time() - 91 * 86400)
    status, body = await github_hook(agent, RULE, old, "guid-51")
    assert status == 200, body
    assert body["ignored"].startswith("the protection rule's deployment of "), body
    assert body["ignored"].endswith(
        " is older than the requests this agent keeps (90 days; GitHub waits 30 at most):"
        " a replay is not answered"
    ), body
    assert await events(agent, "ignored") == 1
    # a job that began to wait a day ago is asked and answered
    recent = github.ask_gate(sha=good, run_id=52, created_at=time.time() - 86400)
    assert await github_hook(agent, RULE, recent, "guid-52") == (
        202,
        {"gate": "pending", "environment": "production"},
    )
    await eventually(lambda: len(github.gate_answers) == 1)
    await asyncio.sleep(1.0)
    assert [a["run"] for a in github.gate_answers] == ["52"]
    await eventually_async(agent.app[STORE].pending_gates, [])
    assert given_up(json_sink) == []


async def test_one_runs_jobs_into_two_gated_environments_are_each_answered(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    """GitHub's callback URL is one per run (`…/actions/runs/{run_id}/deployment_protection_
    rule`), the environment named in the answer: a run deploying to two gated
    environments asks twice on one URL. The gate was stored by URL alone, so the second
    environment's request, come while the first waited, was dropped and its job waited
    for GitHub's 30 days."""
    github = refusing.github
    gated = f"""
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production-EU}}
    gate: {{after: staging, timeout: 30s}}
    """
    agent = await refusing.start(
        environments(refusing.target, staging_window="3s")
        + environment("production-eu", refusing.target.url, extra=gated),
        alerting=alerts_to(json_sink),
        extra=integrations(github, refusing.vercel),
    )
    good = "b" * 40
    staging = await agent.register("staging", good)
    # asked while staging still runs: both wait, on one callback URL
    for name, guid in (("Production", "guid-us"), ("Production-EU", "guid-eu")):
        rule = github.ask_gate(sha=good, run_id=21, environment=name)
        assert (await github_hook(agent, RULE, rule, guid))[0] == 202
    await agent.settled(staging["id"])
    await eventually(lambda: len(github.gate_answers) == 2)
    await asyncio.sleep(1.0)
    assert sorted((a["environment_name"], a["state"]) for a in github.gate_answers) == [
        ("Production", "approved"),
        ("Production-EU", "approved"),
    ]
    assert given_up(json_sink) == []


async def test_a_gate_whose_answer_hangs_holds_up_no_other_gate(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    """Gates were answered one after another inside the scan: one whose callback hung
    (GitHub slow for that run: each attempt waits out `integrations.github.timeout`)
    held every other gate, and the next scan, for the whole call (4 attempts)."""
    github = refusing.github
    # the hung answer is still out at the teardown's stop: a 1 s grace for it, not 5 s
    agent = await refusing.alerting(
        json_sink, server="shutdown_timeout: 4s", staging_window="1500ms"
    )
    good = "b" * 40
    await agent.settled((await agent.register("staging", good))["id"])
    github.fail("hang", match="/runs/31/")
    slow = github.ask_gate(sha=good, run_id=31)
    assert (await github_hook(agent, RULE, slow, "guid-slow"))[0] == 202
    await eventually(lambda: len(github.seen("/runs/31/")) == 1)
    quick = github.ask_gate(sha=good, run_id=32)
    assert (await github_hook(agent, RULE, quick, "guid-quick"))[0] == 202
    await eventually(lambda: len(github.gate_answers) == 1)
    assert github.gate_answers[0]["run"] == "32"
    assert len(github.seen("/runs/31/")) == 1  # still waiting for its first answer

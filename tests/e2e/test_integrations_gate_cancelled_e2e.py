"""A protection rule's first answer GitHub refuses with a 422, through the real daemon and
the fake GitHub: a 422 is also a run with nothing left waiting. The run is read (`GET
/repos/{owner}/{repo}/actions/runs/{run_id}`): cancelled, nothing is left to protect and
nobody is paged, where on-call was paged 'NOT answered, answer it by hand' for a run
nobody could answer any more; a run still waiting, or a refused token (401), still pages."""

from __future__ import annotations

import asyncio

from aiohttp import web

from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.integrations_support import GATE_PATH
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    GH_TOKEN,
    alerts_to,
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.e2e.test_integrations_gate_replay_e2e import eventually_async
from tests.e2e.test_integrations_given_up_e2e import (  # noqa: F401 (fixtures)
    Refusing,
    failed_calls,
    given_up,
    refusing,
    told_once,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import JsonNotification, JsonSink


async def test_a_422_to_the_answer_of_a_cancelled_run_pages_no_one(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    agent = await refusing.alerting(json_sink, staging_window="1500ms")
    good = "b" * 40
    staging = await agent.register("staging", good)
    rule = refusing.github.ask_gate(sha=good, run_id=21)
    status, answer = await github_hook(agent, "deployment_protection_rule", rule, "gate-21")
    assert status == 202, answer
    refusing.github.cancel_run(21)  # by hand, while staging is watched
    assert (await agent.settled(staging["id"]))["state"] == "passed"
    await eventually_async(agent.app[STORE].pending_gates, [], within=15)
    # a page is counted failed before it is sent, and before the gate is marked answered
    assert await failed_calls(agent, "github") == 0
    assert given_up(json_sink) == []
    # counted at the fake: the answer once (refused), then the run read once
    assert len(refusing.github.seen(GATE_PATH)) == 1
    assert refusing.github.gate_answers == []
    reads = refusing.github.seen("/actions/runs/21")
    assert [(r.method, r.path) for r in reads] == [
        ("POST", "/repos/acme/web/actions/runs/21/deployment_protection_rule"),
        ("GET", "/repos/acme/web/actions/runs/21"),
    ]


async def _paged(fakes: Refusing, json_sink: JsonSink, code: str, run_id: int) -> JsonNotification:
    """A protection rule's answer GitHub refuses with HTTP `code`: on-call paged once to
    answer it by hand, one failed call counted. The page."""
    agent = await fakes.alerting(json_sink, staging_window="1500ms")
    good = "b" * 40
    staging = await agent.register("staging", good)
    fakes.github.fail(code, match="deployment_protection_rule")
    rule = fakes.github.ask_gate(sha=good, run_id=run_id)
    hook = await github_hook(agent, "deployment_protection_rule", rule, f"gate-{run_id}")
    assert hook[0] == 202
    await agent.settled(staging["id"])
    told = await told_once(json_sink, agent)
    assert "protection rule NOT answered, answer it by hand" in told.title
    assert f"HTTP {code}" in told.message
    assert await failed_calls(agent, "github") == 1
    return told


async def test_a_422_to_the_answer_of_a_run_still_waiting_pages_and_says_so(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    told = await _paged(refusing, json_sink, "422", run_id=22)
    assert "its run is waiting" in told.message
    assert len([r for r in refusing.github.seen("/actions/runs/22") if r.method == "GET"]) == 1


async def test_a_refused_token_pages_without_reading_the_run(
    refusing: Refusing,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    await _paged(refusing, json_sink, "401", run_id=23)
    assert [r.method for r in refusing.github.seen("/actions/runs/23")] == ["POST"]


class SlowGitHub(FakeGitHub):
    """Takes a protection rule's first answer, then answers it only after `slow_s`: past
    the agent's timeout, as a connection lost after GitHub acted leaves it."""

    slow_s = 2.5

    async def gate(self, request: web.Request) -> web.Response:
        answer = await super().gate(request)
        if len(self.gate_answers) == 1 and answer.status == 204 and self.slow_s:
            self.slow_s, slow = 0.0, self.slow_s
            await asyncio.sleep(slow)
        return answer


async def test_a_422_after_an_attempt_that_got_no_answer_is_the_answer_taken_no_page(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    json_sink: JsonSink,
) -> None:
    """GitHub took the answer and its 204 never came (timed out): the next attempt of the
    same call is refused (422, nothing waits any more), and on-call was paged 'NOT
    answered, answer it by hand' for a gate answered. As a 422 to an answer under a claim
    taken over (`test_gate_answer_kept`): recorded as answered before, no page."""
    async with SlowGitHub(token=GH_TOKEN) as github:
        extra = integrations(github, fake_vercel).replace(
            "webhook_secret: gh-", "timeout: 1s, webhook_secret: gh-"
        )
        assert "timeout: 1s" in extra, extra
        agent = await start_agent(
            environments(flip_target, staging_window="1500ms"),
            alerting=alerts_to(json_sink),
            extra=extra,
        )
        good = "b" * 40
        staging = await agent.register("staging", good)
        rule = github.ask_gate(sha=good, run_id=31)
        assert (await github_hook(agent, "deployment_protection_rule", rule, "gate-31"))[0] == 202
        assert (await agent.settled(staging["id"]))["state"] == "passed"
        await eventually_async(agent.app[STORE].pending_gates, [], within=15)
        # a page is counted failed before it is sent, and before the gate is marked answered
        assert await failed_calls(agent, "github") == 0
        assert given_up(json_sink) == []
        assert [(a["run"], a["state"]) for a in github.gate_answers] == [("31", "approved")]
        assert len(github.seen(GATE_PATH)) == 2  # taken (answer lost), then refused
        await agent.stop()

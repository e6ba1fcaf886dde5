"""A stop while Vercel is slow to list the production deployments, through the real daemon
(stopped as SIGTERM stops it, restarted on the same store), counted at the fake Vercel.

The rollback's own look-up (`RollbackTargets.look_up`: a deploy that names no previous
deployment) is let go of at the stop and the rollback handed back unsent: the restarted
agent asks again and rolls back once. Before, the stop waited for Vercel's answer and the
stopping agent sent the rollback inside its grace. The window's look-up at open
(`vercel:previous`) is handed back too, and asked again after the restart; before, its
claim had no lease: cut by the stop, it stayed claimed for good and was never asked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agent.app import WATCHER
from agent.appkeys import STORE
from agent.windows.integrations import PREVIOUS_KEY
from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent, environment
from tests.fakes import vercel as vc
from tests.fakes.vercel import FakeVercel, listed_deployment

pytestmark = pytest.mark.e2e

TOKEN = "vc-token-e2e"
SECRET = "vc-webhook-secret"
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
LIST = "/v6/deployments"


class SlowList(FakeVercel):
    """Vercel whose list of deployments answers only once `answer` is set."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()

    async def list_deployments(self, request: web.Request) -> web.Response:
        self.asked.set()
        await self.answer.wait()
        return await super().list_deployments(request)


@pytest.fixture
async def slow_vercel() -> AsyncIterator[SlowList]:
    fake = SlowList()
    fake.listed[vc.PROJECT] = [
        listed_deployment(vc.NEW, 1764460800000, sha=SHA),
        listed_deployment(vc.OLD, 1764374400000, sha="b" * 40),
    ]
    async with fake:
        yield fake
        fake.answer.set()


@pytest.fixture
def start_agent(slow_vercel: SlowList, start_agent: AgentFactory) -> AgentFactory:
    """The harness's, set up after the fake and so stopped before it."""
    return start_agent


def config(vercel: FakeVercel, target: FlipTarget, rollback: bool) -> tuple[str, str]:
    extra = f"""
    sources:
      vercel: {{project: {vc.PROJECT}, target: production}}
    """
    if rollback:
        # one ask allowed: the stop's, let go of, is not spent (the restart asks again)
        extra += "rollback: {target: vercel, backoff: 50ms, max_backoff: 200ms, max_attempts: 1}\n"
    integrations = f"""
    integrations:
      vercel: {{api_url: "{vercel.url}", token: {TOKEN}, webhook_secret: {SECRET}}}
    """
    return environment("production", target.url, window="30s", extra=extra), integrations


async def eventually(check: Any, within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


async def test_a_stop_during_the_rollbacks_look_up_hands_it_back_and_the_restart_sends_it_once(
    start_agent: AgentFactory, flip_target: FlipTarget, slow_vercel: SlowList
) -> None:
    environments, integrations = config(slow_vercel, flip_target, rollback=True)
    agent = await start_agent(environments, extra=integrations)
    delivery = agent.app[WATCHER].services.delivery
    stop = delivery.leave_waits

    def stop_then_answer() -> None:  # Vercel answers the look-up as the stop comes
        stop()
        slow_vercel.answer.set()

    delivery.leave_waits = stop_then_answer  # type: ignore[method-assign]
    # registered by a pipeline with its commit: no Vercel event named its deployment, nor
    # the one before, so the rollback asks Vercel (by the commit) before it is sent
    deploy = await agent.register("production", "v2", commit=SHA)
    flip_target.bad = True
    await asyncio.wait_for(slow_vercel.asked.wait(), 30)  # the rollback's look-up is out
    await agent.stop()
    # before: the stop waited for the answer, and the stopping agent sent the rollback
    assert slow_vercel.accepted == []
    assert len(slow_vercel.seen(LIST)) == 1
    again = await start_agent(environments, extra=integrations)
    final = await again.settled(deploy["id"])
    assert (final["state"], final["rollback"]["state"]) == ("rolled_back", "delivered"), final
    assert [a["deployment"] for a in slow_vercel.accepted] == [vc.OLD]  # once
    assert len(slow_vercel.seen(LIST)) == 2  # asked again by the restarted agent
    assert final["rollback"]["attempts"] == 1, final["rollback"]


async def test_a_stop_during_the_look_up_at_window_open_leaves_it_to_the_restart(
    start_agent: AgentFactory, flip_target: FlipTarget, slow_vercel: SlowList
) -> None:
    environments, integrations = config(slow_vercel, flip_target, rollback=False)
    agent = await start_agent(environments, extra=integrations)
    body = vc.event(event_id="evt_first", deployment=vc.NEW)
    signed = {"Content-Type": "application/json", "x-vercel-signature": vc.signature(SECRET, body)}
    async with agent.http.post(f"{agent.url}/v1/hooks/vercel", data=body, headers=signed) as r:
        assert r.status == 202, await r.text()
        deploy_id = (await r.json())["deploy"]["id"]
    await asyncio.wait_for(slow_vercel.asked.wait(), 30)  # its look-up is out
    await agent.stop()
    slow_vercel.answer.set()
    again = await start_agent(environments, extra=integrations)

    async def recorded(running: RunningAgent = again) -> bool:
        events = await running.app[STORE].alert_events(deploy_id)
        return events.get(PREVIOUS_KEY) == "sent"

    # before: its claim, left without an outcome, was never taken again: asked once
    await eventually(recorded)
    assert len(slow_vercel.seen(LIST)) == 2
    assert (await again.get(deploy_id))["labels"]["vercel.previous"] == vc.OLD

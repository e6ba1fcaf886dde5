"""The harness the GitHub-and-Vercel e2e files share, one fixture: the fakes, agents that
hear both and are stopped before them, where each file imported `test_integrations_e2e`'s
fixtures (`fake_github`, `fake_vercel`, its `start_agent`) and wrote the setup again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.api.hooks import INTEGRATIONS
from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent
from tests.e2e.test_integrations_e2e import GH_TOKEN, VC_TOKEN, environments, integrations
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

GATE_PATH = "/deployment_protection_rule"
"""Where the fake GitHub takes a protection rule's answer."""


async def scanned(agent: RunningAgent, scans: int = 2, *, at: float | None = None) -> None:
    """Until `scans` integrations scans of `agent` begun now or later (and at `at` or later
    on its integrations' clock, if given: a retry or a lapsed lease due by then) have
    ended, woken at once rather than a second apart, and nothing they began is in hand:
    no action, gate answer or alert in flight. What a wait "long enough" (several scans,
    or a lease) stood for, seen to happen instead."""
    integrations = agent.app[INTEGRATIONS]
    scan = integrations._scan
    ended = 0

    async def counted() -> None:
        nonlocal ended
        started = integrations.clock()
        await scan()
        if at is None or started >= at:
            ended += 1

    integrations._scan = counted  # the instance's: `run` calls `self._scan()`
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15.0 + (0.0 if at is None else max(0.0, at - integrations.clock()))
        while (
            ended < scans
            or integrations._busy
            or integrations._gates_busy
            or integrations.s.alerts._sending
        ):
            assert loop.time() < deadline, f"gave up waiting: {ended} scans ended"
            integrations.wake()
            await asyncio.sleep(0.02)
    finally:
        del integrations._scan


AS_KILLED = "shutdown_timeout: 4s"
"""`server:` of an agent a test freezes in a store write, as a kill at that instant leaves
it: its stop (in the test on SQLite, at the teardown on PostgreSQL) cuts the frozen write
after the 1 s grace this budget gives the watcher's work, where the default 8 s waited 5 s
for a write that never returns (a stop's own bounds are tests/test_app_lifecycle.py's)."""


@dataclass
class Integrated:
    """The fakes, the target the environments probe, and the factory of agents hearing both."""

    start_agent: AgentFactory
    target: FlipTarget
    github: FakeGitHub
    vercel: FakeVercel
    started: list[RunningAgent] = field(default_factory=list)

    def environments(self, **options: Any) -> str:
        """`test_integrations_e2e.environments` on this target."""
        return environments(self.target, **options)

    @property
    def extra(self) -> str:
        """The `integrations:` section naming both fakes."""
        return integrations(self.github, self.vercel)

    async def start(self, env: str | None = None, **options: Any) -> RunningAgent:
        """An agent on `env` (the default environments if None) hearing both fakes."""
        environment = env if env is not None else self.environments()
        agent = await self.start_agent(environment, extra=self.extra, **options)
        self.started.append(agent)
        return agent


async def rolled_back_by_hand(agent: RunningAgent) -> str:
    """A deploy of v2 on Vercel registered and rolled back by hand (202): its id."""
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    async with agent.http.post(
        f"{agent.url}/v1/deploys/{deploy['id']}/rollback",
        json={"reason": "checkout broken"},
        headers=agent.headers,
    ) as r:
        assert r.status == 202
    return str(deploy["id"])


@pytest.fixture(params=["sqlite", "postgres"])
def store_yaml(request: pytest.FixtureRequest) -> str | None:
    """The store the agents share: the test's SQLite file, or a PostgreSQL database."""
    return f"url: {request.getfixturevalue('pg_url')}" if request.param == "postgres" else None


@pytest.fixture
async def integrated(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> AsyncIterator[Integrated]:
    """Its agents are stopped before the fakes: stopped after, an agent posting a status at
    its stop retried the fake GitHub, gone, for the whole 5 s grace (as
    `test_integrations_e2e.start_agent` says)."""
    async with FakeGitHub(token=GH_TOKEN) as github, FakeVercel(token=VC_TOKEN) as vercel:
        harness = Integrated(start_agent, flip_target, github, vercel)
        yield harness
        for agent in harness.started:
            await agent.stop()

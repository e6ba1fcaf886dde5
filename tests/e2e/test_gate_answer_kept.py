"""A protection rule's answer GitHub took is stored even when the store does not answer
at that moment: held until the store takes it (`held_until_stored`), as a rollback's 2xx
and a follow-up's outcome are, so the gate is not answered twice.

The store's failure was raised out of the gate's task and the gate left pending under
its claim: once the claim lapsed (`GATE_CLAIM_S`, 300 s; 2 s here) the answer went to
GitHub again, which refuses a second answer (422), and that refusal paged on-call with
`NOT answered` for a gate that had been answered. Counted at the fake GitHub."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.appkeys import STORE
from agent.store import outages
from agent.store.base import StoreUnreachable
from agent.store.sqlite import SqliteStore
from agent.windows import integrations as integrations_module
from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    eventually,
    fake_github,
    fake_vercel,
    github_hook,
    integrations,
    start_agent,
)
from tests.e2e.test_integrations_gate_replay_e2e import eventually_async
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel

pytestmark = pytest.mark.e2e

GATE_PATH = "/deployment_protection_rule"


@pytest.mark.timeout(60)
async def test_a_gates_answer_the_store_did_not_take_at_once_is_not_sent_again(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_gate = SqliteStore.answer_gate
    tries: list[str] = []

    async def away_once(self: SqliteStore, *args: Any) -> None:
        tries.append(args[2])
        if len(tries) == 1:
            raise StoreUnreachable("cannot reach the store: read-only")
        await answer_gate(self, *args)

    monkeypatch.setattr(SqliteStore, "answer_gate", away_once)
    monkeypatch.setattr(integrations_module, "GATE_CLAIM_S", 2.0)
    monkeypatch.setattr(outages, "HELD_RETRY_S", (0.2,))
    agent = await start_agent(
        environments(flip_target, staging_window="1500ms"),
        extra=integrations(fake_github, fake_vercel),
    )
    good = "b" * 40
    assert (await agent.settled((await agent.register("staging", good))["id"]))["state"] == "passed"
    rule = fake_github.ask_gate(sha=good, run_id=8)
    status, _ = await github_hook(agent, "deployment_protection_rule", rule, "gate-kept")
    assert status == 202
    await eventually(lambda: len(fake_github.gate_answers) == 1)
    await eventually_async(agent.app[STORE].pending_gates, [])  # stored once it answers
    await asyncio.sleep(3.0)  # past the claim's 2 s: no second answer
    assert len(fake_github.seen(GATE_PATH)) == 1, [r.status for r in fake_github.seen(GATE_PATH)]
    assert [(a["run"], a["state"]) for a in fake_github.gate_answers] == [("8", "approved")]
    assert tries == ["approved", "approved"]

"""A delivered rollback's `rollback.then` follow-ups go out in the live agent though the
store failed right after the rollback's outcome was stored (its settled mark, the first
write after it): they were left to the next start (`_resume_after_rollbacks`), and a
running agent sent them only once restarted, days later maybe. On SQLite and PostgreSQL,
for an outage and for StoreBusy. Counted at the follow-up's receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.store.base import StoreBusy, StoreError, StoreUnreachable
from agent.store.sql import SqlStore
from agent.windows.lifecycle import ROLLBACK_SETTLED
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget
from tests.e2e.test_integrations_e2e import (  # noqa: F401 (fixtures)
    environments,
    fake_github,
    fake_vercel,
    integrations,
    start_agent,
)
from tests.fakes import vercel as vc
from tests.fakes.github import FakeGitHub
from tests.fakes.vercel import FakeVercel
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "postgres"])
def store_yaml(request: pytest.FixtureRequest) -> str | None:
    """The agent's store: the test's SQLite file, or a PostgreSQL database."""
    return f"url: {request.getfixturevalue('pg_url')}" if request.param == "postgres" else None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("refusal", [StoreUnreachable, StoreBusy], ids=["outage", "busy"])
async def test_follow_ups_of_a_rollback_stored_as_the_store_fails_go_out_without_a_restart(
    start_agent: AgentFactory,  # noqa: F811
    flip_target: FlipTarget,
    fake_vercel: FakeVercel,  # noqa: F811
    fake_github: FakeGitHub,  # noqa: F811
    rollback_receiver: Any,
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str | None,
    refusal: type[StoreError],
) -> None:
    claim_alert = SqlStore.claim_alert
    refused: list[str] = []

    async def away_once(self: SqlStore, window_id: str, key: str, *args: Any, **kw: Any) -> Any:
        if key == ROLLBACK_SETTLED and not refused:
            refused.append(key)
            raise refusal("the store refused the write for now")
        return await claim_alert(self, window_id, key, *args, **kw)

    monkeypatch.setattr(SqlStore, "claim_alert", away_once)
    migrations: RollbackReceiver = await rollback_receiver("follow-secret")
    rollback = f"""{{target: vercel, secret: {SECRET}, backoff: 50ms, max_backoff: 200ms,
        then: [{{name: migrations, url: '{migrations.url}', secret: follow-secret}}]}}"""
    agent = await start_agent(
        environments(flip_target, rollback=rollback),
        extra=integrations(fake_github, fake_vercel),
        store=store_yaml,
    )
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    async with agent.http.post(
        f"{agent.url}/v1/deploys/{deploy['id']}/rollback",
        json={"reason": "checkout broken"},
        headers=agent.headers,
    ) as r:
        assert r.status == 202
    await agent.settled(deploy["id"])
    attempts = await migrations.wait_for_attempts(1, within=15.0)
    assert refused == [ROLLBACK_SETTLED]
    await asyncio.sleep(1.0)  # and once
    assert [a.idempotency_key for a in attempts] == [f"{deploy['id']}:migrations"]
    assert len(fake_vercel.accepted) == 1

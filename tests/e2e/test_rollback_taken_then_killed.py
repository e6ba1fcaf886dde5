"""A rollback a target that does not dedupe (Vercel, a GitHub workflow_dispatch) took,
its sender killed before recording it: the next start (SQLite) or the other replica
(PostgreSQL) that takes the rollback over asks the target whether it took effect before
sending again (`RollbackTargets.already_done`), and sends nothing more: one rollback at
the fake target. The sender's record of the 2xx never returns, as a kill at that instant
leaves it; a process test cannot place its kill there (the receiver answers before the
record, and its own kill-on-accept comes before the answer)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.records import DeliveryAttempt, RollbackIntent
from agent.store.base import AlertClaim
from agent.store.sql import SqlStore
from tests.e2e.conftest import SECRET
from tests.e2e.integrations_support import (  # noqa: F401 (fixture)
    Integrated,
    integrated,
    rolled_back_by_hand,
)

pytestmark = pytest.mark.e2e

TARGETS = {
    "vercel": f"{{target: vercel, secret: {SECRET}, timeout: 1s, backoff: 50ms}}",
    "github": "{target: github, github: {workflow: rollback.yml, ref: main}, timeout: 1s,"
    " backoff: 50ms}",
}

AS_KILLED = "shutdown_timeout: 2s"
"""`server:` of the agent frozen in its record of the 2xx, as a kill there leaves it: its
stop (in the test on SQLite, at the teardown on PostgreSQL) waits for the frozen write until
the stop's closing share, some 80% of the budget: 3.2 s of `integrations_support`'s 4 s
`AS_KILLED`, each case's longest wait; 1.6 s of this one's. Nothing here is of that stop:
it ends the frozen agent (and frees the SQLite file for its restart)."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_yaml(request: pytest.FixtureRequest) -> str:
    """The store both agents use, with a 2 s lease: the test's SQLite file, or PostgreSQL."""
    if request.param == "postgres":
        return f"url: {request.getfixturevalue('pg_url')}\n  lease: 2s"
    path = request.getfixturevalue("tmp_path") / "postflight.db"
    return f"url: sqlite:///{path}\n  lease: 2s"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("target", list(TARGETS))
async def test_a_rollback_the_target_took_before_its_sender_died_is_not_sent_again(
    integrated: Integrated,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    store_yaml: str,
    target: str,
) -> None:
    settle = SqlStore.settle_rollback
    frozen = asyncio.Event()

    async def dies_at_the_2xx(
        self: SqlStore,
        intent: RollbackIntent,
        attempt: DeliveryAttempt | None = None,
        alerts: Any = (),
    ) -> bool:
        status = attempt.status if attempt is not None else None
        if status is not None and 200 <= status < 300 and not frozen.is_set():
            frozen.set()
            await asyncio.Event().wait()  # the sender: as killed, never written
        claims: tuple[AlertClaim, ...] = tuple(alerts)
        return await settle(self, intent, attempt, claims)

    monkeypatch.setattr(SqlStore, "settle_rollback", dies_at_the_2xx)
    env = integrated.environments(rollback=TARGETS[target])
    first = await integrated.start(env, store=store_yaml, owner="a", server=AS_KILLED)
    deploy_id = await rolled_back_by_hand(first)
    await asyncio.wait_for(frozen.wait(), 15)
    if "sqlite" in store_yaml:  # one agent per SQLite file: B is A's restart
        await first.stop()
    second = await integrated.start(env, store=store_yaml, owner="b")
    final = await second.wait_until(
        deploy_id, lambda d: (d.get("rollback") or {}).get("state") != "pending", within=30
    )
    assert final["rollback"]["state"] == "delivered", final
    await asyncio.sleep(1.0)
    taken = integrated.vercel.accepted if target == "vercel" else integrated.github.dispatches
    assert len(taken) == 1, taken

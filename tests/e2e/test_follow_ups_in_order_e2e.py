"""README, after a rollback: "`rollback.then` webhooks (a migration rollback, a cache
purge) go out once each, in order, signed like the rollback webhook, with
`Idempotency-Key: <deploy id>:<name>`, retried like it". Through the real daemon, a
manual rollback through the fake Vercel and three receivers: the first retried past two
503s, the second refusing (400), the third taking it. Each goes out after the one before
has its outcome (a refused one does not stop the next), once, signed with its own secret
or the rollback's, under its own key. The daemon's test of the follow-ups
(test_integrations_e2e's manual rollback) held one of each and no order."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import SECRET
from tests.e2e.integrations_support import Integrated, integrated  # noqa: F401 (fixture)
from tests.fakes import vercel as vc
from tests.receivers import RollbackReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


async def test_follow_ups_go_out_once_each_in_order_under_their_own_keys(
    integrated: Integrated,  # noqa: F811
    rollback_receiver: Any,
) -> None:
    fake_vercel = integrated.vercel
    migrations: RollbackReceiver = await rollback_receiver("follow-secret", script=(503, 503))
    audit: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    cache: RollbackReceiver = await rollback_receiver(SECRET)
    rollback = f"""{{target: vercel, secret: {SECRET}, backoff: 50ms, max_backoff: 200ms,
        then: [{{name: migrations, url: '{migrations.url}', secret: follow-secret}},
               {{name: audit, url: '{audit.url}'}},
               {{name: cache-purge, url: '{cache.url}'}}]}}"""
    agent = await integrated.start(integrated.environments(rollback=rollback))
    deploy = await agent.register(
        "production", "v2", labels={"vercel.deployment": vc.NEW, "vercel.previous": vc.OLD}
    )
    await agent.rollback(deploy["id"], "checkout broken")
    done = await agent.wait_until(
        deploy["id"],
        lambda d: all(
            t["state"] != "pending"
            for t in (d["rollback"] or {}).get("then") or [{"state": "pending"}]
        ),
    )
    assert [(t["name"], t["state"]) for t in done["rollback"]["then"]] == [
        ("migrations", "delivered"),
        ("audit", "failed"),
        ("cache-purge", "delivered"),
    ]
    assert (len(migrations.attempts), len(audit.attempts), len(cache.attempts)) == (3, 1, 1)
    # in order: each after the one before had its outcome, the rollback first of all
    assert fake_vercel.accepted[0]["at"] <= migrations.attempts[0].at
    assert migrations.attempts[-1].at <= audit.attempts[0].at <= cache.attempts[0].at
    for name, receiver in (("migrations", migrations), ("audit", audit), ("cache-purge", cache)):
        assert {a.idempotency_key for a in receiver.attempts} == {f"{deploy['id']}:{name}"}
        assert all(a.signature_ok for a in receiver.attempts), name

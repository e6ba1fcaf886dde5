"""The look that tells whether a rollback attempt that got no answer took effect all the
same (`RollbackTargets.already_done`) is a read: its 200 cut short (fewer bytes than its
Content-Length, then the connection closed) is asked again, where it was "not taken" and
the rollback went out a second time. Counted at the fake Vercel."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import SECRET
from tests.e2e.integrations_support import (  # noqa: F401 (fixture)
    Integrated,
    integrated,
    rolled_back_by_hand,
)

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_a_look_cut_short_after_an_unanswered_rollback_is_asked_again_not_sent_again(
    integrated: Integrated,  # noqa: F811
) -> None:
    """Vercel acts on the rollback and never answers it: the attempt times out. After the
    backoff's wait the delivery asks Vercel which deployment serves production; that
    answer cut short read as "not the one rolled back to", and the rollback was sent
    again: two at Vercel.

    The fake holds its answer until the agent has let go of the connection (seen at the
    fake, `let_go`), where it answered at 1.6 s against the attempt's 1 s timeout: a loop
    that met that deadline 0.25 s late or more gives the answer a look
    (`agent.rollback.delivery.answered_within`), and on a loaded machine it was read,
    delivered with no look at all (0 looks, not 2)."""
    vercel = integrated.vercel
    rollback_path = "/rollback/"
    vercel.fail(
        "unanswered", times=1, match=lambda r: r.method == "POST" and rollback_path in r.path
    )
    look = "/v9/projects/"
    vercel.fail("cut_short", times=1, match=lambda r: r.method == "GET" and look in r.path)
    rollback = f"{{target: vercel, secret: {SECRET}, timeout: 1s, backoff: 50ms}}"
    agent = await integrated.start(integrated.environments(rollback=rollback))
    deploy_id = await rolled_back_by_hand(agent)
    final = await agent.wait_until(
        deploy_id, lambda d: (d.get("rollback") or {}).get("state") != "pending", within=30
    )
    assert final["rollback"]["state"] == "delivered", final
    await asyncio.sleep(2.0)  # a second rollback would have landed by now
    # the premise: the first attempt was acted on and got no answer, whatever the load
    assert vercel.let_go == vercel.seen(rollback_path)[:1], vercel.let_go
    assert len(vercel.accepted) == 1, vercel.accepted
    assert len(vercel.seen(look)) == 2  # cut short, then asked again: whole

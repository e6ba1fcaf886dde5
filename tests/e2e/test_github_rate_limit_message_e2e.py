"""README's rollback targets: GitHub's rate limits come as 403s "(`Retry-After`, or
`x-ratelimit-remaining: 0` until `x-ratelimit-reset`, or a message naming it: at least a
minute): those are waited out like a 429, by the dispatch". The first two had their
tests (tests/rollback/test_rollback_targets.py); the third, a secondary rate limit whose
403 names no wait (GitHub's docs: wait at least a minute), none. Through the real daemon:
the rollback dispatch answered so is not failed at once (a 403 that is no rate limit is,
tests/e2e/test_rollback_target_refused_e2e.py) but waits a minute, asking GitHub nothing
meanwhile; the wait read from the store, where the delivery keeps it."""

from __future__ import annotations

import asyncio

import pytest

from agent.appkeys import STORE
from tests.e2e.integrations_support import Integrated, integrated  # noqa: F401 (fixture)
from tests.e2e.test_integrations_e2e import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

ROLLBACK = (
    "{target: github, github: {workflow: rollback.yml, ref: main}, backoff: 50ms,"
    " max_backoff: 200ms}"
)


async def test_a_403_naming_a_rate_limit_without_a_wait_is_waited_a_minute(
    integrated: Integrated,  # noqa: F811
) -> None:
    fake_github, flip_target = integrated.github, integrated.target
    fake_github.fail("secondary_rate_limit_unnamed_wait", times=1, match="/dispatches")
    agent = await integrated.start(integrated.environments(rollback=ROLLBACK, window="1500ms"))
    deploy = await agent.register("production", "v2")
    flip_target.bad = True
    await eventually(lambda: len(fake_github.seen("/dispatches")) == 1, within=30)
    asked = fake_github.seen("/dispatches")[0].at
    store = agent.app[STORE]

    async def waiting() -> float:
        while True:
            intent = await store.get_rollback(deploy["id"])
            assert intent is None or intent.state == "pending", intent  # not failed at once
            if intent is not None and intent.next_attempt_at is not None:
                return intent.next_attempt_at
            await asyncio.sleep(0.05)

    next_attempt_at = await asyncio.wait_for(waiting(), 10)
    assert next_attempt_at - asked >= 59.0, next_attempt_at - asked  # not the 200 ms cap
    await asyncio.sleep(1.0)  # five times the backoff's cap: nothing more was sent
    assert len(fake_github.seen("/dispatches")) == 1
    rollback = (await agent.get(deploy["id"]))["rollback"]
    assert (rollback["state"], rollback["attempts"], rollback["last_status"]) == (
        "pending",
        1,
        403,
    ), rollback

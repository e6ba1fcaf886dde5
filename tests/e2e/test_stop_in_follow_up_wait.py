"""A stop (SIGTERM) while a `rollback.then` follow-up waits to retry leaves it at once.

Nothing of the follow-up is out in its wait (a `Retry-After`, a backoff: `call`'s sleep
between attempts): the stop hands its claim back (a `Retry-After` kept in it: the next
start sends once that is over), where it waited the wait out within its
grace (5 s of the default 8 s `shutdown_timeout`), sent the next attempt inside the stop
when the wait ended within the grace, and logged 'did not finish within 5.0 s; cut off'
when it did not. Counted at the receiver: the next attempt is made once, by the next start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import SECRET, TOKEN, rollback_then_migrations
from tests.e2e.test_replicas import Daemon
from tests.e2e.test_stop_in_rollback_wait import daemon_config, stopped_in_its_wait
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def config(workdir: Path, receiver: RollbackReceiver, follow: RollbackReceiver) -> str:
    delivery = "backoff: 100ms, max_backoff: 30s"
    return daemon_config(
        workdir, rollback_then_migrations(receiver.url, SECRET, follow.url, delivery)
    )


async def follow_ups_of(
    http: aiohttp.ClientSession, daemon: Daemon, deploy_id: str
) -> list[dict[str, Any]]:
    async with http.get(f"{daemon.url}/v1/deploys/{deploy_id}") as r:
        assert r.status == 200, await r.text()
        return list(((await r.json())["rollback"] or {}).get("then") or [])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("retry_after", [2, 30], ids=["within-the-grace", "past-it"])
async def test_a_stop_while_a_follow_up_waits_to_retry_leaves_it_to_the_next_start(
    tmp_path: Path, retry_after: int
) -> None:
    """The follow-up's receiver answers its first attempt 503 with `Retry-After`, then
    200; the rollback's takes it at once."""
    receiver = RollbackReceiver(SECRET, [])
    follow = RollbackReceiver(SECRET, [f"503:retry-after={retry_after}"], path="/then")
    await receiver.start()
    await follow.start()
    text = config(tmp_path, receiver, follow)
    daemon = Daemon(tmp_path, "first", text, None)
    restarted: Daemon | None = None
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            # stopped once its answer is read: in the wait
            deploy_id = await stopped_in_its_wait(http, daemon, follow, within=60, then=0.3)
            said = daemon.said()
            assert len(follow.attempts) == 1, follow.attempts  # none inside the stop
            assert "cut off" not in said, said
            assert "follow-up 'migrations' of rollback" in said, said
            assert "left pending to the next start" in said, said
            if retry_after > 10:
                return  # its wait outlasts the test; the hand-back is what is checked
            # the next start sends it once its wait is over (kept in its claim), once
            restarted = Daemon(tmp_path, "first", text, None)
            await restarted.ready(http)
            then: list[dict[str, Any]] = []
            for _ in range(300):
                then = await follow_ups_of(http, restarted, deploy_id)
                if then and then[0]["state"] != "pending":
                    break
                await asyncio.sleep(0.1)
            assert then == [{"name": "migrations", "state": "delivered"}], then
            assert [a.accepted for a in follow.attempts] == [False, True], follow.attempts
            # not inside the wait the receiver asked for: the stop kept it in the claim
            first, again = follow.attempts
            assert again.at >= first.at + retry_after - 0.1, (first.at, again.at)
            assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts
    finally:
        daemon.kill()
        if restarted is not None:
            restarted.kill()
        await receiver.stop()
        await follow.stop()

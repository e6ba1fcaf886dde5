"""A target that stops answering, watched in a 3 s window of 1 s rounds at the default 40
probes a round: rolled back within the window, in all its rounds.

`bench/small_windows.py` found it (latency x10 of a 50 ms service, 1 s rounds): at the
default `max_concurrency` 16 a round's 40 probes of a target slower than its round allows
went out in three waves, each probe still given its room (half the round) from when it got
a place, so the round's last wave ended about a second past its slot and the next slot was
passed over: the window ran 2 of its 3 rounds, and `failure_limit: 3` could fail none
(`inconclusive`, nothing rolled back). A probe that gets its place only after its round's
checks have ended is now not sent (the agent's limit, not the target's: no sample either
way), so a round keeps to its slot. Truth from outside: the rollback at the receiver.

The check's `timeout` is half the round: a probe now waits its own timeout, carried past
its round's end to the round it ends in (`agent.windows.carried`), so with the 2 s this
test had, the first timeouts land 2 s on, in the window's last round, and `failure_limit:
3` has one round of data to fail (`inconclusive`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import SECRET, AgentFactory, LocalTarget, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e


class HungTarget(LocalTarget):
    """Answers quickly until `hang`, then holds every request longer than a probe waits."""

    def __init__(self) -> None:
        super().__init__()
        self.hung = False

    async def health(self, request: web.Request) -> web.Response:
        if self.hung:
            await asyncio.sleep(3.0)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


@pytest.mark.timeout(90)
async def test_a_hung_target_is_rolled_back_in_a_3s_window_of_1s_rounds(
    start_agent: AgentFactory, rollback_receiver: Any
) -> None:
    target = HungTarget()
    await target.start()
    try:
        receiver: RollbackReceiver = await rollback_receiver(SECRET)
        agent = await start_agent(
            environment(
                "production",
                target.url,
                window="3s",
                interval="1s",
                probes=40,
                timeout="500ms",
                analysis="{policy: threshold, failure_limit: 3}",
                extra=f"rollback: {{url: '{receiver.url}', secret: {SECRET}}}",
            )
        )
        target.hung = True
        final = await agent.settled((await agent.register("production", "v2"))["id"])
        assert final["state"] == "rolled_back", (final["rounds"], final["verdict"])
        assert final["rounds"] == 3, final["verdict"]
        accepted = [a for a in receiver.attempts if a.accepted]
        assert [a.idempotency_key for a in accepted] == [final["id"]]
    finally:
        await target.stop()

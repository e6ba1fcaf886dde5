"""A window's first round is alone at its target: a background run of the environment in
flight when the window starts probing is cut (nothing of it stored) and the round stands
in for it. It went on beside the round (the real daemon, a window registered as it
started, 40 probes a 1 s round: 75-78 arrivals in that round), the agent's own doubled
load read as the service's, and the run, stored after the deploy, pooled into the next
baseline. Counted at the target, on the running agent."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, LocalTarget, environment
from tests.heavy import HEAVY

pytestmark = HEAVY

PROBES, ROUND_S, TIMEOUT_S = 20, 2.0, 0.5
"""A background run sends its 20 probes over 1.5 s (the round less the last one's
timeout): a window registered at its first arrival starts well within it."""


class ArrivalTarget(LocalTarget):
    """Answers ok, keeping each request's arrival time (the store's clock: wall time)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        self.first = asyncio.Event()

    async def health(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.time())
        self.first.set()
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


async def test_a_background_run_in_flight_stops_before_a_windows_first_round(
    start_agent: AgentFactory,
) -> None:
    target = ArrivalTarget()
    await target.start()
    try:
        agent = await start_agent(
            environment(
                "staging",
                target.url,
                window=f"{ROUND_S:g}s",
                interval=f"{ROUND_S:g}s",
                background_interval="60s",
                probes=PROBES,
                timeout=f"{TIMEOUT_S:g}s",
            )
        )
        await asyncio.wait_for(target.first.wait(), 30)  # the first background run began
        deploy = await agent.register("staging", "v2")
        final = await agent.settled(deploy["id"])
        store = agent.app[STORE]
        rounds = await store.rounds(deploy["id"])
        stored = await store.probe_summaries("staging", 0.0, time.time() + 60)
    finally:
        await target.stop()
    assert final["state"] == "passed", final
    first = rounds[0].started_at
    before = [a for a in target.arrivals if a < first]
    assert 0 < len(before) < PROBES, len(before)  # the run was in flight, then cut
    during = [a for a in target.arrivals if a >= first]
    # from the window's first round on, only its probes reach the target
    assert len(during) == PROBES * len(rounds), (len(during), len(rounds))
    # the cut run left nothing stored: the one run kept is the round standing in for it
    assert [s["check"] for s in rounds[0].summary.get("stand_ins", [])] == ["api-health"]
    assert [(check, at >= first) for check, at, _ in stored] == [("api-health", True)], stored

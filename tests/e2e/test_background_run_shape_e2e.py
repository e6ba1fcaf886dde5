"""The README ("How Postflight decides"): between windows each background run probes an
`http` check `probes_per_round` times, spread over one round as a round spreads them, so
the baseline has samples enough and its burstiness can be measured. On the running agent,
counted at the target: each run is `probes_per_round` requests spread over the round, the runs
`background_interval` apart, and the store keeps each as one run of that many samples."""

from __future__ import annotations

import asyncio
import itertools
import time

from aiohttp import web

from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, LocalTarget, environment
from tests.heavy import HEAVY

pytestmark = HEAVY

PROBES, ROUND_S, EVERY_S, TIMEOUT_S = 8, 1.0, 3.0, 0.2
SPAN_S = (ROUND_S - min(TIMEOUT_S, ROUND_S / 2)) * (PROBES - 1) / PROBES
"""A round's probes start evenly over the round less what the last needs to answer (its
timeout, at most half the round), as a window's round sends them: 0.7 s here."""


class ArrivalTarget(LocalTarget):
    """Answers ok, keeping each request's arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    async def health(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


def runs(arrivals: list[float], gap: float) -> list[list[float]]:
    """The arrivals grouped into runs: a new run after a pause longer than `gap`."""
    out: list[list[float]] = []
    for at in arrivals:
        if out and at - out[-1][-1] <= gap:
            out[-1].append(at)
        else:
            out.append([at])
    return out


async def test_a_background_run_is_a_rounds_probes_spread_over_a_round(
    start_agent: AgentFactory,
) -> None:
    target = ArrivalTarget()
    await target.start()
    try:
        agent = await start_agent(
            environment(
                "production",
                target.url,
                interval=f"{ROUND_S:g}s",
                background_interval=f"{EVERY_S:g}s",
                probes=PROBES,
                timeout=f"{TIMEOUT_S:g}s",
            )
        )
        await agent.stored_runs("production", 3, within=30)
        stored = await agent.app[STORE].probe_summaries("production", 0.0, time.time() + 60)
        await asyncio.sleep(0.2)
    finally:
        await target.stop()
    found = runs(target.arrivals, gap=(EVERY_S - ROUND_S) / 2)
    whole = [r for r in found[:3] if len(r) == PROBES]
    assert len(whole) == 3, [len(r) for r in found]
    for run in whole:
        span = run[-1] - run[0]
        assert SPAN_S * 0.8 <= span <= SPAN_S + 0.3, span  # spread, not sent at once
    starts = [r[0] for r in whole]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(EVERY_S * 0.7 <= g <= EVERY_S * 1.5 for g in gaps), gaps
    assert [len(summary["ok"]) for _, _, summary in stored[:3]] == [PROBES] * 3, stored

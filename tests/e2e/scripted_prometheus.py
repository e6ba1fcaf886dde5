"""A Prometheus whose window's round fetches answer as a test scripts them, and a deploy
judged with it: the threshold and provider-words tests' set-up (one rule on it, `RATIO`,
beside the checks' `probe-errors`)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.e2e.conftest import PROBE_ERRORS, AgentFactory, LocalTarget, environment

RATIO = "{name: http-5xx, source: prometheus, query: 'sum(rate(errors[1m]))', max: 0.05}"
BASELINE_PERIOD_S = 60.0
"""A query over a period this long or longer is a baseline's (the agent's: the 1 h lookback)."""


class ScriptedPrometheus(LocalTarget):
    """Prometheus answering the baseline (a series at 0) and the window's round fetches as
    `script` says, in order, its last entry every fetch after: a value (a series at it),
    `503` (down for maintenance) or `hold` (held until the fake stops). `asked` lists what
    each round fetch got: the truth counted at Prometheus."""

    def __init__(self, *script: str) -> None:
        super().__init__()
        self.script = script
        self.asked: list[str] = []
        self.never = asyncio.Event()
        """Never set: a held fetch waits for it until the fake stops."""

    async def query_range(self, request: web.Request) -> web.Response:
        start = float(request.query.get("start", "0"))
        value = "0"
        if float(request.query.get("end", "0")) - start < BASELINE_PERIOD_S:
            value = self.script[min(len(self.asked), len(self.script) - 1)]
            self.asked.append(value)
            if value == "503":
                return web.Response(status=503, text="down for maintenance")
            if value == "hold":
                await self.never.wait()
        data = {"resultType": "matrix", "result": [{"metric": {}, "values": [[start, value]]}]}
        return web.json_response({"status": "success", "data": data})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/query_range", self.query_range)


async def judged_with(
    start_agent: AgentFactory,
    target_url: str,
    prometheus: ScriptedPrometheus,
    *,
    window: str,
    analysis: str,
    budget: str,
) -> dict[str, Any]:
    """A deploy of `production` (the checks' `probe-errors` on `target_url`, `RATIO` on
    `prometheus`, one attempt a fetch within `budget`), once it ended; the fake stopped."""
    await prometheus.start()
    try:
        agent = await start_agent(
            environment(
                "production",
                target_url,
                window=window,
                analysis=analysis,
                rules=(PROBE_ERRORS, RATIO),
            ),
            providers="providers:\n  prometheus:\n"
            f"    url: {prometheus.url}\n    timeout: {budget}\n    request_timeout: {budget}\n"
            "    max_attempts: 1\n",
        )
        deploy = await agent.register("production", "v2")
        final: dict[str, Any] = await agent.settled(deploy["id"])
        return final
    finally:
        await prometheus.stop()

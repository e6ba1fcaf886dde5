"""Latencies of a few milliseconds in the daemon's words, as on-call and the pipeline read
them (the API's verdict, an alert at a json:// sink): three significant digits below 10 ms,
as below 1 ms, where they were rounded to whole ms (a bound of 2.5ms read `max 2ms`, a
1.9 ms p95 `2ms`)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import SECRET, AgentFactory, LocalTarget, environment
from tests.receivers import JsonSink, alert_titled

pytestmark = pytest.mark.e2e


class FewMsTarget(LocalTarget):
    """A health endpoint answering after 5 ms: a p95 of a few ms, past a 2.5ms bound."""

    async def health(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.005)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


def three_digits(seconds: float) -> str:
    """A duration as the judge words it: three significant digits below 10 ms."""
    ms = seconds * 1000
    return f"{ms:.3g}ms" if ms < 10 else f"{round(ms)}ms"


RULE = "{name: p95, source: checks, check: api-health, metric: latency_p95, max: 2.5ms}"


@pytest.mark.timeout(60)
async def test_a_few_ms_read_in_three_digits_in_the_verdict_and_the_alert(
    start_agent: AgentFactory, json_sink: JsonSink, rollback_receiver: Any
) -> None:
    target = FewMsTarget()
    await target.start()
    receiver = await rollback_receiver(SECRET)
    try:
        config = environment(
            "production",
            target.url,
            window="10s",
            rules=(RULE,),
            extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}, backoff: 100ms}}",
        )
        agent = await start_agent(config, f"alerting:\n  channels:\n    - url: {json_sink.url()}\n")
        deploy = await agent.register("production", "v-ms")
        final = await agent.settled(deploy["id"], within=30)
        note = await alert_titled(json_sink, "rollback requested")
    finally:
        await target.stop()
    assert final["state"] == "rolled_back", final["verdict"]
    [rule] = final["verdict"]["rules"]
    assert rule["threshold"] == "max 2.5ms", rule  # was `max 2ms`: below the value's 5ms
    observed = rule["observed"]
    said = f"latency_p95 {three_digits(observed)} > max 2.5ms"
    assert said in final["verdict"]["reason"], (observed, final["verdict"]["reason"])
    # the alert's figures in the reason's digits and form: `observed **6.2 ms**`, then
    # `observed **6.24 ms**`, beside the reason's `6.24ms` (README and contract: `250ms`)
    assert f"observed **{three_digits(observed)}**" in note.message, note.message
    assert not re.search(r"\d (ms|s)\b", note.message), note.message
    assert "max 2.5ms" in note.message and not re.search(r"\bmax 2ms", note.message), note.message

"""The store's call times in `/metrics`, as a scrape reads them: an on-call whose API
answers late, or whose rounds start late, tells a slow store from a starved agent by
`postflight_store_<kind>_seconds` (a histogram per kind of call: §5 allows no label for
it). A GET whose store read takes 1.5 s shows there, in the read histogram's top buckets;
the watch's rounds, the watcher's claims and the registration are counted in theirs; a
read held by the agent's own stalled loop does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.appkeys import STORE
from agent.metrics import STORE_CALLS
from checks.ticks import ticks
from tests.e2e.conftest import AgentFactory, LocalTarget, RunningAgent

SLOW_READ_S = 1.5
"""Past the 0.5 s bucket by 1 s: what a loaded machine stalls the test's loop meanwhile
(0.22 s of a 0.6 s read at load 30) is taken off the call's time."""


class Healthy(LocalTarget):
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)


WINDOW = """
    production:
      base_url: {url}
      window: 1500ms
      interval: 300ms
      background_interval: 1h
      probes_per_round: 2
      checks:
        - {{name: health, type: http, path: /health, timeout: 1s}}
      rules:
        - {{name: errors, source: checks, metric: error_rate, max: 0.5}}
    """


async def scraped_histograms(agent: RunningAgent) -> dict[str, dict[str, float]]:
    """Each `postflight_store_*_seconds` family's buckets (by `le`) and count, from an HTTP
    scrape of `/metrics` parsed as Prometheus parses the text format."""
    async with agent.http.get(f"{agent.url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("postflight_store_") and family.type == "histogram":
            series = found.setdefault(family.name, {})
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    series[sample.labels["le"]] = sample.value
                elif sample.name.endswith("_count"):
                    series["count"] = sample.value
    return found


async def scraped_around_a_get(
    agent: RunningAgent,
    deploy_id: str,
    monkeypatch: pytest.MonkeyPatch,
    wrap: Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]],
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """The store histograms scraped before and after one `GET /v1/deploys/{id}` whose
    SQLite `get_window` is `wrap(get_window)`, under the feed's and the timing's wrappers."""
    before = await scraped_histograms(agent)
    sqlite = cast(Any, agent.app[STORE]).wrapped.wrapped  # the feed's, then the timing's
    monkeypatch.setattr(sqlite, "get_window", wrap(sqlite.get_window))
    async with agent.http.get(f"{agent.url}/v1/deploys/{deploy_id}", headers=agent.headers) as r:
        assert r.status == 200
    return before, await scraped_histograms(agent)


@pytest.mark.timeout(60)
async def test_a_slow_store_read_shows_in_the_read_histogram_and_every_kind_is_counted(
    start_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = Healthy()
    await target.start()
    try:
        agent = await start_agent(WINDOW.format(url=target.url))
        deploy = await agent.register("production", "v1")
        await agent.settled(deploy["id"], within=30)

        def slowed(read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def slow_read(*args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(SLOW_READ_S)  # a read behind a long transaction
                return await read(*args, **kwargs)

            return slow_read

        before, after = await scraped_around_a_get(agent, deploy["id"], monkeypatch, slowed)
    finally:
        await target.stop()
    assert set(after) == {f"postflight_store_{kind}_seconds" for kind in STORE_CALLS}, after
    for name, series in before.items():
        assert series["count"] >= 1, (name, series)  # each kind was called: a window's life
    read_s = after["postflight_store_read_seconds"]
    added = {le: read_s[le] - before["postflight_store_read_seconds"][le] for le in read_s}
    # the slow GET's read, past 0.5 s (each bucket counts all below its bound)
    assert added["+Inf"] - added["0.5"] == 1, (added, before, after)


@pytest.mark.timeout(60)
async def test_a_read_held_by_the_agents_own_stalled_loop_is_not_the_stores(
    start_agent: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read answers at once, but the agent's loop is blocked 1.5 s during the call (a
    starved agent, as a soak at load 30 had it for up to 16 s): the call's time less the
    loop's stall is the store's, and it is short. Timed whole, such calls put the soak's
    store reads' p99 at 30 s, naming the store for the loop's lateness."""
    target = Healthy()
    await target.start()
    try:
        agent = await start_agent(WINDOW.format(url=target.url))
        deploy = await agent.register("production", "v1")
        await agent.settled(deploy["id"], within=30)
        ticks().lag.total()  # the heartbeat beats, as it does while probes run
        await asyncio.sleep(0.05)

        def on_a_blocked_loop(read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def read_on_a_blocked_loop(*args: Any, **kwargs: Any) -> Any:
                time.sleep(SLOW_READ_S)  # noqa: ASYNC251 (the agent's loop blocked, on purpose)
                return await read(*args, **kwargs)

            return read_on_a_blocked_loop

        before, after = await scraped_around_a_get(
            agent, deploy["id"], monkeypatch, on_a_blocked_loop
        )
    finally:
        await target.stop()
    read_s, was = after["postflight_store_read_seconds"], before["postflight_store_read_seconds"]
    assert read_s["count"] > was["count"], (before, after)
    assert read_s["0.5"] - was["0.5"] == read_s["count"] - was["count"], (before, after)

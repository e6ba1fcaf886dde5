"""Several agents on one PostgreSQL store share the windows through leases."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from agent.web.events import RECHECK_S
from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.web.sse import events


async def lease_owner(pg_url: str, deploy_id: str) -> Any:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetchval("SELECT lease_owner FROM windows WHERE id = $1", deploy_id)
    finally:
        await conn.close()


async def round_numbers(pg_url: str, deploy_id: str) -> list[int]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT number FROM rounds WHERE window_id = $1 ORDER BY number", deploy_id
        )
        return [r["number"] for r in rows]
    finally:
        await conn.close()


async def test_one_replica_watches_a_window_and_another_takes_over_when_it_stops(
    start_agent: AgentFactory, flip_target: FlipTarget, pg_url: str
) -> None:
    store = f"url: {pg_url}\n  lease: 1s"
    env = environment(
        "production",
        flip_target.url,
        window="6s",
        background_interval="1h",
        probes=3,
        rules=["{name: probe-errors, source: checks, metric: error_rate, max: 0.5}"],
    )
    first = await start_agent(env, store=store, owner="replica-a")
    second = await start_agent(env, store=store, owner="replica-b")
    deploy = await first.register("production", "v-ha")
    await first.wait_until(deploy["id"], lambda d: d["rounds"] >= 2, within=10)
    holder = await lease_owner(pg_url, deploy["id"])
    assert holder in ("replica-a", "replica-b")
    stopping, staying = (first, second) if holder == "replica-a" else (second, first)
    labels = {"environment": "production", "rule": "probe-errors", "outcome": "pass"}
    assert stopping.metric("postflight_rule_evaluations_total", **labels) >= 2
    assert staying.metric("postflight_rule_evaluations_total", **labels) == 0, (
        "two replicas watched the same window"
    )
    await stopping.stop()
    before = (await staying.get(deploy["id"]))["rounds"]
    final = await staying.settled(deploy["id"], within=20)
    assert final["state"] == "passed"
    assert final["rounds"] > before
    assert staying.metric("postflight_rule_evaluations_total", **labels) >= 1, (
        "the other replica did not take the window over"
    )
    numbers = await round_numbers(pg_url, deploy["id"])
    assert numbers == list(range(1, len(numbers) + 1)), "rounds skipped or watched twice"
    assert await lease_owner(pg_url, deploy["id"]) is None  # released when it ended


async def test_a_live_stream_on_another_replica_hears_each_round_as_it_is_stored(
    start_agent: AgentFactory, flip_target: FlipTarget, pg_url: str
) -> None:
    """The replica watching the window tells the others over PostgreSQL (LISTEN/NOTIFY):
    a stream on one of them sends each round at once, not at its next re-read."""
    store = f"url: {pg_url}"
    env = environment(
        "production", flip_target.url, window="8s", background_interval="1h", probes=3
    )
    first = await start_agent(env, store=store, owner="replica-a")
    second = await start_agent(env, store=store, owner="replica-b")
    deploy = await first.register("production", "v-live")
    await first.wait_until(deploy["id"], lambda d: d["rounds"] >= 1, within=10)
    holder = await lease_owner(pg_url, deploy["id"])
    other = second if holder == "replica-a" else first
    url = f"{other.url}/v1/deploys/{deploy['id']}/events"
    async with other.http.get(url, headers=other.headers) as response:
        stream = events(response)
        assert (await anext(stream)).name == "state"
        heard: list[int] = []
        while len(heard) < 3:  # rounds come every 300 ms; the re-read is every 5 s
            event = await asyncio.wait_for(anext(stream), RECHECK_S / 2)
            if event.name == "round":
                heard.append(event.data["round"])
    assert heard == list(range(heard[0], heard[0] + 3)), heard
    watcher = first if other is second else second
    labels = {"environment": "production", "rule": "probe-errors", "outcome": "pass"}
    assert other.metric("postflight_rule_evaluations_total", **labels) == 0, (
        "the streaming replica watched the window itself"
    )
    assert watcher.metric("postflight_rule_evaluations_total", **labels) >= 1


async def test_replicas_probe_an_environment_between_windows_once_not_once_each(
    start_agent: AgentFactory, flip_target: FlipTarget, pg_url: str
) -> None:
    """Counted at the target: a second replica on the store adds no background probes
    (each environment's are leased to one replica; before, each replica probed it, so a
    load check's runs doubled), and when the holder stops the other takes them over."""
    store = f"url: {pg_url}"
    env = environment("production", flip_target.url, background_interval="200ms", probes=5)

    async def arrivals(seconds: float) -> int:
        before = flip_target.requests
        await asyncio.sleep(seconds)
        return flip_target.requests - before

    first = await start_agent(env, store=store, owner="replica-a")
    await asyncio.sleep(0.5)
    alone = await arrivals(3.0)
    assert alone >= 30, alone  # about 75: a run of 5 probes every 200 ms
    second = await start_agent(env, store=store, owner="replica-b")
    await asyncio.sleep(0.5)
    together = await arrivals(3.0)
    assert together <= 1.4 * alone, (alone, together)  # each probing: about twice
    await first.stop()  # a clean stop gives its lease up: the other goes on at once
    await asyncio.sleep(0.5)
    after = await arrivals(3.0)
    assert after >= 0.6 * alone, (alone, after)
    await second.stop()

"""A window's first round is alone at its target whichever replica holds the background:
with two replicas on one PostgreSQL store, a window opening on one replica cuts the other
replica's background run in flight in that environment (nothing of it stored), as it
cuts its own (`test_background_yields_to_window_e2e`). Counted at the target, by replica
and by time, on two running agents."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from agent.app import WATCHER
from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, LocalTarget, environment
from tests.e2e.test_replicas import lease_owner
from tests.heavy import HEAVY

pytestmark = HEAVY

PROBES, ROUND_S, TIMEOUT_S, EVERY_S = 20, 2.0, 0.5, 3.0
"""A background run sends its 20 probes over 1.5 s (the round less the last one's
timeout), every 3 s: a window registered at a run's first arrival starts well within it."""

HEARD_WITHIN_S = 0.5
"""How soon into the window's first round the other replica's run stops at the latest, on
a loaded machine: it cut its run 8 ms after it was told of the window, 7-22 ms before that round
began; uncut, its run went on 1.2-1.4 s into it."""


class ArrivalTarget(LocalTarget):
    """Answers ok, keeping each request's arrival time (wall time, the store's clock on
    this host) and the replica that sent it (`X-Replica`)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, str]] = []

    async def health(self, request: web.Request) -> web.Response:
        self.arrivals.append((time.time(), request.headers.get("X-Replica", "?")))
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)

    def of(self, replica: str) -> list[float]:
        return [at for at, sender in self.arrivals if sender == replica]

    async def wait_for(self, replica: str, count: int, within: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.of(replica)) < count:
            assert loop.time() < deadline, f"{len(self.of(replica))} arrivals from {replica}"
            await asyncio.sleep(0.005)


def env(url: str, replica: str, every: float = EVERY_S, window: float = 2 * ROUND_S) -> str:
    """The staging environment as `replica` probes it: its probes carry `X-Replica`."""
    text = environment(
        "staging",
        url,
        window=f"{window:g}s",
        interval=f"{ROUND_S:g}s",
        background_interval=f"{every:g}s",
        probes=PROBES,
        timeout=f"{TIMEOUT_S:g}s",
    )
    check = f"timeout: {TIMEOUT_S:g}s}}"
    assert check in text
    return text.replace(check, f"timeout: {TIMEOUT_S:g}s, headers: {{X-Replica: {replica}}}}}")


async def test_a_window_on_one_replica_cuts_the_other_replicas_background_run_in_flight(
    start_agent: AgentFactory, pg_url: str
) -> None:
    target = ArrivalTarget()
    await target.start()
    store = f"url: {pg_url}"
    try:
        # B first: it holds the environment's background lease, and A probes nothing
        holder = await start_agent(env(target.url, "b"), store=store, owner="replica-b")
        # B claims no window (its claim loop waits a minute): the window is A's, as it is
        # when A is the replica the deploy was registered on and claims it first
        holder.app[WATCHER].poll_interval = 60.0
        await target.wait_for("b", 1)
        watcher = await start_agent(env(target.url, "a"), store=store, owner="replica-a")
        await target.wait_for("b", PROBES + 1)  # B's second run began
        deploy = await watcher.register("staging", "v2")
        await watcher.wait_until(deploy["id"], lambda d: d["rounds"] >= 1)
        window_owner = await lease_owner(pg_url, deploy["id"])
        final = await watcher.settled(deploy["id"])
        rounds = await watcher.app[STORE].rounds(deploy["id"])
        window = await watcher.app[STORE].get_window(deploy["id"])
        stored = await watcher.app[STORE].probe_summaries("staging", 0.0, time.time() + 60)
    finally:
        await target.stop()
    assert final["state"] == "passed", final
    assert window is not None
    assert window_owner == "replica-a"
    assert target.of("a") and len(target.of("b")) >= PROBES + 1
    assert window.ended_at is not None
    first, second = rounds[0].started_at, rounds[1].started_at
    in_round = [at for at, _ in target.arrivals if first <= at < second]
    from_b = [round(at - first, 3) for at in target.of("b") if at >= first]
    stand_ins = {(s["check"], s["at"]) for r in rounds for s in r.summary.get("stand_ins", [])}
    after_deploy = [
        round(at - first, 3)
        for check, at, _ in stored
        if window.deployed_at <= at <= window.ended_at and (check, at) not in stand_ins
    ]
    print(f"round 1: {len(in_round)} arrivals; B's from round 1 on (s): {from_b}")
    print(f"B's runs stored after the deploy (s from round 1): {after_deploy}")
    # B stops as it hears of the window (8 ms after A tells, before A's first round
    # here); before, its run's other 17-19 probes went on beside the round, to 1.2-1.4 s
    assert all(at < HEARD_WITHIN_S for at in from_b), from_b
    assert len(in_round) == PROBES + len(from_b), (len(in_round), from_b)
    # and the cut run left nothing stored after the deploy (the next deploy's baseline);
    # before, it was stored at its end, 1.2-1.4 s into the round
    assert after_deploy == [], after_deploy

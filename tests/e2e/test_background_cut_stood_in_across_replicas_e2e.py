"""A background run another replica cut because a window opened here is stood in for by
that window's rounds, as a run this replica cut is: counted at the store, with two
replicas on PostgreSQL (the set-up of `test_background_yields_across_replicas_e2e`).
Before, the cut run was lost: the window stood in for none, and the next deploy's
baseline pooled one run fewer for each window that cut another replica's run."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agent.app import WATCHER
from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory
from tests.e2e.test_background_yields_across_replicas_e2e import (
    EVERY_S,
    PROBES,
    ROUND_S,
    ArrivalTarget,
    env,
)
from tests.heavy import HEAVY

pytestmark = HEAVY

A_EVERY_S = 600.0
"""A's: none falls in its window, so any run its rounds stand in for is the one cut."""


async def test_a_run_cut_on_another_replica_is_stood_in_for_by_the_windows_rounds(
    start_agent: AgentFactory, pg_url: str
) -> None:
    target = ArrivalTarget()
    await target.start()
    store = f"url: {pg_url}"
    try:
        # B holds the environment's background lease and claims no window (a minute's
        # claim loop): the window is A's, registered while B's second run is in flight
        holder = await start_agent(env(target.url, "b", EVERY_S), store=store, owner="replica-b")
        holder.app[WATCHER].poll_interval = 60.0
        await target.wait_for("b", 1)
        watcher = await start_agent(env(target.url, "a", A_EVERY_S), store=store, owner="replica-a")
        await target.wait_for("b", PROBES + 1)  # B's second run began
        deploy = await watcher.register("staging", "v2")
        final = await watcher.settled(deploy["id"])
        rounds = await watcher.app[STORE].rounds(deploy["id"])
        window = await watcher.app[STORE].get_window(deploy["id"])
        stored = await watcher.app[STORE].probe_summaries("staging", 0.0, time.time() + 60)
    finally:
        await target.stop()
    assert final["state"] == "passed", final
    assert window is not None and window.ended_at is not None
    cut = len(target.of("b")) % PROBES  # B's second run, cut short of its 20 probes
    assert 0 < cut < PROBES, len(target.of("b"))
    stand_ins = [(s["check"], s["at"]) for r in rounds for s in r.summary.get("stand_ins", [])]
    in_window = [
        (check, at) for check, at, _ in stored if window.deployed_at <= at <= window.ended_at
    ]
    print(f"stood in for {stand_ins}; runs stored in the window {in_window}")
    # the one run cut (A's own slots fall outside its window): stood in for by a round
    # and stored with the window's end; before, none ([] and [])
    assert len(stand_ins) == 1, stand_ins
    assert in_window == stand_ins, (in_window, stand_ins)


async def test_a_cut_run_no_round_took_is_run_as_the_window_ends(
    start_agent: AgentFactory, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A window of one round, whose replica's own slots (every second) fall in it too: it
    owes B's cut run and its own slots, its one round stands in for one, and one more is
    run as it ends, stored at the store beside the stand-in. Before, the slot was taken
    as the cut run (one owed per check) and nothing was run as the window ended."""
    caplog.set_level(logging.INFO, logger="postflight.probing")
    target = ArrivalTarget()
    await target.start()
    store = f"url: {pg_url}"
    try:
        holder = await start_agent(env(target.url, "b", EVERY_S), store=store, owner="replica-b")
        holder.app[WATCHER].poll_interval = 60.0
        await target.wait_for("b", 1)
        watcher = await start_agent(
            env(target.url, "a", 1.0, window=ROUND_S), store=store, owner="replica-a"
        )
        await target.wait_for("b", PROBES + 1)  # B's second run began
        deploy = await watcher.register("staging", "v2")
        final = await watcher.settled(deploy["id"])
        window = await watcher.app[STORE].get_window(deploy["id"])
        assert window is not None and window.ended_at is not None
        await target.wait_for("a", PROBES + PROBES)  # its round's, then the run at its end
        rounds = await watcher.app[STORE].rounds(deploy["id"])
        for _ in range(100):  # the run at the end, stored at its own end
            stored = await watcher.app[STORE].probe_summaries("staging", 0.0, time.time() + 60)
            after = [at for _, at, _ in stored if window.ended_at < at]
            if after:
                break
            await asyncio.sleep(0.05)
    finally:
        await target.stop()
    assert final["state"] == "passed", final
    stand_ins = [s["at"] for r in rounds for s in r.summary.get("stand_ins", [])]
    ran = [r.getMessage() for r in caplog.records if "none of its rounds" in r.getMessage()]
    print(f"stood in for {stand_ins}; run at the end: {ran}; stored after it: {after}")
    assert len(stand_ins) == 1, stand_ins
    assert len(ran) == 1, ran
    assert after and after[0] - window.ended_at < ROUND_S + 1.0, (after, window.ended_at)

"""A background run another replica cut because a window opened here is stood in for by
that window's rounds, as a run this replica cut is: counted at the store, with two
replicas on PostgreSQL (the set-up of `test_background_yields_across_replicas_e2e`).
Before, the cut run was lost: the window stood in for none, and the next deploy's
baseline pooled one run fewer for each window that cut another replica's run."""

from __future__ import annotations

import time

from agent.app import WATCHER
from agent.appkeys import STORE
from tests.e2e.conftest import AgentFactory, environment
from tests.e2e.test_background_yields_across_replicas_e2e import (
    PROBES,
    ROUND_S,
    TIMEOUT_S,
    ArrivalTarget,
)
from tests.heavy import HEAVY

pytestmark = HEAVY

EVERY_S = 3.0
"""B's background runs (`test_background_yields_across_replicas_e2e`'s)."""

A_EVERY_S = 600.0
"""A's: none falls in its window, so any run its rounds stand in for is the one cut."""


def env(url: str, replica: str, every: float) -> str:
    text = environment(
        "staging",
        url,
        window=f"{2 * ROUND_S:g}s",
        interval=f"{ROUND_S:g}s",
        background_interval=f"{every:g}s",
        probes=PROBES,
        timeout=f"{TIMEOUT_S:g}s",
    )
    check = f"timeout: {TIMEOUT_S:g}s}}"
    assert check in text
    return text.replace(check, f"timeout: {TIMEOUT_S:g}s, headers: {{X-Replica: {replica}}}}}")


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

"""A window's rounds stand in for the background runs it paused, in the next baseline.

Background probing of an environment pauses while a window probes it. Its rounds are
runs of the same checks (`probes_per_round` probes, a load check's whole run) of the
release that stays live once the window passes, so the next deploy's baseline pools
them where the paused runs would have been; a failed or cancelled window's are not.
Read as the next deploy's baseline reads them (`baseline_runs`) from the agent's store.
"""

from __future__ import annotations

import asyncio
import time

from agent.appkeys import SETTINGS, STORE
from agent.records import DeployWindow
from agent.store.base import Store
from agent.windows.foresight import baseline_runs
from tests.e2e.conftest import AgentFactory, FlipTarget, RunningAgent, environment

BACKGROUND_S = 0.2
PROBES = 5
STOOD_IN = 3
"""Stand-ins stored before a restart, waited for."""


def setup() -> str:
    return environment(
        "production",
        "{url}",
        window="2s",
        interval="200ms",
        background_interval=f"{int(BACKGROUND_S * 1000)}ms",
        probes=PROBES,
        extra="lookback: 1m",
    )


async def probing_since(store: Store, window: DeployWindow) -> float:
    """When the window began probing: its first round's start (its end, if it made none).
    Background runs go on until the agent takes the window up, after its deploy: one begun
    and stored meanwhile probed the new release alone, before any round, and is pooled as
    any other (or left out, when that release fails); a fixed 0.25 s past the deploy was
    the load's, not the agent's (a window taken up 0.28 s after its deploy at load 21: a run
    stored at 0.268 s was counted as a stand-in that was not, [5, 5, 5, 5] for [5, 5, 5]).
    From the first round on, background runs pause: every run stored is a round's."""
    rounds = await store.rounds(window.id)
    if rounds:
        return min(r.started_at for r in rounds)
    assert window.ended_at is not None, "a window with no round yet"
    return window.ended_at


async def span(agent: RunningAgent, window_id: str) -> tuple[float, float]:
    """The window's span from its first round (`probing_since`) to its end."""
    window = await agent.app[STORE].get_window(window_id)
    assert isinstance(window, DeployWindow) and window.ended_at is not None
    return await probing_since(agent.app[STORE], window), window.ended_at + 0.001


async def pooled_within(agent: RunningAgent, window_id: str) -> list[int]:
    """The runs the next deploy's baseline pools from the window's span, by size."""
    env = agent.app[SETTINGS].environments["production"]
    pooled = await baseline_runs(agent.app[STORE], "production", env, *await span(agent, window_id))
    return [len(run) for run in pooled.periods]


async def stored_within(agent: RunningAgent, window_id: str) -> list[str]:
    """The runs stored in the window's span, pooled or not, by check."""
    rows = await agent.app[STORE].probe_summaries("production", *await span(agent, window_id))
    return [check for check, _at, _summary in rows]


async def kept_per_round(agent: RunningAgent, window_id: str) -> list[int]:
    """Each stand-in's kept probes as its round stored it, in the order they were made."""
    rounds = await agent.app[STORE].rounds(window_id)
    made = sorted(
        (item["at"], len(item["ok"])) for r in rounds for item in r.summary.get("stand_ins", [])
    )
    return [size for _at, size in made]


async def rounds_stood_in(agent: RunningAgent, window_id: str) -> tuple[float, float, list[int]]:
    """Wait until the window's rounds have stored `STOOD_IN` stand-ins (each with its
    round): the start and end of the span they lie in and their sizes, what this agent
    made before a stop whatever the machine's pace (a fixed 1.2 s held fewer on a loaded
    one). A size is the round's kept probes: a probe dropped as the agent's lag is not in
    it (4 of 5 at load ~20), as in a background run."""
    store = agent.app[STORE]
    window = await store.get_window(window_id)
    assert isinstance(window, DeployWindow)
    deadline = time.monotonic() + 30
    while True:
        made = sorted(
            (item["at"], len(item["ok"]))
            for record in await store.rounds(window_id)
            for item in record.summary.get("stand_ins", [])
        )
        if len(made) >= STOOD_IN:
            seen = await store.get_window(window_id)
            assert isinstance(seen, DeployWindow) and seen.ended_at is None, "no restart mid-window"
            since = await probing_since(store, window)
            return since, made[-1][0] + 1e-6, [size for _at, size in made]
        assert time.monotonic() < deadline, f"{len(made)} stand-ins stored with the rounds"
        await asyncio.sleep(0.05)


async def test_a_passed_windows_rounds_stand_in_for_the_runs_it_paused(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(setup().replace("{url}", flip_target.url))
    await asyncio.sleep(1.0)  # background runs before the deploy
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    sizes = await pooled_within(agent, deploy["id"])
    # a 2 s window pauses about 10 runs of 200 ms; each round that stood in is one run of
    # `probes_per_round` probes (a slot or two may fall between rounds, or on a late one),
    # less those dropped as the agent's lag: the round's kept probes (3 of 5 in one round at
    # load 25-33), as `rounds_stood_in` reads them
    assert len(sizes) >= 5, sizes
    assert sizes == await kept_per_round(agent, deploy["id"]), sizes
    assert all(0 < n <= PROBES for n in sizes) and PROBES in sizes, sizes


async def test_a_failed_windows_rounds_are_not_kept(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(setup().replace("{url}", flip_target.url))
    await asyncio.sleep(1.0)
    flip_target.bad = True
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "failed", final["verdict"]
    # from its first round on the background pauses (a run in flight is cut): a window's
    # rounds that stood in would be about ten
    assert len(await stored_within(agent, deploy["id"])) <= 1


async def test_a_cancelled_windows_rounds_are_not_kept(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    agent = await start_agent(setup().replace("{url}", flip_target.url))
    await asyncio.sleep(1.0)
    deploy = await agent.register("production", "v2")
    await asyncio.sleep(1.0)  # rounds stood in for runs meanwhile
    await agent.cancel(deploy["id"])
    # from its first round on the background pauses (a run in flight is cut): a window's
    # rounds that stood in would be about ten
    assert len(await stored_within(agent, deploy["id"])) <= 1


async def test_each_check_stands_in_as_a_run_of_its_own(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """A round that stands in for an http and a load run at once stores two runs, one
    check each, as the background makes them: a baseline pools runs by their instant."""
    load = "{name: feed, type: load, path: /api/health, rate: 50/s, duration: 100ms, warmup: 0s}"
    text = setup().replace("{url}", flip_target.url).replace("lookback: 1m", "lookback: 3s")
    text = text.replace("  checks:\n", f"  checks:\n    - {load}\n")
    agent = await start_agent(text)
    await asyncio.sleep(1.0)
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    env = agent.app[SETTINGS].environments["production"]
    pooled = await baseline_runs(
        agent.app[STORE], "production", env, *await span(agent, deploy["id"])
    )
    checks = [{s.check for s in run} for run in pooled.periods]
    assert {"feed"} in checks and {"api-health"} in checks, checks  # a load slot every 0.5 s
    assert all(len(c) == 1 for c in checks), checks


async def test_stand_ins_made_before_a_restart_are_kept_by_the_watch_that_resumes(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """Each round's stand-ins are stored with the round: the agent that resumes the window
    keeps those of the rounds before its stop (they were lost with the first agent's
    memory: the baseline had a gap where its rounds had stood in)."""
    text = setup().replace("{url}", flip_target.url).replace("window: 2s", "window: 3s")
    assert "window: 3s" in text, text
    first = await start_agent(text)
    await first.stored_runs("production", 3)
    deploy = await first.register("production", "v2")
    since, stopped_at, made = await rounds_stood_in(first, deploy["id"])
    await first.stop()
    second = await start_agent(text)
    final = await second.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    window = await second.app[STORE].get_window(deploy["id"])
    assert isinstance(window, DeployWindow)
    env = second.app[SETTINGS].environments["production"]
    before_stop = await baseline_runs(second.app[STORE], "production", env, since, stopped_at)
    sizes = [len(run) for run in before_stop.periods]
    assert sizes == made, sizes  # the first agent's rounds, kept by the second
    assert all(0 < n <= PROBES for n in sizes), sizes  # one round's run each


async def test_stand_ins_made_before_a_restart_keep_the_fingerprint_they_probed_with(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """A restart (or a takeover by a replica) is how a changed check takes effect. The
    rounds before it probed the check as it was: their stand-ins are stored with that
    definition's fingerprint, so the new definition's baseline does not pool them (they
    were stored with the resuming agent's fingerprint, as runs of a check they never ran)."""
    text = setup().replace("{url}", flip_target.url).replace("window: 2s", "window: 3s")
    changed = text.replace("timeout: 1s", "timeout: 2s")
    assert "window: 3s" in text and changed != text, text
    first = await start_agent(text)
    await first.stored_runs("production", 3)
    deploy = await first.register("production", "v2")
    since, stopped_at, made = await rounds_stood_in(first, deploy["id"])
    old_env = first.app[SETTINGS].environments["production"]
    await first.stop()
    second = await start_agent(changed)
    final = await second.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final["verdict"]
    window = await second.app[STORE].get_window(deploy["id"])
    assert isinstance(window, DeployWindow)
    before_stop = (since, stopped_at)
    new_env = second.app[SETTINGS].environments["production"]
    as_changed = await baseline_runs(second.app[STORE], "production", new_env, *before_stop)
    assert as_changed.periods == [], [len(run) for run in as_changed.periods]
    as_probed = await baseline_runs(second.app[STORE], "production", old_env, *before_stop)
    sizes = [len(run) for run in as_probed.periods]
    assert sizes == made, sizes  # the first agent's rounds, kept as what they probed
    assert all(0 < n <= PROBES for n in sizes), sizes  # one round's run each

"""A clean stop hands its windows' leases back: the next agent under another replica id
(a new pod of a rolling update) watches them from its first sweep, where it waited
`store.lease` for each. Through the real daemon, counted at a real receiver."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from agent.appkeys import STORE
from agent.store.postgres import PostgresStore
from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, RunningAgent, environment
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

LEASE_S = 30.0
"""`store.lease`'s default: what the next agent waited for each window."""


async def round_starts(agent: RunningAgent, deploy_id: str) -> list[tuple[int, float]]:
    return [(r.number, r.started_at) for r in await agent.app[STORE].rounds(deploy_id)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_stopped_agents_window_is_watched_at_once_by_an_agent_of_another_id(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    rollback_receiver: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    """Agent A watches a window and stops cleanly mid-window; agent B (another replica id:
    already running beside it on PostgreSQL, started after the stop on SQLite, which one
    agent holds at a time) takes the window at its next sweep, not after A's 30 s lease:
    the stored rounds go on without a lease's gap, in order, none twice, and the failing
    release B then sees is rolled back once."""
    if backend == "postgresql":
        url = await request.getfixturevalue("pg_cluster").create_database()
    else:
        url = f"sqlite:///{tmp_path / 'postflight.db'}"
    store = f"url: {url}\n  lease: {LEASE_S:g}s"
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production",
        flip_target.url,
        window="40s",
        interval="500ms",
        background_interval="1h",
        extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}}}",
    )
    server = "shutdown_timeout: 4s"
    first = await start_agent(env, store=store, server=server, owner="replica-a")
    deploy = await first.register("production", "v2")
    await first.rounds(deploy["id"], at_least=3, within=20)
    second = None
    if backend == "postgresql":
        second = await start_agent(env, store=store, server=server, owner="replica-b")
        await asyncio.sleep(0.5)  # its sweeps run: A's lease is A's
    held = len(await round_starts(first, deploy["id"]))
    await first.stop()
    if second is None:
        second = await start_agent(env, store=store, server=server, owner="replica-b")

    # at its next sweep (0.1 s here), where it waited out A's lease (30 s)
    await second.rounds(deploy["id"], at_least=held + 2, within=LEASE_S / 3)
    flip_target.bad = True
    final = await second.settled(deploy["id"], within=30)
    assert final["state"] == "rolled_back", final
    assert [a.accepted for a in receiver.attempts] == [True], receiver.attempts

    rounds = await round_starts(second, deploy["id"])
    numbers = [n for n, _ in rounds]
    assert numbers == list(range(1, len(numbers) + 1)), "rounds skipped or stored twice"
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(rounds)]
    assert max(gaps) < LEASE_S / 3, gaps


@pytest.mark.timeout(120)
async def test_a_round_being_stored_at_the_stop_is_stored_before_its_lease_is_handed_back(
    start_agent: AgentFactory,
    flip_target: FlipTarget,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stop comes while A's round is being stored (a slow commit). A hands the window
    back only once that write is done: handed back at once, B took the window while the
    write waited, and A's round was refused and made again by B (its own start, stored)."""
    record_round = PostgresStore.record_round
    slow = asyncio.Event()
    writing: list[tuple[int, float]] = []

    async def slow_round(self: PostgresStore, record: Any, *args: Any, **kwargs: Any) -> Any:
        if slow.is_set() and not writing:
            writing.append((record.number, record.started_at))
            await asyncio.sleep(1.0)  # within the drain's grace (4 s - 3 s, at least 1 s)
        return await record_round(self, record, *args, **kwargs)

    monkeypatch.setattr(PostgresStore, "record_round", slow_round)
    env = environment(
        "production", flip_target.url, window="30s", interval="500ms", background_interval="1h"
    )
    store = f"url: {pg_url}\n  lease: {LEASE_S:g}s"
    server = "shutdown_timeout: 5s"
    first = await start_agent(env, store=store, server=server, owner="replica-a")
    deploy = await first.register("production", "v2")
    await first.rounds(deploy["id"], at_least=2, within=20)
    second = await start_agent(env, store=store, server=server, owner="replica-b")
    slow.set()
    for _ in range(100):  # A's next round is being written
        if writing:
            break
        await asyncio.sleep(0.02)
    assert writing
    await first.stop()
    number, started_at = writing[0]
    await second.rounds(deploy["id"], at_least=number + 2, within=LEASE_S / 3)
    rounds = dict(await round_starts(second, deploy["id"]))
    assert rounds[number] == started_at, "the round A was storing was refused"
    assert sorted(rounds) == list(range(1, len(rounds) + 1))

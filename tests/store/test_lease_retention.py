"""Background leases of environments no replica probes any more are deleted (retention),
and no live lease ever is, whichever replica's config still has its environment.

A lease whose holder crashed (no clean stop gave it up), for an environment then removed
from the config, stayed in `background_leases` for good: nothing takes or releases it."""

from __future__ import annotations

import asyncio

from aiohttp import web

from agent.app import build_app
from agent.retention import LEASE_GRACE_S, StorePruner
from agent.settings_file import load_settings_text
from agent.store.base import Store
from agent.store.postgres import PostgresStore
from tests.store.peek import rows

NOW = 10_000.0


async def leases(store: Store) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in await rows(
            store, "SELECT environment, owner FROM background_leases ORDER BY environment"
        )
    ]


async def test_lapsed_leases_go_and_live_ones_stay_during_a_rolling_config_change(
    store: Store,
) -> None:
    """Replica `new` runs a config without `staging` and `gone`; replica `old` still
    probes `staging` (its lease live, renewed each slot). `gone`'s holder crashed long
    ago. `new`'s retention pass deletes `gone`'s lease only; `old` keeps `staging`."""
    assert await store.take_background("gone", "crashed", 1_000.0, 1_060.0)
    assert await store.take_background("staging", "old", NOW - 10, NOW + 50)
    assert await store.take_background("production", "new", NOW - 70, NOW - 10)  # just lapsed
    pruner = StorePruner(store, rounds_s=1e9, probe_summaries_s=1e9, clock=lambda: NOW)
    pruned = await pruner.prune_once()
    assert await leases(store) == [("production", "new"), ("staging", "old")]
    assert pruned == (0, 0, 1, 0, 0, 0)
    # the live lease is still old's: new cannot take it, old renews it
    assert not await store.take_background("staging", "new", NOW, NOW + 60)
    assert await store.take_background("staging", "old", NOW + 20, NOW + 80)
    # once production's lapse is past the grace, it goes too: as good as none, so
    # whoever probes production next takes it afresh
    later = StorePruner(
        store, rounds_s=1e9, probe_summaries_s=1e9, clock=lambda: NOW - 10 + LEASE_GRACE_S + 1
    )
    pruned = await later.prune_once()
    assert await leases(store) == [("staging", "old")]
    assert pruned.background_leases == 1
    assert await store.take_background("production", "old", NOW + 60, NOW + 120)


CONFIG = """
server: {{api_tokens: [tok-1234567890abcdef]}}
store: {{url: "{url}"}}
environments:
  production: {{base_url: "http://127.0.0.1:9"}}
"""


async def test_the_daemon_deletes_a_removed_environments_lapsed_lease(pg_url: str) -> None:
    """As the daemon runs it, on PostgreSQL (the store whose replicas lease background
    probing): its retention pass at start deletes the lapsed lease of `gone` (removed
    from the config after its holder crashed), not another replica's live `staging`."""
    seed = PostgresStore(pg_url)
    await seed.open()
    try:
        assert await seed.take_background("gone", "crashed", 1_000.0, 1_060.0)
        assert await seed.take_background("staging", "other", NOW, NOW + 600)
    finally:
        await seed.close()
    app = build_app(
        load_settings_text(CONFIG.format(url=pg_url)),
        clock=lambda: NOW,
        background_probing=False,
        owner="replica-a",
    )
    runner = web.AppRunner(app)
    await runner.setup()  # the cleanup contexts start: the first pass runs at once
    store = PostgresStore(pg_url)  # a connection of the test's own (`peek.rows`)
    try:
        for _ in range(500):
            if [env for env, _ in await leases(store)] == ["staging"]:
                break
            await asyncio.sleep(0.02)
        assert await leases(store) == [("staging", "other")]
    finally:
        await runner.cleanup()

"""`vercel.previous` for a Vercel event that names none (contract §7: the previous
production deployment is kept on the window's labels): found in our own windows, and
never the event's own deployment."""

from __future__ import annotations

from agent.api.hooks import previous_vercel_deployment
from agent.records import WindowState
from agent.store.sqlite import SqliteStore
from tests.rollback.support import DEPLOYED_AT, make_window


async def vercel_window(
    store: SqliteStore, n: int, deployment: str, state: WindowState, **labels: str
) -> None:
    window_id = f"dep_01JDPREV{n:018d}"
    at = DEPLOYED_AT + 60 * n
    labels = {"vercel.deployment": deployment, **labels}
    window = make_window(window_id, state=state, labels=labels, deployed_at=at, created_at=at)
    await store.create_window(window)


async def test_the_newest_earlier_deployment_or_the_one_a_rollback_went_back_to(
    store: SqliteStore,
) -> None:
    await vercel_window(store, 1, "dpl_1", "passed")
    second = {"vercel.deployment": "dpl_2"}
    assert await previous_vercel_deployment(store, "production", second) == "dpl_1"
    await vercel_window(store, 2, "dpl_2", "rolled_back", **{"vercel.previous": "dpl_1"})
    third = {"vercel.deployment": "dpl_3"}
    assert await previous_vercel_deployment(store, "production", third) == "dpl_1"


async def test_a_deployment_is_never_its_own_previous(store: SqliteStore) -> None:
    """dpl_2 was rolled back to dpl_1; an event for dpl_1 again (promoted once more) got
    `vercel.previous: dpl_1` from dpl_2's window on old code: a rollback to itself. The
    deployment production served before dpl_1's first window is the one to go back to."""
    await vercel_window(store, 0, "dpl_0", "passed")
    await vercel_window(store, 1, "dpl_1", "passed")
    await vercel_window(store, 2, "dpl_2", "rolled_back", **{"vercel.previous": "dpl_1"})
    labels = {"vercel.deployment": "dpl_1"}
    assert await previous_vercel_deployment(store, "production", labels) == "dpl_0"

"""`vercel.previous` for a Vercel event that names none (contract §7: the previous
production deployment is kept on the window's labels), and `previous_version` for any
deploy event (a GitHub rollback workflow's input): found in our own windows, and never
the event's own deployment or version."""

from __future__ import annotations

from agent.api.hooks import previous_vercel_deployment, previous_version
from agent.records import DeployWindow, WindowState
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


async def recent(store: SqliteStore) -> list[DeployWindow]:
    return (await store.list_windows(environment="production", limit=20)).items


async def test_the_newest_earlier_deployment_or_the_one_a_rollback_went_back_to(
    store: SqliteStore,
) -> None:
    await vercel_window(store, 1, "dpl_1", "passed")
    second = {"vercel.deployment": "dpl_2"}
    assert previous_vercel_deployment(await recent(store), second) == "dpl_1"
    await vercel_window(store, 2, "dpl_2", "rolled_back", **{"vercel.previous": "dpl_1"})
    third = {"vercel.deployment": "dpl_3"}
    assert previous_vercel_deployment(await recent(store), third) == "dpl_1"


async def test_a_deployment_is_never_its_own_previous(store: SqliteStore) -> None:
    """dpl_2 was rolled back to dpl_1; an event for dpl_1 again (promoted once more) got
    `vercel.previous: dpl_1` from dpl_2's window on old code: a rollback to itself. The
    deployment production served before dpl_1's first window is the one to go back to."""
    await vercel_window(store, 0, "dpl_0", "passed")
    await vercel_window(store, 1, "dpl_1", "passed")
    await vercel_window(store, 2, "dpl_2", "rolled_back", **{"vercel.previous": "dpl_1"})
    labels = {"vercel.deployment": "dpl_1"}
    assert previous_vercel_deployment(await recent(store), labels) == "dpl_0"


async def version_window(
    store: SqliteStore, n: int, version: str, state: WindowState, previous: str | None = None
) -> None:
    at = DEPLOYED_AT + 60 * n
    window = make_window(
        f"dep_01JDVERS{n:018d}",
        state=state,
        deployed_at=at,
        created_at=at,
        version=version,
        previous_version=previous,
    )
    await store.create_window(window)


async def test_a_deploy_events_previous_version_is_what_the_environment_served_before(
    store: SqliteStore,
) -> None:
    """A deploy event names no previous version: the GitHub rollback workflow was given
    `previous_version: ""`. It is the version of the environment's newest earlier window,
    or what a rolled-back one went back to; never the event's own version."""
    assert previous_version(await recent(store), "v1") is None  # a first deploy
    await version_window(store, 1, "v1", "passed")
    assert previous_version(await recent(store), "v2") == "v1"
    await version_window(store, 2, "v2", "rolled_back", previous="v1")
    assert previous_version(await recent(store), "v3") == "v1"  # v2 went back to v1
    # v1 deployed again after v2 went back to it: nothing served before v1's first window
    assert previous_version(await recent(store), "v1") is None
    await version_window(store, 3, "v3", "superseded", previous="v1")
    assert previous_version(await recent(store), "v4") == "v3"  # it served until replaced

"""`Store.add_rollback` (a manual rollback, contract §7) on SQLite and PostgreSQL: only
for a window that ended passed, failed or inconclusive, and only once."""

from __future__ import annotations

import pytest

from agent.records import DeployWindow, RollbackIntent, WindowState
from agent.store.base import AlertClaim, Store


def window(wid: str) -> DeployWindow:
    return DeployWindow(wid, "production", "v1", "v0", None, {}, "watching", 100.0, 160.0, 100.0)


def intent(wid: str) -> RollbackIntent:
    return RollbackIntent(
        window_id=wid, state="pending", body='{"event":"rollback"}', requested_at=120.0
    )


@pytest.mark.parametrize("ended", ["passed", "failed", "inconclusive"])
async def test_an_ended_window_takes_one_manual_rollback(store: Store, ended: WindowState) -> None:
    await store.create_window(window("dep_1"))
    assert await store.finish_window("dep_1", ended, None, 110.0)
    assert await store.add_rollback(intent("dep_1"))
    assert not await store.add_rollback(intent("dep_1"))  # the second is refused
    stored = await store.get_rollback("dep_1")
    assert stored is not None and (stored.state, stored.attempts) == ("pending", 0)
    assert [i.window_id for i in await store.pending_rollbacks()] == ["dep_1"]


async def test_not_for_watching_cancelled_superseded_or_unknown_windows(store: Store) -> None:
    await store.create_window(window("dep_1"))
    assert not await store.add_rollback(intent("dep_1"))  # watching: finish_window's job
    await store.cancel_window("dep_1", 105.0)
    assert not await store.add_rollback(intent("dep_1"))
    await store.create_window(window("dep_2"))
    await store.create_window(window("dep_3"))  # supersedes dep_2
    assert not await store.add_rollback(intent("dep_2"))
    assert not await store.add_rollback(intent("dep_nope"))
    assert await store.get_rollback("dep_1") is None


async def test_its_alert_is_claimed_with_it_or_not_at_all(store: Store) -> None:
    """A manual rollback's `rollback requested` is claimed in the intent's transaction: a
    crash just after the commit leaves it for `WindowAlerts.recover`; a refused rollback
    claims nothing."""
    await store.create_window(window("dep_1"))
    assert await store.finish_window("dep_1", "passed", None, 110.0)
    claims = [AlertClaim("rollback_requested", '{"alert": {}}')]
    assert await store.add_rollback(intent("dep_1"), 120.0, claims)
    listed = await store.unsettled_alerts(claimed_before=121.0)
    assert [(a.window_id, a.event, a.claimed_at, a.payload) for a in listed] == [
        ("dep_1", "rollback_requested", 120.0, '{"alert": {}}')
    ]
    await store.create_window(window("dep_2"))  # watching: refused, nothing claimed
    assert not await store.add_rollback(intent("dep_2"), 120.0, [AlertClaim("x", "{}")])
    assert await store.alert_events("dep_2") == {}

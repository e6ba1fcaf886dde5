"""The deploy object as stored, for every place that sends it: `GET /v1/deploys/{id}`
and the event stream's `state` events (contract §8: their data is the deploy object).
The stream's reader once rendered it itself and left out the rollback's follow-ups."""

from __future__ import annotations

from typing import Any

from agent.api.models import deploy_object
from agent.integrations.followups import follow_up_states
from agent.records import DeployWindow, FollowUpState, RollbackIntent
from agent.store.base import Store


async def follow_ups(
    store: Store, window_id: str, rollback: RollbackIntent | None
) -> dict[str, FollowUpState] | None:
    """The `rollback.then` follow-ups and how each went; None before the rollback is
    delivered (none is sent before)."""
    if rollback is None or rollback.state != "delivered":
        return None
    return follow_up_states(await store.alert_events(window_id))


async def shown_deploy(
    store: Store,
    window: DeployWindow,
    rollback: RollbackIntent | None,
    *,
    page: str | None,
    now: float | None,
) -> dict[str, Any]:
    """The deploy object of `window` and the `rollback` read with it (its follow-ups read
    here): one code path for the API's answer and the stream's events."""
    then = await follow_ups(store, window.id, rollback)
    return deploy_object(window, rollback, then, page=page, now=now)

"""The deploy object as stored, for every place that sends it: `GET /v1/deploys/{id}`
and the event stream's `state` events (contract §8: their data is the deploy object).
The stream's reader once rendered it itself and left out the rollback's follow-ups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.api.models import deploy_object
from agent.integrations.followups import follow_up_states
from agent.records import DeployWindow, FollowUpState, RollbackIntent
from agent.settings import Settings
from agent.store.base import Store


def configured_follow_ups(settings: Settings, environment: str) -> tuple[str, ...]:
    """The names of `environment`'s `rollback.then` follow-ups, in their order."""
    env = settings.environments.get(environment)
    if env is None or env.rollback is None:
        return ()
    return tuple(follow.name for follow in env.rollback.then)


async def follow_ups(
    store: Store, window_id: str, rollback: RollbackIntent | None, configured: Sequence[str]
) -> dict[str, FollowUpState] | None:
    """The `rollback.then` follow-ups and how each went; None before the rollback is
    delivered (none is sent before). The `configured` ones come first, in their order,
    one not begun yet `pending` (to be sent): the store knew only those claimed, and
    the ones after a follow-up under way were not shown at all."""
    if rollback is None or rollback.state != "delivered":
        return None
    states = follow_up_states(await store.alert_events(window_id))
    ordered: dict[str, FollowUpState] = {n: states.pop(n, "pending") for n in configured}
    return {**ordered, **states}  # then any no longer configured, as stored


async def shown_deploy(
    store: Store,
    window: DeployWindow,
    rollback: RollbackIntent | None,
    *,
    page: str | None,
    now: float | None,
    settings: Settings,
) -> dict[str, Any]:
    """The deploy object of `window` and the `rollback` read with it (its follow-ups read
    here, `settings` naming those configured): one code path for the API's answer and
    the stream's events."""
    configured = configured_follow_ups(settings, window.environment)
    then = await follow_ups(store, window.id, rollback, configured)
    return deploy_object(window, rollback, then, page=page, now=now)

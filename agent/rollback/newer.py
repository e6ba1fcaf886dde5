"""Whether a newer deploy took effect after a rollback was requested: its sender gives
the rollback up for it (`agent.rollback.delivery`), and a failed rollback's deploy page
tells on-call not to roll back by hand (that would undo the newer deploy), where the
alert says so too (`alerting.events.failed_rollback_headline`)."""

from __future__ import annotations

from agent.records import DeployWindow
from agent.store.base import Store


async def newer_deploy(
    store: Store, window_id: str, requested_at: float, environment: str, now: float
) -> DeployWindow | None:
    """A newer deploy of `environment` that took effect after the rollback of
    `window_id`, requested at `requested_at`, if any. Rolling back to `previous_version`
    then would undo that deploy (a pipeline shipped the fix while the receiver was
    down). A deploy registered before the request (a rollback asked for by hand,
    knowingly), one not yet deployed or called off before its time, an older deploy
    reported late, and `previous_version` itself (this rollback landing, its 2xx lost
    to a crash: sent again, the receiver dedupes) do not count."""
    ours = await store.get_window(window_id)
    if ours is None:
        return None
    cursor: str | None = None
    while True:  # newest registered first: stop at the first before the request
        page = await store.list_windows(environment=environment, cursor=cursor)
        for window in page.items:
            if window.created_at <= requested_at:
                return None
            called_off = window.ended_at is not None and window.ended_at < window.deployed_at
            if (
                window.id != ours.id
                and window.version != ours.previous_version
                and ours.deployed_at < window.deployed_at <= now
                and not called_off
            ):
                return window
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor

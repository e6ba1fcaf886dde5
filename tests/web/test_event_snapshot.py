"""The event stream's deploy object is one the store held: a rollback delivered between
the stream's two reads (the rollback, then the window) shows `rolled_back` with its
rollback `delivered`, never `rolled_back` with the rollback still `pending`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.appkeys import SETTINGS, STORE
from agent.records import RollbackIntent
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.web.events import deploy_events
from tests.config.test_validate_config import MINIMAL
from tests.rollback.support import stored_intent
from tests.web.sse import events

WINDOW = "dep_01JDSNAPSH0T0000000000000A"


class DeliveredBetweenReads(SqliteStore):
    """Delivers the rollback just after the stream reads it, as a sender in another task
    would: the window turns `rolled_back` in that same transaction."""

    delivered = False

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        read = await super().get_rollback(window_id)
        if read is not None and read.state == "pending" and not self.delivered:
            self.delivered = True
            done = RollbackIntent(window_id, "delivered", read.body, read.requested_at)
            done.last_status, done.finished_at = 200, read.requested_at + 1.0
            assert await super().settle_rollback(done)
        return read


async def test_a_rollback_delivered_between_the_streams_reads_shows_delivered(
    tmp_path: Any,
) -> None:
    """Old code sent the late joiner's first event as `rolled_back` with the rollback
    `pending` (the rollback read before the delivery, the window after): a pair the store
    never held, and one the contract rules out (`rolled_back`: the webhook accepted it)."""
    store = DeliveredBetweenReads(tmp_path / "postflight.db")
    await store.open()
    try:
        await stored_intent(store, WINDOW)
        settings = load_settings_text(MINIMAL)
        app = web.Application()
        app[SETTINGS] = settings
        app[STORE] = store
        app.router.add_get("/v1/deploys/{id}/events", deploy_events)
        async with TestClient(TestServer(app)) as client:
            token = settings.server.api_tokens[0].get_secret_value()
            response = await client.get(
                f"/v1/deploys/{WINDOW}/events", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 200
            first = await anext(events(response))
        assert store.delivered
        said = (first.name, first.data["state"], first.data["rollback"]["state"])
        assert said == ("state", "rolled_back", "delivered")
    finally:
        await store.close()

"""A sender paused (SIGSTOP) while its attempt is out hears, on waking, the 2xx the
receiver answered meanwhile, instead of taking it for a timeout and sending again.

The receiver runs on its own loop in a thread, as a pipeline on another machine: as the
request arrives it stalls the sender's loop (`time.sleep` in a callback there, a pause
longer than the attempt's timeout) and answers 200 while the sender cannot read it.
Counted at the receiver: every request, and every 2xx answered to a connected sender.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.store.sqlite import SqliteStore
from tests.rollback.support import settings, stored_intent
from tests.thread_target import ThreadTarget, running

TIMEOUT_S = 0.5
PAUSE_S = 1.5
"""The sender's stall: past the attempt's timeout, within its lease."""


class PausingReceiver(ThreadTarget):
    """On its own loop in a thread: the first POST stalls `sender` for `PAUSE_S`, and is
    answered 200 while the stall lasts; any other, 200 at once."""

    def __init__(self, sender: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.sender = sender
        self.requests = 0
        self.heard = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/rollback", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        if self.requests == 1:
            self.sender.call_soon_threadsafe(time.sleep, PAUSE_S)
            await asyncio.sleep(0.2)  # the sender's loop is stalled by now
        assert request.transport is not None and not request.transport.is_closing()
        self.heard += 1
        return web.json_response({"status": "accepted"})


async def test_a_sender_paused_while_its_2xx_came_records_it_and_sends_no_more(
    store: SqliteStore,
) -> None:
    async def no_wait(seconds: float) -> None:
        return None

    with running(PausingReceiver(asyncio.get_running_loop())) as receiver:
        conf = settings(f"http://127.0.0.1:{receiver.port}/rollback", timeout=TIMEOUT_S)
        sender = RollbackDelivery(store, Metrics(), sleep=no_wait, owner="a", lease_s=60.0)
        try:
            done = await sender.deliver(await stored_intent(store), conf, "production")
        finally:
            await sender.aclose()

    assert (receiver.requests, receiver.heard) == (1, 1)
    assert (done.state, done.attempts, done.last_status) == ("delivered", 1, 200)

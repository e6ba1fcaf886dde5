"""A sender paused (SIGSTOP) while its attempt is out hears, on waking, the 2xx the
receiver answered meanwhile, instead of taking it for a timeout and sending again.

The receiver runs on its own loop in a thread, as a pipeline on another machine: as the
request arrives it stalls the sender's loop (`time.sleep` in a callback there, a pause
longer than the attempt's timeout) and answers 200 while the sender cannot read it.
Counted at the receiver: every request, and every 2xx answered to a connected sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

from aiohttp import web

from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.store.sqlite import SqliteStore
from tests.rollback.support import settings, stored_intent

TIMEOUT_S = 0.5
PAUSE_S = 1.5
"""The sender's stall: past the attempt's timeout, within its lease."""


class PausingReceiver:
    """On its own loop in a thread: the first POST stalls `sender` for `PAUSE_S`, and is
    answered 200 while the stall lasts; any other, 200 at once."""

    def __init__(self, sender: asyncio.AbstractEventLoop) -> None:
        self.sender = sender
        self.requests = 0
        self.heard = 0
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        if self.requests == 1:
            self.sender.call_soon_threadsafe(time.sleep, PAUSE_S)
            await asyncio.sleep(0.2)  # the sender's loop is stalled by now
        assert request.transport is not None and not request.transport.is_closing()
        self.heard += 1
        return web.json_response({"status": "accepted"})

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/rollback", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()


@contextlib.contextmanager
def pausing_receiver() -> Iterator[PausingReceiver]:
    receiver = PausingReceiver(asyncio.get_running_loop())
    receiver.thread.start()
    assert receiver.started.wait(10)
    try:
        yield receiver
    finally:
        receiver.loop.call_soon_threadsafe(receiver.loop.stop)
        receiver.thread.join(10)


async def test_a_sender_paused_while_its_2xx_came_records_it_and_sends_no_more(
    store: SqliteStore,
) -> None:
    async def no_wait(seconds: float) -> None:
        return None

    with pausing_receiver() as receiver:
        conf = settings(f"http://127.0.0.1:{receiver.port}/rollback", timeout=TIMEOUT_S)
        sender = RollbackDelivery(store, Metrics(), sleep=no_wait, owner="a", lease_s=60.0)
        try:
            done = await sender.deliver(await stored_intent(store), conf, "production")
        finally:
            await sender.aclose()

    assert (receiver.requests, receiver.heard) == (1, 1)
    assert (done.state, done.attempts, done.last_status) == ("delivered", 1, 200)

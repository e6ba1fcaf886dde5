"""A real aiohttp target on its own event loop in a thread, for tests that stall the
agent's loop (`time.sleep` in a callback): the target keeps answering on time meanwhile,
as a service on another machine would."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from aiohttp import web


class ThreadTarget:
    """`/health` and `/api/health` answer `{"status": "ok"}` after `delay_s`; with `close`,
    each answer closes its connection (every probe dials anew). Counts what it answered;
    `on_request` (if set) is called, in the target's thread, as each request comes, and
    `on_answer` as its answer is ready, given when the request came (`time.perf_counter`)
    and the `delay_s` it slept; with `ssl_context`, it serves https."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.delay_s = 0.0
        self.close = False
        self.answered = 0
        self.answered_at = 0.0
        """When the latest answer was made (`time.monotonic`, in the target's thread)."""
        self.on_request: Callable[[], object] | None = None  # what it returns is not read
        self.on_answer: Callable[[float, float], None] | None = None
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def health(self, request: web.Request) -> web.StreamResponse:
        came = time.perf_counter()
        if self.on_request is not None:
            self.on_request()
        delay = self.delay_s
        await asyncio.sleep(delay)
        if self.on_answer is not None:
            self.on_answer(came, delay)
        self.answered += 1
        self.answered_at = time.monotonic()
        response = web.json_response({"status": "ok"})
        if self.close:
            response.force_close()
        return response

    def routes(self, app: web.Application) -> None:
        """What the target answers (a subclass answers otherwise)."""
        app.router.add_get("/health", self.health)
        app.router.add_get("/api/health", self.health)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        self.routes(app)
        # a test's slow answers (`delay_s` of seconds) still in flight at its end are cut
        # at stop, not waited out: the test has read what it needs by then
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        self.loop.run_until_complete(site.start())
        self.port = site.port
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self._cancel_left()
        self.loop.close()

    def _cancel_left(self) -> None:
        """Cancel and wait out what the cleanup left: a slow answer whose client hung up
        first (a probe's timeout) is no longer the server's to cut (aiohttp's AppRunner
        leaves a lost connection's handler running), and the closed loop's pending task
        was 'Task was destroyed but it is pending!' at a later collection (test_agent_lag's
        5 s target: six such lines at a worker's end, one pair per probe)."""
        left = asyncio.all_tasks(self.loop)
        for task in left:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


T = TypeVar("T", bound=ThreadTarget)


@contextlib.contextmanager
def running(target: T) -> Iterator[T]:
    """`target` started, and stopped on the way out."""
    target.thread.start()
    assert target.started.wait(10)
    try:
        yield target
    finally:
        target.stop()


def thread_target(
    ssl_context: ssl.SSLContext | None = None,
) -> contextlib.AbstractContextManager[ThreadTarget]:
    """A started `ThreadTarget` (https with `ssl_context`), stopped on the way out."""
    return running(ThreadTarget(ssl_context))

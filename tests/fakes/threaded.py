"""A fake provider on its own event loop in a thread, for tests that stall the agent's
loop (`time.sleep` in a callback): the fake keeps answering on time meanwhile, as Sentry
or New Relic on another machine would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from tests.fakes._server import FakeServer

F = TypeVar("F", bound=FakeServer)


@contextmanager
def in_thread(fake: F) -> Iterator[F]:
    """`fake` started on a loop of its own in a daemon thread, stopped on exit. Script it
    (`fail`, `answer`, `set_stats`) before the requests it should answer are sent."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

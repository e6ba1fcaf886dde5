"""A wait a stop may end early: the retry waits of the rollback delivery
(`agent.rollback.delivery`) and of the GitHub/Vercel calls (`agent.integrations.clients`),
which a stop leaves at once rather than waiting out its grace."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def sleep_unless(
    event: asyncio.Event | None,
    delay: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Sleep `delay` seconds by `sleep`, or until `event` is set if that comes first (or
    was already): True then, at once. A failure of `sleep` itself is raised."""
    if event is None:
        await sleep(delay)
        return False
    if event.is_set():
        return True
    sleeping = asyncio.ensure_future(sleep(delay))
    woken = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeping.cancel()
        woken.cancel()
    if event.is_set():
        return True
    sleeping.result()
    return False

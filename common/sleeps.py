"""A wait a stop may end early: the retry waits of the rollback delivery
(`agent.rollback.delivery`) and of the GitHub/Vercel calls (`agent.integrations.clients`),
which a stop leaves at once rather than waiting out its grace."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


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


async def unless_set(event: asyncio.Event, work: Awaitable[T]) -> tuple[bool, T | None]:
    """`work`'s result, (False, it), or, when `event` is set first (or was already),
    (True, None) at once, `work` cancelled and let go of (its connection closed) before
    this returns. A failure of `work` is raised."""
    task = asyncio.ensure_future(work)
    if event.is_set():
        task.cancel()
        await asyncio.wait({task})
        return True, None
    woken = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((task, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled() and event.is_set():
        return True, None
    return False, task.result()

"""Exceptions freed with their handler, not by the collector.

aiohttp and aiohappyeyeballs keep the exception they raise in a local of a frame that its
own traceback holds (`last_exc`, `first_exception`; a failed read's `connection_lost`): a
reference cycle per failed request, 70-150 objects, that only the cyclic collector frees.
The daemon collects rarely (`agent.windows.heap`), so a target or a provider that keeps
failing piled them up by the hundred thousand between young collections (+80 MB, a pause
of seconds when the collection came). Where a failure is kept only as a kind and a
message, its tracebacks are dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def without_tracebacks(exc: BaseException) -> BaseException:
    """`exc` and every exception chained to it, stripped of their tracebacks (which hold
    the frames that hold them): nothing reads those frames where this is called."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += (current.__cause__, current.__context__)
    return exc


def drop_cancellation(task: asyncio.Future[Any]) -> None:
    """A done callback for a task cancelled and never awaited: a cancelled task keeps the
    CancelledError its coroutine raised until someone asks for its result, and that
    exception's traceback holds the coroutine's frames, which hold (through `self`, or
    `asyncio.current_task()` in a local) the task: a cycle that takes everything those
    frames reach (a whole window's watch) to the collector. Asking for it once frees it."""
    if task.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

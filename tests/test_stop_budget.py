"""`StopBudget`: what a stop waits for, and for how long (agent/stopping.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent.stopping import StopBudget


async def test_work_spawned_in_the_grace_is_waited_for_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watcher's background set gains a task in the grace (a verdict stored then
    spawns its rollback's delivery): it is waited for as the others, where it was neither
    waited for nor cancelled, and ran on past the stop."""
    background: set[asyncio.Task[Any]] = set()
    later_done = asyncio.Event()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)
        return task

    async def later() -> None:
        await asyncio.sleep(0.2)
        later_done.set()

    async def verdict() -> None:
        await asyncio.sleep(0.1)
        spawn(later())

    spawn(verdict())
    with caplog.at_level(logging.WARNING, logger="postflight"):
        await StopBudget(8.0).settle(background, grace=3.0)
    assert later_done.is_set()
    assert not background
    assert not caplog.records


async def test_work_spawned_in_the_grace_is_cut_at_its_end_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    background: set[asyncio.Task[Any]] = set()

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def verdict() -> None:
        task = asyncio.create_task(hangs(), name="the spawned one")
        background.add(task)
        task.add_done_callback(background.discard)

    first = asyncio.create_task(verdict())
    background.add(first)
    first.add_done_callback(background.discard)
    with caplog.at_level(logging.WARNING, logger="postflight"):
        await StopBudget(8.0).settle(background, grace=0.3)
    assert not background
    said = [r.getMessage() for r in caplog.records]
    assert said == ["stopping: the spawned one did not finish within 0.3 s; cut off"], said


def test_a_held_write_has_no_bound_of_the_stop_before_it_begins() -> None:
    stop = StopBudget(8.0)
    assert stop.held_write_left() is None
    stop.start()
    left = stop.held_write_left()
    assert left is not None and left < stop.left()

"""Opt-in: which test leaves an asyncio task under way after it ends (on a loop still
running in a thread, or on one never closed), for a worker's later tests to meet.

    POSTFLIGHT_LEFT_TASKS=/tmp/left.txt pytest -p tests.left_tasks tests/...

After each test's teardown, a full collection, then every task not done that no earlier
test left is written to that file, one line each: the test, the task's coroutine, its
loop's state. Not loaded by default: the collection after every test costs the suite time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from collections.abc import Generator
from typing import Any

import pytest

_seen: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def _left() -> list[asyncio.Task[Any]]:
    gc.collect()
    return [t for t in list(asyncio.tasks._all_tasks) if not t.done()]  # type: ignore[attr-defined]


def _loop_state(task: asyncio.Task[Any]) -> str:
    loop = task.get_loop()
    return "closed" if loop.is_closed() else "running" if loop.is_running() else "stopped"


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    path = os.environ.get("POSTFLIGHT_LEFT_TASKS")
    if not path:
        return
    new = [task for task in _left() if task not in _seen]
    _seen.update(new)
    if not new:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(path, "a", encoding="utf-8") as out:
        for task in new:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", type(coro).__qualname__)
            out.write(f"{worker} {item.nodeid} | {name} | loop {_loop_state(task)} | {task!r}\n")

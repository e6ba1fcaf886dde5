"""`HeldFile`: a watch's write refused because another process holds the SQLite file
(`StoreHeld`) is tried again until it is taken, said once each way; any other failure is
raised at once; rounds go ahead of the store only up to `HELD_ROUNDS_MAX`."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.metrics import Metrics
from agent.store.base import StoreError, StoreHeld
from agent.windows.held import HELD_ROUNDS_MAX, HeldFile

pytestmark = pytest.mark.timeout(10)


def held_file(metrics: Metrics) -> HeldFile:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    log = logging.LoggerAdapter(logging.getLogger("postflight.window"), {})
    return HeldFile(log, metrics, sleep=no_wait)


def store_up(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("postflight_store_up") or 0.0


async def test_a_held_write_is_tried_until_taken_and_said_once_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    metrics.store_up.set(1)
    held, refusals, seen_down = held_file(metrics), [3], []

    async def write() -> bool:
        seen_down.append(store_up(metrics))
        if refusals[0]:
            refusals[0] -= 1
            raise StoreHeld("SQLite: database is locked")
        return True

    with caplog.at_level(logging.INFO, "postflight.window"):
        assert await held.written(write, "round 7") is True
    said = [r.getMessage() for r in caplog.records]
    assert len(seen_down) == 4 and seen_down[1:] == [0.0, 0.0, 0.0]  # said down while held
    assert store_up(metrics) == 1.0 and held.waiting == 0
    assert len(said) == 2 and said[0].startswith("round 7 waits for the store"), said
    assert "takes this window's writes again" in said[1], said


async def test_any_other_failure_is_raised_at_once() -> None:
    held, tries = held_file(Metrics()), []

    async def write() -> bool:
        tries.append(1)
        raise StoreError("cannot commit to the SQLite store: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O"):
        await held.written(write, "round 1")
    assert tries == [1] and held.waiting == 0


async def test_rounds_go_ahead_of_a_held_write_up_to_the_bound() -> None:
    held, let_go = held_file(Metrics()), asyncio.Event()

    async def write() -> bool:
        if not let_go.is_set():
            raise StoreHeld("SQLite: database is locked")
        return True

    settling = asyncio.create_task(held.written(write, "round 1"))
    await held.settled_or_held(settling)  # returns once the write is refused, not taken
    assert not settling.done() and held.goes_on(settling)
    for _ in range(HELD_ROUNDS_MAX):
        held.chain()
    assert not held.goes_on(settling)  # past the bound: the watch waits for the oldest
    let_go.set()
    assert await settling is True

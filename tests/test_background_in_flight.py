"""`agent.windows.in_flight`: a window's start cuts the background runs of its environment
in flight, and only those; a run's own error or cancellation still reaches its caller
(`BackgroundProber._probe_forever`'s outage log, its stop)."""

from __future__ import annotations

import asyncio

import pytest

from agent.windows.in_flight import InFlight


async def test_a_cut_run_returns_and_only_its_environments_runs_are_cut() -> None:
    runs, started = InFlight(), asyncio.Event()
    finished: list[str] = []

    async def work(name: str) -> None:
        started.set()
        await asyncio.sleep(10)
        finished.append(name)

    staging = asyncio.create_task(runs.run("staging", "api-health", work("staging")))
    production = asyncio.create_task(runs.run("production", "api-health", work("production")))
    await started.wait()
    await asyncio.sleep(0)
    assert await runs.cut("staging") == ["api-health"]
    await staging  # returns: cut, not failed
    assert not production.done() and finished == []
    assert await runs.cut("staging") == []  # nothing in flight any more
    production.cancel()
    with pytest.raises(asyncio.CancelledError):
        await production
    assert not any(runs.runs.values()) and runs.cut_runs == set()


async def test_a_runs_own_error_or_cancellation_reaches_its_caller() -> None:
    runs = InFlight()

    async def broken() -> None:
        raise OSError("store away")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(OSError, match="store away"):
        await runs.run("staging", "api-health", broken())
    with pytest.raises(asyncio.CancelledError):
        await runs.run("staging", "api-health", cancelled())

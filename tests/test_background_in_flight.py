"""`agent.windows.in_flight`: a window's start cuts the background runs of its environment
in flight, and only those; a run's own error or cancellation still reaches its caller
(`BackgroundProber._probe_forever`'s outage log, its stop); another replica's window
cuts them as this replica hears of it (`WindowNews`), reading nothing when nothing is
in flight (new code)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.records import DeployWindow
from agent.store.sqlite import SqliteStore
from agent.windows.in_flight import InFlight, WindowNews, cut_news
from agent.windows.probing import BackgroundProber


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


async def test_a_cut_run_that_ended_in_an_error_raises_it_to_its_caller() -> None:
    """A run cut that did not stop as asked but failed (its cleanup raised: a store write
    cut mid-way, a probe's teardown) returned as if cut: its error went nowhere, and
    asyncio logged "Task exception was never retrieved" with its traceback once the task
    was collected, an ERROR no caller could place. Its error is its caller's, as an uncut
    run's is; not owed to the window (it did not stop, it failed)."""
    import gc
    from typing import Any

    runs, started = InFlight(), asyncio.Event()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))

    async def work() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise OSError("store away as the run was cut") from None

    try:
        run = asyncio.create_task(runs.run("staging", "api-health", work()))
        await started.wait()
        assert await runs.cut("staging") == []
        with pytest.raises(OSError, match="store away as the run was cut"):
            await run
        del run
        gc.collect()
    finally:
        loop.set_exception_handler(before)
    assert [c.get("message") for c in reported] == []
    assert runs.cut_runs == set()


class Reads(SqliteStore):
    """A real store counting the windows read (what a replica's news costs it)."""

    reads = 0

    async def get_window(self, window_id: str) -> DeployWindow | None:
        self.reads += 1
        return await super().get_window(window_id)


def window(wid: str, environment: str, deployed_at: float) -> DeployWindow:
    return DeployWindow(
        wid, environment, "v2", "v1", None, {}, "watching", deployed_at, deployed_at + 60, 0.0
    )


@pytest.fixture
async def reads(tmp_path: Path) -> AsyncIterator[Reads]:
    store = Reads(tmp_path / "news.db")
    await store.open()
    await store.create_window(window("dep_live", "staging", 100.0))
    await store.create_window(window("dep_later", "production", 500.0))  # scheduled
    await store.create_window(window("dep_done", "production", 50.0))
    await store.finish_window("dep_done", "passed", None, 110.0)
    yield store
    await store.close()


async def in_flight(prober: BackgroundProber, environment: str) -> asyncio.Task[None]:
    task = asyncio.create_task(prober.in_flight.run(environment, "api-health", asyncio.sleep(60)))
    await asyncio.sleep(0)
    return task


async def test_news_of_a_live_window_cuts_its_environments_run_in_flight_only(
    reads: Reads,
) -> None:
    """Another replica's window that probes an environment now (watching, deployed) cuts
    this replica's run in flight there; a scheduled or ended one's news, or a run in
    another environment, goes on."""
    prober = BackgroundProber({}, reads, lambda name: False)
    news = WindowNews(prober, lambda: 200.0)
    staging, production = await in_flight(prober, "staging"), await in_flight(prober, "production")
    for heard in ("dep_later", "dep_done", "dep_unknown"):
        news.heard(heard)
        await asyncio.gather(*news.looking)
    assert not staging.done() and not production.done()
    news.heard("dep_live")
    await asyncio.gather(*news.looking)
    await staging  # returns: cut, nothing of it stored
    assert not production.done()
    production.cancel()
    await asyncio.gather(production, return_exceptions=True)


async def test_news_costs_no_read_without_a_run_in_flight_in_its_environment(
    reads: Reads,
) -> None:
    """A replica alone hears no news; one between runs reads nothing for what it hears,
    and a window's environment is read once."""
    prober = BackgroundProber({}, reads, lambda name: False)
    news = WindowNews(prober, lambda: 200.0)
    news.heard("dep_live")
    assert reads.reads == 0 and not news.looking
    production = await in_flight(prober, "production")
    news.heard("dep_live")  # its environment is not known yet: read once
    await asyncio.gather(*news.looking)
    news.heard("dep_live")  # staging, where nothing is in flight
    assert reads.reads == 1 and not news.looking and not production.done()
    production.cancel()
    await asyncio.gather(production, return_exceptions=True)


async def test_a_stop_leaves_no_read_of_a_windows_news_going(reads: Reads) -> None:
    prober = BackgroundProber({}, reads, lambda name: False)
    news = WindowNews(prober, lambda: 200.0)
    staging = await in_flight(prober, "staging")
    news.heard("dep_live")
    looking = set(news.looking)
    news.stop()
    await asyncio.gather(*looking, return_exceptions=True)
    assert all(task.cancelled() for task in looking) and not staging.done()
    staging.cancel()
    await asyncio.gather(staging, return_exceptions=True)


async def test_a_run_cut_for_another_replicas_window_is_told_to_it_and_owed_there(
    reads: Reads,
) -> None:
    """The replica that cuts its run for another's window tells it (`cut_news`), and the
    replica whose window it is owes the run to its rounds (they stand in for it), as for
    a run it cut itself; a replica whose window it is not owes nothing. Before, the run
    was owed nowhere: the next deploy's baseline had one run fewer (new code)."""
    told: list[str] = []
    cutting = BackgroundProber({}, reads, lambda name: False)
    cutting.tell = told.append
    news = WindowNews(cutting, lambda: 200.0)
    staging = await in_flight(cutting, "staging")
    news.heard("dep_live")
    await asyncio.gather(*news.looking)
    await staging
    assert told == [cut_news("dep_live", "api-health")]

    watching = BackgroundProber({}, reads, lambda name: name == "staging", clock=lambda: 150.0)
    elsewhere = BackgroundProber({}, reads, lambda name: False, clock=lambda: 150.0)
    for prober in (watching, elsewhere):
        hearing = WindowNews(prober, lambda: 200.0)
        hearing.heard(told[0])
        hearing.heard(cut_news("dep_done", "api-health"))  # ended: no round left
        await asyncio.gather(*hearing.looking)
    assert watching.owed == {"staging": {"api-health": [150.0]}}
    assert watching.owed_runs("staging", since=100.0) == ["api-health"]
    assert elsewhere.owed == {}


@pytest.mark.usefixtures("heap_set_aside")
async def test_a_cut_run_leaves_no_cycle_holding_its_results() -> None:
    """A run a window cut kept its CancelledError (nobody asked for its result), whose
    traceback holds the run's frames: with the task in a local (`run_check`'s frame holds
    it) a cycle, and the CheckResults the frames held with it, for the daemon's rare full
    collection (40 CheckResults in a PostgreSQL soak's garbage)."""
    import gc

    from checks.base import CheckResult

    runs, started = InFlight(), asyncio.Event()

    async def work() -> None:
        task = asyncio.current_task()  # as `run_check` holds its task
        held = CheckResult(check="api-health", type="http", ok=True, samples=(), message="")
        started.set()
        await asyncio.sleep(10)
        del task, held

    async def cut_run() -> None:
        started.clear()
        run = asyncio.create_task(runs.run("staging", "api-health", work()))
        await started.wait()
        assert await runs.cut("staging") == ["api-health"]
        await run

    await cut_run()  # warm
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, CheckResult))
        for _ in range(3):
            await cut_run()
        alive = sum(1 for o in gc.get_objects() if isinstance(o, CheckResult)) - before
    finally:
        gc.enable()
    assert alive == 0  # 3 before

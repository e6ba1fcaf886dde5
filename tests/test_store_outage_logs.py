"""A store that does not answer is one WARNING per background loop, not a traceback at
every turn (`agent.store.outages`). Found in a live audit: a PostgreSQL restart under a
running daemon logged 158 ERROR tracebacks in 40 s (the watcher's claims and the
integrations' scan every second, the alert retries), the one line that said what was
wrong lost among them. The loops here run on a real SQLite store that, while `down`, answers
every call with the `StoreError` a PostgreSQL store raises when it cannot reach its server."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.settings import EnvironmentSettings
from agent.store.base import StoreBusy, StoreError
from agent.store.outages import StoreOutageLog, not_taken, store_busy, store_outage
from agent.store.sqlite import SqliteStore, _Connection
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WindowWatch
from agent.windows.probing import EnvironmentProbe
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor
from tests.alerting.test_window_alerts import services, window
from tests.test_watcher_claims import quiet_integrations, quiet_watcher

pytestmark = pytest.mark.timeout(30)
TURN = 0.02
DOWN = "cannot reach PostgreSQL store at db:5432/postflight: Connection refused"


class Restarting(SqliteStore):
    """A store whose server is down while `down` is set, as PostgreSQL restarting is."""

    down = False

    def _answer(self) -> None:
        if self.down:
            raise StoreError(DOWN)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[_Connection]:
        self._answer()
        async with super()._read() as db:
            yield db

    async def _fetchall(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        self._answer()
        return await super()._fetchall(sql, *args)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[_Connection]:
        self._answer()
        async with super()._tx() as db:
            yield db


LOOPS = ("claiming windows", "integrations: a scan", "alerts: looking for alerts to send again")


async def run_while(
    meanwhile: Coroutine[Any, Any, None], *loops: Coroutine[Any, Any, None]
) -> None:
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        await meanwhile
        for task in tasks:
            assert not task.done(), task  # a failed turn never ends a loop
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_briefly(
    watcher: Watcher, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher's loop for 0.3 s (some 15 turns), its log heard at INFO; then the store
    closes."""
    try:
        with caplog.at_level(logging.INFO, logger="postflight.watcher"):
            await run_while(asyncio.sleep(0.3), watcher.run())
    finally:
        await store.close()


@pytest.mark.parametrize("down_after", [0.0, 0.2], ids=["down-at-start", "down-mid-run"])
async def test_each_loop_says_once_that_the_store_does_not_answer_and_once_that_it_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, down_after: float
) -> None:
    """Down at the start too: the watcher's first look (this replica's rollbacks left
    pending by its previous process) once ended its loop when the store did not answer,
    and nothing was watched after; the integrations skipped theirs until a restart."""
    store = Restarting(tmp_path / "postflight.db")
    await store.open()
    watcher = quiet_watcher(store, poll_interval=TURN, background_probing=False)
    integrations = quiet_integrations(watcher, poll_interval=TURN)
    first_looks: list[str] = []

    def looked(what: str, call: Callable[..., Awaitable[None]]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> None:
            await call(*args, **kwargs)
            if kwargs.get("startup", True):
                first_looks.append(what)

        return counted

    watcher._resume_rollbacks = looked("watcher", watcher._resume_rollbacks)  # type: ignore[method-assign]
    integrations._resume_after_rollbacks = looked(  # type: ignore[method-assign]
        "integrations", integrations._resume_after_rollbacks
    )

    async def said_by_each(words: str) -> None:
        for _ in range(500):  # 10 s at most, on a busy machine
            if all(
                any(r.getMessage() == f"{loop}: {words}" for r in caplog.records) for loop in LOOPS
            ):
                return
            await asyncio.sleep(TURN)
        said = sorted({r.getMessage() for r in caplog.records})
        raise AssertionError(f"not every loop said {words!r}: {said}")

    async def outage() -> None:
        if down_after:
            await asyncio.sleep(down_after)
        store.down = True
        await asyncio.sleep(0.5)  # some 25 turns of each loop
        await said_by_each(f"the store does not answer ({DOWN}); retrying")
        store.down = False
        await said_by_each("the store answers again")
        await asyncio.sleep(0.2)  # and turns after it

    try:
        with caplog.at_level(logging.INFO):
            await run_while(
                outage(),
                watcher.run(),
                integrations.run(),
                watcher.services.alerts.run(watcher.services.spawn, interval=TURN),
            )
    finally:
        await integrations.aclose()
        await store.close()
    # each first look was made once, whenever the store answered it
    assert sorted(first_looks) == ["integrations", "watcher"], first_looks
    tracebacks = [f"{r.getMessage()}: {r.exc_info[1]!r}" for r in caplog.records if r.exc_info]
    assert not tracebacks, tracebacks
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    for loop in LOOPS:
        own = [(level, m) for level, m in said if m.startswith(f"{loop}: ")]
        assert own == [
            (
                logging.WARNING,
                f"{loop}: the store does not answer ({DOWN}); retrying",
            ),
            (logging.INFO, f"{loop}: the store answers again"),
        ], said


async def test_a_failure_that_is_not_the_store_keeps_its_traceback_at_every_turn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is not an outage: it is logged with its traceback, every time."""
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    watcher = quiet_watcher(store, poll_interval=TURN, background_probing=False)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(watcher, "_claim", broken)
    await run_briefly(watcher, store, caplog)
    failed = [r for r in caplog.records if r.getMessage() == "claiming windows failed; retrying"]
    assert len(failed) >= 3 and all(r.exc_info and r.levelno == logging.ERROR for r in failed)


async def test_a_bug_in_a_first_look_is_logged_once_and_holds_no_turn_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an outage, so not retried: said with its traceback, and the claims go on (a
    retry at every turn would have held every window unwatched)."""
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    watcher = quiet_watcher(store, poll_interval=TURN, background_probing=False)
    claims = 0

    async def broken(*, startup: bool) -> None:
        if startup:
            raise KeyError("a bug")

    async def claim() -> None:
        nonlocal claims
        claims += 1

    monkeypatch.setattr(watcher, "_resume_rollbacks", broken)
    monkeypatch.setattr(watcher, "_claim", claim)
    await run_briefly(watcher, store, caplog)
    assert claims >= 3
    (said,) = [r for r in caplog.records if r.exc_info]
    assert said.getMessage() == "resuming this replica's rollbacks at startup failed"


class GoneAsRoundOneIsStored(SqliteStore):
    """Does not answer from the moment round 1 is being stored (a PostgreSQL restart)."""

    down = False

    async def record_round(self, *args: Any, **kwargs: Any) -> bool:
        self.down = True
        raise StoreError(DOWN)

    async def renew_lease(self, *args: Any, **kwargs: Any) -> bool:
        if self.down:
            raise StoreError(DOWN)
        return await super().renew_lease(*args, **kwargs)


async def test_a_round_store_the_watch_left_behind_is_not_an_unretrieved_task_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, metrics: Metrics
) -> None:
    """A watch whose round was being stored as the store stopped answering ended on its
    next lease renewal's outage, and the round's own failure, awaited by nobody, was
    logged by asyncio as 'Task exception was never retrieved': an ERROR with a 40-line
    traceback and no deploy id, seen with two replicas over a PostgreSQL restart."""
    store = GoneAsRoundOneIsStored(tmp_path / "postflight.db")
    await store.open()
    sessions = TargetSessions()
    env = EnvironmentSettings.model_validate(
        {
            "base_url": "http://127.0.0.1:9",
            "interval": "300ms",
            "checks": [{"name": "health", "type": "http", "path": "/health", "timeout": "100ms"}],
        }
    )
    s = services(
        store,
        WindowAlerts(store, Notifier([], timeout=1.0, redact=Redactor(), metrics=metrics)),
        metrics,
    )
    s.lease_s = 0.3  # each round renews its lease, and waits for the renewal
    gc.collect()  # what earlier tests on this worker left is theirs to say, not this one's
    try:
        now = time.time()
        await store.create_window(
            dataclasses.replace(window(), deployed_at=now - 1, ends_at=now + 60, created_at=now)
        )
        [held] = await store.claim_windows("test", time.time(), s.lease_s)
        probe = EnvironmentProbe("production", env, sessions, metrics, ())
        with caplog.at_level(logging.INFO):
            with pytest.raises(StoreError):
                await WindowWatch(held, env, probe, s).run()
            await asyncio.sleep(0.05)
            gc.collect()
            await asyncio.sleep(0)
        assert store.down  # round 1 was being stored as it went
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        # asyncio's words for a failed task nobody awaited; a full run's collection may also
        # find other tests' leftovers ("Task was destroyed but it is pending!"), not this
        unretrieved = [m for m in said if m.startswith("Task exception was never retrieved")]
        assert unretrieved == [], said
    finally:
        await sessions.aclose()
        await store.close()


def test_a_busy_store_is_said_once_a_spell_and_never_as_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`StoreBusy` (a transaction PostgreSQL refused for now) twice: one WARNING, 'busy,
    retried'; a turn that went through says nothing (no outage began, none ends); an
    outage after it is said as an outage."""
    outage = StoreOutageLog(logging.getLogger("postflight.test"), "claiming windows")
    caplog.set_level(logging.INFO, logger="postflight.test")
    busy = StoreBusy("transaction refused for now by the PostgreSQL store at db: deadlock")
    outage.failed(busy)
    outage.failed(busy)
    outage.answered()
    outage.failed(busy)
    outage.failed(StoreError(DOWN))
    assert [r.getMessage() for r in caplog.records] == [
        f"claiming windows: the store is busy, retried ({busy})",
        f"claiming windows: the store is busy, retried ({busy})",
        f"claiming windows: the store does not answer ({DOWN}); retrying",
    ]
    assert store_outage(busy) and store_busy(busy)
    assert not_taken(busy) == "the store is busy"
    assert not_taken(StoreError(DOWN)) == "the store does not answer"

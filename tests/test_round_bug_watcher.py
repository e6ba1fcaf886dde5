"""The watcher's rule for a watch that fails (`Watcher._bug_ends`), on a real SQLite store
whose round writes fail: alike three times in a row at a round (the same exception type
from the same line, whatever its message says) the window ends `inconclusive` as a bug; a
store that does not answer is waited for however many rounds it takes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.analysis.judge import Judge
from agent.metrics import Metrics
from agent.rollback.delivery import RollbackDelivery
from agent.settings_file import load_settings_text
from agent.store.base import StoreError
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from agent.windows.lifecycle import WindowWatch
from agent.windows.supervisor import Watcher
from alerting.notifier import Notifier
from checks.sessions import TargetSessions
from common.redaction import Redactor
from tests.alerting.test_window_alerts import window
from tests.test_store_outage_logs import Restarting

pytestmark = pytest.mark.timeout(30)

CONFIG = """
server: {api_tokens: [tok-1234567890abcdef]}
environments:
  production:
    base_url: http://127.0.0.1:9
    interval: 100ms
    checks: [{name: health, type: http, path: /health, timeout: 50ms}]
    rules: [{name: errors, source: checks, metric: error_rate, max: 1.0}]
"""


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The watch's and the watcher's records with a traceback (an end alert's send cut by
    the test's close of the store is the test's own)."""
    mine = ("postflight.watcher", "postflight.window")
    return [r for r in caplog.records if r.exc_info and r.name in mine]


class FailingRounds(SqliteStore):
    """Every round's write raises `failure(n)` (n: the writes tried so far)."""

    def __init__(self, path: Path, failure: Any) -> None:
        super().__init__(path)
        self.failure = failure
        self.tried = 0

    async def record_round(self, *args: Any, **kwargs: Any) -> bool:
        self.tried += 1
        raise self.failure(self.tried)


def watcher_of(store: SqliteStore, sessions: TargetSessions, config: str = CONFIG) -> Watcher:
    metrics = Metrics()
    return Watcher(
        load_settings_text(config),
        store,
        metrics,
        alerts=WindowAlerts(store, Notifier([], timeout=1, redact=Redactor(), metrics=metrics)),
        delivery=RollbackDelivery(store, metrics, owner="a"),
        providers={},
        sessions=sessions,
        owner="a",
        poll_interval=0.05,
        background_probing=False,
    )


async def watched(
    store: SqliteStore, until_tried: int, done: Callable[[], bool] = lambda: False
) -> str:
    """The window's state once it ended, once `until_tried` round writes failed, or once
    `done()`."""
    sessions = TargetSessions()
    watcher = watcher_of(store, sessions)
    now = time.time()
    made = dataclasses.replace(window(), deployed_at=now, ends_at=now + 60, created_at=now)
    await store.create_window(made)
    task = asyncio.create_task(watcher.run())
    try:
        while True:
            stored = await store.get_window(made.id)
            assert stored is not None
            tried = getattr(store, "tried", 0)
            if stored.state != "watching" or tried >= until_tried or done():
                return stored.state
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()


async def test_a_bug_whose_message_changes_at_each_try_still_ends_the_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its message names what changes between tries (a count, an object, an instant):
    compared by message, no two failures were alike and the window was retried for ever."""
    store = FailingRounds(tmp_path / "postflight.db", lambda n: ValueError(f"row {n} refused"))
    await store.open()
    try:
        with caplog.at_level(logging.INFO):
            state = await watched(store, until_tried=10)
        ended = await store.get_window(window().id)
    finally:
        await store.close()
    assert state == "inconclusive", store.tried
    assert store.tried == 3
    assert ended is not None and ended.verdict is not None
    assert (
        " raised ValueError: row 3 refused with 0 rounds stored: a bug" in ended.verdict["reason"]
    )
    traced = tracebacks(caplog)
    assert len(traced) == 1, [r.getMessage() for r in traced]


async def test_a_store_that_does_not_answer_is_waited_for_however_long(tmp_path: Path) -> None:
    store = FailingRounds(tmp_path / "postflight.db", lambda n: StoreError("connection refused"))
    await store.open()
    try:
        state = await watched(store, until_tried=6)
    finally:
        await store.close()
    assert state == "watching"


class AwayForRounds(SqliteStore):
    """Its first `away` round writes find the store away; then it answers."""

    def __init__(self, path: Path, away: int) -> None:
        super().__init__(path)
        self.away = away
        self.tried = 0
        self.stored = 0

    async def record_round(self, *args: Any, **kwargs: Any) -> bool:
        self.tried += 1
        if self.tried <= self.away:
            raise StoreError("connection refused")
        stored = await super().record_round(*args, **kwargs)
        self.stored += stored
        return stored


async def test_a_store_away_for_four_round_writes_is_said_once_and_its_return_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry of the window said the outage again (a new `StoreOutageLog` per
    failure: 3 WARNINGs in 4 failed writes, and no word of its end): once, as every
    other loop says it, and once that the store answers, when a round is stored again."""
    store = AwayForRounds(tmp_path / "postflight.db", away=4)
    await store.open()

    def said(words: str) -> list[logging.LogRecord]:
        mine = [r for r in caplog.records if r.name == "postflight.watcher"]
        return [r for r in mine if words in r.getMessage()]

    try:
        with caplog.at_level(logging.INFO):
            state = await watched(
                store,
                until_tried=1000,
                done=lambda: bool(said("answers again")) or store.stored >= 10,
            )
    finally:
        await store.close()
    assert state == "watching" and store.tried > 4
    away = said("the store does not answer")
    assert [(r.levelno, r.getMessage()) for r in away] == [
        (
            logging.WARNING,
            "watching the window: the store does not answer (connection refused); retrying",
        )
    ]
    assert [r.getMessage() for r in said("answers again")] == [
        "watching the window: the store answers again"
    ]


STAGING = """\
  staging:
    base_url: http://127.0.0.1:9
    interval: 100ms
    checks: [{name: health, type: http, path: /health, timeout: 50ms}]
"""


async def test_a_store_away_from_two_windows_is_said_once_and_its_return_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole store away (a PostgreSQL restart) under two watched windows: each
    window's each retry said it (a new `StoreOutageLog` per failure)."""
    store = Restarting(tmp_path / "postflight.db")
    await store.open()
    sessions = TargetSessions()
    # a 1 s lease: the windows whose lease the outage kept are taken again within it
    watcher = watcher_of(store, sessions, CONFIG + STAGING + "store: {lease: 1s}\n")
    now = time.time()
    ids = ("dep_01JDTEST1", "dep_01JDTEST2")
    for window_id, environment in zip(ids, ("production", "staging"), strict=True):
        made = dataclasses.replace(
            window(window_id), environment=environment, deployed_at=now, ends_at=now + 60
        )
        await store.create_window(dataclasses.replace(made, created_at=now))

    def said(words: str) -> list[logging.LogRecord]:
        mine = [r for r in caplog.records if r.name == "postflight.watcher"]
        return [r for r in mine if r.getMessage().startswith(f"watching the window: {words}")]

    async def until(done: Callable[[], Awaitable[bool]]) -> None:
        while not await done():
            assert not task.done()
            await asyncio.sleep(0.05)

    async def stored_at_least(rounds: int) -> bool:
        got = [await store.get_window(window_id) for window_id in ids]
        return all(w is not None and w.rounds >= rounds for w in got)

    async def both_watches_failed() -> bool:  # and, claims failing too, not taken again
        return not any(window_id in watcher.tasks for window_id in ids)

    async def stored_again() -> bool:  # its return said, or 5 rounds stored unsaid
        return bool(said("the store answers again")) or await stored_at_least(rounds + 6)

    task = asyncio.create_task(watcher.run())
    try:
        with caplog.at_level(logging.INFO):
            await until(lambda: stored_at_least(1))
            rounds = max(w.rounds for w in (await store.list_windows()).items)
            store.down = True
            await until(both_watches_failed)
            store.down = False
            await until(stored_again)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()
        await store.close()
    assert len(said("the store does not answer")) == 1, [r.getMessage() for r in said("")]
    assert len(said("the store answers again")) == 1


class EndedMeanwhile(SqliteStore):
    """Refuses every window's end, as when it was cancelled or taken over meanwhile."""

    async def finish_window(self, *args: Any, **kwargs: Any) -> bool:
        return False


async def test_a_bug_met_as_the_window_ended_meanwhile_is_still_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge raised, and the store refused the window's end (another end came first):
    the bug was said nowhere, only "window ended or taken over meanwhile" at INFO."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("judge broke")

    monkeypatch.setattr(Judge, "advance", broken)
    store = EndedMeanwhile(tmp_path / "postflight.db")
    await store.open()

    def said() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "judge broke" in r.getMessage()]

    try:
        with caplog.at_level(logging.INFO):
            await watched(store, until_tried=1, done=lambda: bool(said()))
    finally:
        await store.close()
    first = said()[0]
    assert first.levelno == logging.WARNING, first.getMessage()
    assert "not ended as a bug" in first.getMessage()
    assert "the judge raised RuntimeError: judge broke at round 1" in first.getMessage()


async def test_a_watch_that_cannot_even_be_made_ends_its_window_as_a_bug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug before the watch's first round (its probe aimed from the deploy's labels, say)
    raised out of the watcher's task: asyncio's 'Task exception was never retrieved', the
    lease kept to its end, then claimed and raised again, for ever."""
    made: list[str] = []

    def broken(self: Watcher, window: Any, env: Any) -> Any:
        made.append(window.id)
        raise KeyError("vercel.url")

    monkeypatch.setattr(Watcher, "_probe_for", broken)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        with caplog.at_level(logging.INFO):
            state = await watched(store, until_tried=1, done=lambda: len(made) > 5)
        ended = await store.get_window(window().id)
    finally:
        await store.close()
    assert state == "inconclusive", made
    assert len(made) == 3
    assert ended is not None and ended.verdict is not None
    reason = ended.verdict["reason"]
    assert reason.startswith("the window's watch raised KeyError: 'vercel.url' with 0 rounds"), (
        reason
    )


async def test_a_bug_after_each_round_is_stored_still_ends_the_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in what a round calls for once it is stored (its alerts): each try stored one
    round more before it raised, so no two failures were at the same round, and the window
    was retried for ever, a round and a traceback a try."""
    tries: list[int] = []

    def broken(self: WindowWatch, verdict: Any) -> None:
        tries.append(self.window.rounds)
        raise AttributeError("'NoneType' object has no attribute 'name'")

    monkeypatch.setattr(WindowWatch, "_alert_rules", broken)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        with caplog.at_level(logging.INFO):
            state = await watched(store, until_tried=1, done=lambda: len(tries) > 5)
        ended = await store.get_window(window().id)
    finally:
        await store.close()
    assert state == "inconclusive", tries
    assert tries == [1, 2, 3]
    assert ended is not None and ended.verdict is not None
    reason = ended.verdict["reason"]
    assert reason.startswith("the window's watch raised AttributeError: 'NoneType'"), reason
    assert "with 3 rounds stored: a bug" in reason, reason
    traced = tracebacks(caplog)
    assert len(traced) == 1, [r.getMessage() for r in traced]


class AwayAsTheBugEnds(FailingRounds):
    """Round writes raise a bug; the first two ends of the window find the store away."""

    ends = 0

    async def finish_window(self, *args: Any, **kwargs: Any) -> bool:
        self.ends += 1
        if self.ends <= 2:
            raise StoreError("connection refused")
        return await super().finish_window(*args, **kwargs)


async def test_a_store_away_as_a_bug_ends_its_window_is_said_as_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The end's write is tried again at the next failure, and the outage is a warning,
    not a traceback at each try."""
    store = AwayAsTheBugEnds(tmp_path / "postflight.db", lambda n: ValueError("row refused"))
    await store.open()
    try:
        with caplog.at_level(logging.INFO):
            state = await watched(store, until_tried=10)
    finally:
        await store.close()
    assert state == "inconclusive" and store.ends == 3
    traced = tracebacks(caplog)
    assert [r.getMessage() for r in traced] == ["watching the window failed; retrying"]
    # the watcher's (an end alert still on its way as the store closes says so in its own)
    watcher = [r for r in caplog.records if r.name == "postflight.watcher"]
    away = [r for r in watcher if "the store does not answer" in r.getMessage()]
    # once, where each end tried said it again
    assert [r.getMessage() for r in away] == [
        "ending the window as a bug: the store does not answer (connection refused); retrying"
    ]


async def test_the_failures_of_a_window_that_left_this_watcher_are_forgotten(
    tmp_path: Path,
) -> None:
    """A window whose watch failed, then cancelled through another replica (or taken by
    one) before this one claimed it again: its count of failures stayed in memory until
    the agent's restart (a cancel through this replica's own API already dropped it)."""
    store = FailingRounds(tmp_path / "postflight.db", lambda n: ValueError("row refused"))
    await store.open()
    sessions = TargetSessions()
    # a 1 s lease: the claim pass that reads every lease held comes every 0.25 s
    watcher = watcher_of(store, sessions, CONFIG + "store: {lease: 1s}\n")
    now = time.time()
    made = dataclasses.replace(window(), deployed_at=now, ends_at=now + 60, created_at=now)
    await store.create_window(made)
    task = asyncio.create_task(watcher.run())
    try:
        for _ in range(1000):  # its first failure counted
            if made.id in watcher._failed:
                break
            await asyncio.sleep(0.01)
        assert made.id in watcher._failed
        await store.cancel_window(made.id, time.time())  # as another replica's API does
        for _ in range(200):  # a second or so: the watch's pause, two claim passes
            if made.id not in watcher._failed and made.id not in watcher.tasks:
                break
            assert not task.done()
            await asyncio.sleep(0.05)
        assert made.id not in watcher._failed, watcher._failed
        assert store.tried == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sessions.aclose()
        await store.close()

"""A GitHub status whose task met the store not answering (`Integrations._once`) is tried
again once it answers, counted at the fake GitHub. Before, a store error there marked the
task done for the life of the process: a SQLite file held by another connection (an
operator's `sqlite3` in `BEGIN EXCLUSIVE`) for a second as the window's verdict was
scanned, and its deployment's `success` was never posted, until a restart."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.records import DeployWindow
from agent.store.base import StoreUnreachable
from agent.store.sqlite import SqliteStore
from agent.windows.integrations import Integrations
from tests.fakes.github import FakeGitHub
from tests.test_watcher_claims import integrations_of

pytestmark = pytest.mark.timeout(60)
TOKEN = "gh-token"
REPOSITORY = "acme/web"
TURN = 0.05


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=TOKEN) as server:
        yield server


def integrations_on(store: SqliteStore, github: FakeGitHub) -> Integrations:
    config = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations: {{github: {{api_url: '{github.url}', token: {TOKEN}}}}}
environments:
  production:
    base_url: http://127.0.0.1:9
"""
    return integrations_of(store, config, poll_interval=TURN)


async def watching_window(
    store: SqliteStore, commit: str | None = None, *, ends_in: float = 0.0
) -> DeployWindow:
    """A window of GitHub deployment 42 (of `commit`), watching, no status posted yet,
    ending `ends_in` seconds from now."""
    now = time.time()
    window = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
        "production",
        "v2",
        "v1",
        commit,
        {"github.repository": REPOSITORY, "github.deployment": "42"},
        "watching",
        now - 60,
        now + ends_in,
        now - 60,
    )
    await store.create_window(window)
    return window


async def passed_window(store: SqliteStore) -> DeployWindow:
    """A window of GitHub deployment 42 that passed, its statuses not posted yet."""
    window = await watching_window(store)
    await store.finish_window(window.id, "passed", None, time.time(), None)
    stored = await store.get_window(window.id)
    assert stored is not None and stored.state == "passed"
    return stored


async def success_posted(github: FakeGitHub) -> None:
    """Until the deployment's `success` is posted: 10 s at most, on a busy machine."""
    for _ in range(400):
        if any(s["state"] == "success" for s in github.statuses):
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"no success status posted: {github.statuses}")


class HeldAfterTheClaim(SqliteStore):
    """The file taken by `other`'s `BEGIN EXCLUSIVE` right after the status's claim is
    first taken: the task's next write (its `in_progress` claim) is refused."""

    other: sqlite3.Connection | None = None

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        taken = await super().take_alert(window_id, event, *args, **kwargs)
        if self.other is not None and event == "github:success":
            self.other.execute("BEGIN EXCLUSIVE")
            self.other = None  # once
        return taken


@pytest.mark.parametrize("held", ["at-the-claim", "after-the-claim"])
async def test_a_status_whose_task_met_a_held_file_is_posted_once_it_is_let_go(
    tmp_path: Path, github: FakeGitHub, held: str
) -> None:
    store = HeldAfterTheClaim(tmp_path / "postflight.db")
    store.busy_timeout_ms = 200
    await store.open()
    integrations = integrations_on(store, github)
    await passed_window(store)
    scans = asyncio.create_task(integrations.run())
    try:
        with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
            if held == "at-the-claim":
                other.execute("BEGIN EXCLUSIVE")  # the claim of the status refused meanwhile
            else:
                store.other = other
            await asyncio.sleep(1.0)  # some 20 scans, each refused
            assert other.in_transaction
            assert github.statuses == []
            other.execute("COMMIT")
            await success_posted(github)
            await asyncio.sleep(0.2)  # and scans after it: nothing posted twice
    finally:
        scans.cancel()
        await asyncio.gather(scans, return_exceptions=True)
        await integrations.aclose()
        await store.close()
    # before: none, ever (the task was marked done at its first refusal)
    assert [s["state"] for s in github.statuses] == ["in_progress", "success"]


async def posted_after_an_asked_wait(
    store: SqliteStore, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    """GitHub asks the status's first post to wait 1 s (a secondary rate limit); scans on
    `store` (opened, then closed) until the deployment's `success` is posted (10 s at
    most), and a while after it, to see nothing posted twice; logged to `caplog`."""
    github.fail("secondary_rate_limit", times=1, reset_in=1, match="/statuses")
    await store.open()
    integrations = integrations_on(store, github)
    await passed_window(store)
    scans = asyncio.create_task(integrations.run())
    try:
        with caplog.at_level(logging.INFO, logger="postflight"):
            await success_posted(github)
            await asyncio.sleep(0.3)
    finally:
        scans.cancel()
        await asyncio.gather(scans, return_exceptions=True)
        await integrations.aclose()
        await store.close()


class AwayAtTheTakeBack(SqliteStore):
    """The store not answering the status claim's take-back after the wait GitHub asked
    for (`AlertClaimWait.resume`), once; answering again from the next call on."""

    kept = False
    failed = False

    def failure(self) -> Exception:
        """What the take-back meets."""
        return StoreUnreachable("connection refused")

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("waiting"):
            self.kept = True
        elif self.kept and not self.failed:
            self.failed = True
            raise self.failure()
        return await super().take_alert(window_id, event, *args, **kwargs)


async def test_a_status_claim_the_store_failed_to_take_back_is_not_said_taken_over(
    tmp_path: Path, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    """GitHub asked the `in_progress` status to wait (a secondary rate limit, 1 s), and the
    store did not answer the claim's take-back after it: the log said the status was
    "taken over by another sender", though none was; it says the store did not answer, and
    the deployment's status is posted once the store answers, counted at the fake GitHub."""
    store = AwayAtTheTakeBack(tmp_path / "postflight.db")
    await posted_after_an_asked_wait(store, github, caplog)
    said = [r.getMessage() for r in caplog.records]
    assert store.failed, said
    assert not [m for m in said if "taken over by another sender" in m], said
    (away,) = [m for m in said if "not taken back after waiting" in m]
    assert "the store does not answer" in away and "in_progress" in away, away
    # tried again once the store answered: the deployment's state now, posted once
    assert [s["state"] for s in github.statuses] == ["success"]

"""The take-back of a status's claim after a wait GitHub asked for (`AlertClaimWait.resume`)
meeting something other than a store that does not answer, counted at the fake GitHub.

Before, `resume` caught any exception as the store not answering: a bug (a TypeError) was
logged as a warning that the store did not answer, and a claim row this version cannot
read (a count another version wrote) was taken for an outage too, its take-back already
committed, so the status waited a whole lease (135 s on the defaults) before a later try.
Now a bug is logged as one, with its words, and the status is still posted once; a count
that cannot be read is said and read as none, and the call goes on."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.store.sqlite import SqliteStore
from tests.fakes.github import FakeGitHub
from tests.test_status_store_blip import (  # noqa: F401 (the fixture)
    github,
    integrations_on,
    passed_window,
)

pytestmark = pytest.mark.timeout(60)


async def _posted_once(store: SqliteStore, github: FakeGitHub) -> None:  # noqa: F811
    """Scan until the deployment's `success` is posted (10 s at most), and a while after
    it: nothing posted twice."""
    integrations = integrations_on(store, github)
    await passed_window(store)
    scans = asyncio.create_task(integrations.run())
    try:
        for _ in range(400):
            if any(s["state"] == "success" for s in github.statuses):
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError(f"no success status posted: {github.statuses}")
        await asyncio.sleep(0.3)
    finally:
        scans.cancel()
        await asyncio.gather(scans, return_exceptions=True)
        await integrations.aclose()


class BugAtTheTakeBack(SqliteStore):
    """A bug in the take-back after the asked wait (a TypeError), once."""

    kept = False
    failed = False

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("waiting"):
            self.kept = True
        elif self.kept and not self.failed:
            self.failed = True
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'float'")
        return await super().take_alert(window_id, event, *args, **kwargs)


async def test_a_bug_at_the_take_back_is_logged_as_one_and_the_status_still_posted_once(
    tmp_path: Path,
    github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    github.fail("secondary_rate_limit", times=1, reset_in=1, match="/statuses")
    store = BugAtTheTakeBack(tmp_path / "postflight.db")
    await store.open()
    try:
        with caplog.at_level(logging.INFO, logger="postflight"):
            await _posted_once(store, github)
    finally:
        await store.close()
    assert store.failed
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        "a bug" in m and "TypeError: unsupported operand type(s)" in m and "github:success" in m
        for m in errors
    ), errors
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "the store does not answer" in m], said
    # the claim lapsed with the wait; a later try posted the deployment's state, once
    assert [s["state"] for s in github.statuses] == ["success"]


class CountRewritten(SqliteStore):
    """During the wait GitHub asked for, the claim's count of attempts is rewritten as one
    this version cannot read (a row another version wrote)."""

    rewritten = False

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        taken = await super().take_alert(window_id, event, *args, **kwargs)
        if kwargs.get("waiting") and not self.rewritten:
            self.rewritten = True
            with closing(sqlite3.connect(self.path)) as other:
                other.execute(
                    "UPDATE alerts SET attempts = 'many' WHERE window_id = ? AND event = ?",
                    (window_id, event),
                )
                other.commit()
        return taken


async def test_a_claim_row_whose_count_cannot_be_read_is_said_and_the_status_posted_once(
    tmp_path: Path,
    github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    github.fail("secondary_rate_limit", times=1, reset_in=1, match="/statuses")
    store = CountRewritten(tmp_path / "postflight.db")
    await store.open()
    try:
        with caplog.at_level(logging.INFO, logger="postflight"):
            await _posted_once(store, github)
    finally:
        await store.close()
    assert store.rewritten
    said = [r.getMessage() for r in caplog.records]
    assert any("'many'" in m and "github:success" in m for m in said), said
    assert not [m for m in said if "the store does not answer" in m], said
    # taken back after the wait: the call went on, its status posted, once each
    assert [s["state"] for s in github.statuses] == ["in_progress", "success"]

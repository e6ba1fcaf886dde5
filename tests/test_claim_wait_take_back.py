"""The take-back of a status's claim after a wait GitHub asked for (`AlertClaimWait.resume`)
meeting something other than a store that does not answer, counted at the fake GitHub.

Before, `resume` caught any exception as the store not answering: a bug (a TypeError) was
logged as a warning that the store did not answer, and a claim row this version cannot
read (a count another version wrote) was taken for an outage too, its take-back already
committed, so the status waited a whole lease (135 s on the defaults) before a later try.
Now a bug is logged as one, with its words, and the status is still posted once; a count
that cannot be read is said and read as none, and the call goes on."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agent.records import PendingGate
from agent.store.base import StoreUnreachable
from agent.store.sqlite import SqliteStore
from agent.windows.claim_waits import GateClaimWait
from tests.fakes.github import FakeGitHub
from tests.test_status_store_blip import (  # noqa: F401 (the fixture)
    AwayAtTheTakeBack,
    github,
    posted_after_an_asked_wait,
)

pytestmark = pytest.mark.timeout(60)


async def _said_as_posted_once(
    store: SqliteStore,
    github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> list[logging.LogRecord]:
    """`posted_after_an_asked_wait`'s log, which never says the store did not answer."""
    await posted_after_an_asked_wait(store, github, caplog)
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "the store does not answer" in m], said
    return caplog.records


class BugAtTheTakeBack(AwayAtTheTakeBack):
    """A bug in the take-back after the asked wait (a TypeError), once."""

    def failure(self) -> Exception:
        return TypeError("unsupported operand type(s) for +: 'NoneType' and 'float'")


async def test_a_bug_at_the_take_back_is_logged_as_one_and_the_status_still_posted_once(
    tmp_path: Path,
    github: FakeGitHub,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BugAtTheTakeBack(tmp_path / "postflight.db")
    records = await _said_as_posted_once(store, github, caplog)
    assert store.failed
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert any(
        "a bug" in m and "TypeError: unsupported operand type(s)" in m and "github:success" in m
        for m in errors
    ), errors
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
    store = CountRewritten(tmp_path / "postflight.db")
    records = await _said_as_posted_once(store, github, caplog)
    assert store.rewritten
    said = [r.getMessage() for r in records]
    assert any("'many'" in m and "github:success" in m for m in said), said
    # taken back after the wait: the call went on, its status posted, once each
    assert [s["state"] for s in github.statuses] == ["in_progress", "success"]


class GateStore(SqliteStore):
    """`claim_gate` (the gate's take-back) and `extend_gate` (its keep) meeting `failure`."""

    failure: Exception | None = None

    async def claim_gate(self, *args: Any, **kwargs: Any) -> bool:
        if self.failure is not None:
            raise self.failure
        return await super().claim_gate(*args, **kwargs)

    async def extend_gate(self, *args: Any, **kwargs: Any) -> bool:
        if self.failure is not None:
            raise self.failure
        return await super().extend_gate(*args, **kwargs)


@pytest.mark.parametrize(
    ("failure", "level", "why"),
    [
        (KeyError("claimed_until"), logging.ERROR, "a bug (KeyError)"),
        (StoreUnreachable("connection refused"), logging.WARNING, "the store does not answer"),
    ],
    ids=["bug", "store-away"],
)
async def test_a_gates_take_back_that_fails_says_why_and_leaves_the_claim_to_lapse(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    level: int,
    why: str,
) -> None:
    """A protection rule's answer waited what GitHub asked (its claim's end moved to the
    wait's), and its take-back met a bug or the store away: said as such, nothing more
    sent from there, and the claim lapses at the wait's end for the next scan to take."""
    store = GateStore(tmp_path / "postflight.db")
    await store.open()
    try:
        url = "https://api.github.com/repos/acme/web/actions/runs/7/deployment_protection_rule"
        await store.add_gate(PendingGate(url, "production", "a" * 40, "Production", 900.0, 100.0))
        assert await store.claim_gate(url, "Production", 200.0, 500.0)
        now = [200.0]
        wait = GateClaimWait(store, url, "Production", 500.0, 300.0, lambda: now[0])
        await wait.keep(10.0)  # till 210
        assert wait.waiting and wait.until == 210.0
        now[0], store.failure = 210.0, failure  # the wait over: its take-back fails
        with caplog.at_level(logging.INFO, logger="postflight"):
            assert not await wait.resume()
            await wait.keep(10.0)  # and a keep meeting it: said the same way
        assert wait.store_away and wait.not_back == why
        lines = [r for r in caplog.records if r.name == "postflight.integrations"]
        assert [r.levelno for r in lines] == [level, level], [r.getMessage() for r in lines]
        assert all(str(failure) in r.getMessage() for r in lines)
        store.failure = None
        assert not await store.claim_gate(url, "Production", 209.0, 509.0)  # still waiting
        assert await store.claim_gate(url, "Production", 211.0, 511.0)  # lapsed: taken
    finally:
        await store.close()

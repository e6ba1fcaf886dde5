"""A window's verdict status is the last GitHub gets, counted at the fake GitHub: a
watch's own status (the deployment's `in_progress`, the commit's `pending`) a replica
was still sending as the window ended never lands after it.

Before, a replica that had claimed the watch's status (a stale scan, or one taken over
from a killed sender) posted it once another replica had posted the verdict's, and on
GitHub the deployment read as still in progress for good (the two-replica crash trial,
`tests/e2e/test_crash_anywhere.py`, saw the commit's `['failure', 'pending']` under
load). Two replicas here: `a` holds the watch's status (paused after its claim, or its
post held at GitHub) while the window fails and `b` posts the verdict's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.records import DeployWindow
from agent.store.sqlite import SqliteStore
from agent.windows.integrations import Integrations
from tests.e2e.test_integrations_e2e import eventually
from tests.fakes import github as gh
from tests.fakes._server import BODY
from tests.test_status_store_blip import watching_window
from tests.test_watcher_claims import integrations_of

pytestmark = pytest.mark.timeout(60)
TOKEN = "gh-token"
CONFIG = f"""
server: {{api_tokens: [tok-1234567890abcdef]}}
integrations: {{github: {{api_url: '{{url}}', token: {TOKEN}}}}}
environments:
  production:
    base_url: http://127.0.0.1:9
    sources:
      github: {{repository: {gh.REPOSITORY}, environment: Production, commit_status: true}}
"""
WATCH = {"deployment": "in_progress", "commit": "pending"}
"""A watch's own status, by where it goes."""
WATCH_KEY = {"deployment": "github:in_progress", "commit": "github:commit:pending"}
"""Its claim's key."""


class HeldGitHub(gh.FakeGitHub):
    """GitHub taking the watch's status of `hold` (`deployment`, `commit`) only once
    `released` is set: its post on its way (a slow network, a paused sender)."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN)
        self.hold = ""
        self.held = asyncio.Event()
        self.released = asyncio.Event()

    async def _held(self, where: str, request: web.Request) -> None:
        body = request.get(BODY)
        if self.hold == where and isinstance(body, dict) and body.get("state") == WATCH[where]:
            self.hold = ""  # once
            self.held.set()
            await self.released.wait()

    async def create_status(self, request: web.Request) -> web.Response:
        await self._held("deployment", request)
        return await super().create_status(request)

    async def commit_status(self, request: web.Request) -> web.Response:
        await self._held("commit", request)
        return await super().commit_status(request)


class PausedAfterTheClaim(SqliteStore):
    """The watch's status `key` paused right after its sender took its claim, until
    `resume` is set: a replica whose scan read the window while it watched."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.key = ""
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        taken = await super().take_alert(window_id, event, *args, **kwargs)
        if taken is not None and event == self.key:
            self.key = ""  # once
            self.paused.set()
            await self.resume.wait()
        return taken


class PausedInItsTurn(PausedAfterTheClaim):
    """The watch's status `key` paused in its turn (its deploy's lock held), as it reads
    the window's claims before posting, until `resume` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False

    async def take_alert(self, window_id: str, event: str, *args: Any, **kwargs: Any) -> Any:
        taken = await SqliteStore.take_alert(self, window_id, event, *args, **kwargs)
        if taken is not None and event == self.key:
            self.key = ""
            self.armed = True
        return taken

    async def alert_events(self, window_id: str) -> dict[str, str]:
        if self.armed:
            self.armed = False  # once
            self.paused.set()
            await self.resume.wait()
        return await super().alert_events(window_id)


@pytest.fixture
async def github() -> AsyncIterator[HeldGitHub]:
    async with HeldGitHub() as server:
        yield server


def _arrived(github: HeldGitHub, where: str) -> list[str]:
    """The states GitHub took, in the order it took them, duplicates included."""
    statuses = github.statuses if where == "deployment" else github.commit_statuses
    return [str(s["state"]) for s in statuses]


async def _settled(store: SqliteStore, window_id: str, key: str) -> None:
    """Until the watch's status has an outcome (sent, or dropped)."""
    for _ in range(400):
        if (await store.alert_events(window_id)).get(key, "claimed") != "claimed":
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{key} never settled: {await store.alert_events(window_id)}")


async def _watch_on_its_way(
    store: PausedAfterTheClaim, github: HeldGitHub, a: Integrations, where: str, when: str
) -> DeployWindow:
    """A watching window whose watch's status (of `where`) replica `a` is sending: its
    sender paused in the store (`when` "paused-…") or its post held at GitHub."""
    window = await watching_window(store, gh.COMMIT)
    paused = when.startswith("paused-")
    if paused:
        store.key = WATCH_KEY[where]
    else:
        github.hold = where
    # replica a's scan read the window while it watched: the watch's statuses
    a._github_statuses(window)
    a._commit_status(window)
    await asyncio.wait_for((store.paused if paused else github.held).wait(), 10)
    return window


async def _verdict_by_b(
    store: SqliteStore, b: Integrations, window: DeployWindow, github: HeldGitHub
) -> None:
    """The window fails; replica `b`'s scans post its verdict's statuses."""
    assert await store.finish_window(window.id, "failed", {"outcome": "fail"}, time.time())
    scans = asyncio.create_task(b.run())
    try:
        await eventually(
            lambda: (
                "failure" in _arrived(github, "deployment")
                and "failure" in _arrived(github, "commit")
            )
        )
    finally:
        scans.cancel()
        await asyncio.gather(scans, return_exceptions=True)


@pytest.mark.parametrize("where", ["deployment", "commit"])
@pytest.mark.parametrize("when", ["paused-after-its-claim", "held-at-github"])
async def test_a_watch_status_still_on_its_way_as_the_window_ends_never_lands_after_its_verdict(
    tmp_path: Path, github: HeldGitHub, where: str, when: str
) -> None:
    store = PausedAfterTheClaim(tmp_path / "postflight.db")
    await store.open()
    config = CONFIG.replace("{url}", github.url)
    a = integrations_of(store, config, poll_interval=0.05)
    b = integrations_of(store, config, poll_interval=0.05)
    key = WATCH_KEY[where]
    try:
        window = await _watch_on_its_way(store, github, a, where, when)
        await _verdict_by_b(store, b, window, github)
        store.resume.set()
        github.released.set()
        await _settled(store, window.id, key)
        await asyncio.sleep(0.3)  # a re-sent verdict's status lands meanwhile
        await asyncio.gather(*a.s.background, return_exceptions=True)
        events = await store.alert_events(window.id)
    finally:
        store.resume.set()
        github.released.set()
        await a.aclose()
        await b.aclose()
        await store.close()
    arrived = _arrived(github, where)
    # before: ['failure', 'in_progress'] (['failure', 'pending']): the watch's last
    if when == "paused-after-its-claim":
        # its verdict's claimed before the watch's went out: the watch's is dropped
        assert arrived == ["failure"], arrived
        assert events[key] == "skipped", events
    else:
        # GitHub took the watch's after the verdict's: the verdict's went again after it
        assert arrived == ["failure", WATCH[where], "failure"], arrived


@pytest.mark.parametrize("where", ["deployment", "commit"])
@pytest.mark.parametrize("when", ["paused-in-its-turn", "held-at-github"])
async def test_one_replicas_watch_status_on_its_way_as_the_window_ends_goes_once_before_its_verdict(
    tmp_path: Path, github: HeldGitHub, where: str, when: str
) -> None:
    """One replica: its verdict's status waits for its watch's (one lock per deploy), so
    both go once, in order; neither is dropped nor posted again."""
    store = PausedInItsTurn(tmp_path / "postflight.db")
    await store.open()
    a = integrations_of(store, CONFIG.replace("{url}", github.url), poll_interval=0.05)
    final = "github:failure" if where == "deployment" else "github:commit:failure"
    try:
        window = await _watch_on_its_way(store, github, a, where, when)
        assert await store.finish_window(window.id, "failed", {"outcome": "fail"}, time.time())
        ended = await store.get_window(window.id)
        assert ended is not None
        a._github_statuses(ended)
        a._commit_status(ended)
        for _ in range(400):  # its claim taken, it waits for the watch's turn to end
            if final in await store.alert_events(window.id):
                break
            await asyncio.sleep(0.025)
        else:
            raise AssertionError(f"{final} never claimed")
        store.resume.set()
        github.released.set()
        await eventually(lambda: "failure" in _arrived(github, where))
        await asyncio.sleep(0.3)
        await asyncio.gather(*a.s.background, return_exceptions=True)
    finally:
        store.resume.set()
        github.released.set()
        await a.aclose()
        await store.close()
    # dropped before (the verdict's claim read as another's): ['failure']
    assert _arrived(github, where) == [WATCH[where], "failure"]

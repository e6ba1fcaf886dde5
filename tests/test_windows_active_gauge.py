"""The watcher's passes with a store slow to answer (each pass seconds long), read from
/metrics as a scraper reads `postflight_windows_active`, and from the API: a window
registered during a pass is watched at once, and a watch that ends during one is
uncounted as it ends, neither a poll interval later (3.4 s of a 3 s poll, measured so;
here the poll is an hour)."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.app import build_app
from agent.metrics import Metrics
from agent.settings_file import load_settings_text
from tests.app_client import AppClient
from tests.slow_listing import SLOW_S, SlowListing
from tests.test_round_bug_watcher import CONFIG

pytestmark = pytest.mark.timeout(30)
AUTH = {"Authorization": "Bearer tok-1234567890abcdef"}


class SlowStore(SlowListing):
    """Its list of pending rollbacks, read at least once each pass of the watcher's (after
    its claim), takes `SLOW_S`: a pass lasts that long."""

    async def pending_rollbacks(self, *args: Any, **kwargs: Any) -> Any:
        return await self.slowly(functools.partial(super().pending_rollbacks, *args, **kwargs))


async def active(client: AppClient) -> float | None:
    async with client.get("/metrics", params={"name[]": "postflight_windows_active"}) as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith('postflight_windows_active{environment="production"}'):
            return float(line.split()[1])
    return None


async def state(client: AppClient, deploy_id: str) -> str:
    async with client.get(f"/v1/deploys/{deploy_id}", headers=AUTH) as r:
        return str((await r.json())["state"])


def slow_agent(store: SlowStore) -> web.Application:
    """The agent on `store`, its watcher's passes an hour apart unless woken."""
    return build_app(
        load_settings_text(CONFIG),
        store=store,
        metrics=Metrics(),
        poll_interval=3600,
        background_probing=False,
    )


async def registered(client: AppClient) -> str:
    """A deploy of 1 s to production, registered now: its id."""
    body = {"environment": "production", "version": "v2", "window": "1s"}
    async with client.post("/v1/deploys", json=body, headers=AUTH) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def outcome(client: AppClient, deploy_id: str, within: float) -> str:
    """The deploy's state once it is no longer watched, at most `within` s from now."""
    asked = time.monotonic()
    while (now := await state(client, deploy_id)) in ("watching", "scheduled"):
        assert time.monotonic() - asked < within, f"still {now}"
        await asyncio.sleep(0.05)
    return now


async def test_a_window_registered_during_a_pass_is_watched_at_once(tmp_path: Path) -> None:
    """Registered while a pass lists the pending rollbacks, after its claim: it was
    watched only at the next poll (an hour here), the news of it lost as the pass ended."""
    store = SlowStore(tmp_path / "postflight.db")
    async with TestClient(TestServer(slow_agent(store))) as client:
        await asyncio.sleep(2 * SLOW_S + 0.5)  # the first pass, at start, is over
        first = await registered(client)  # wakes a pass, which watches it
        assert await outcome(client, first, 4 * SLOW_S + 5) in (
            "passed",
            "inconclusive",
        )  # max 1.0: a pass on evidence
        await asyncio.wait_for(store.listing.wait(), 4 * SLOW_S)  # the pass its end woke
        deploy_id = await registered(client)
        # its target does not answer (`max: 1.0`: passed once it has the evidence), once watched
        assert await outcome(client, deploy_id, 4 * SLOW_S + 5) in ("passed", "inconclusive")


async def test_a_watch_that_ends_during_a_pass_is_uncounted_as_it_ends(tmp_path: Path) -> None:
    """A window of 1 s, whose watch ends inside the pass that started it: the gauge says 0
    once the deploy has its outcome, not at the end of the pass the watch's end woke (the
    old code's: after that pass's listing, `SLOW_S` long)."""
    store = SlowStore(tmp_path / "postflight.db")
    async with TestClient(TestServer(slow_agent(store))) as client:
        await asyncio.sleep(2 * SLOW_S + 0.5)  # the first pass, at start, is over
        deploy_id = await registered(client)
        seen: list[float | None] = []
        while True:
            asked = time.monotonic()
            if (now := await state(client, deploy_id)) not in ("watching", "scheduled"):
                break
            watching = asked  # the watch ends, and wakes a pass, after this
            seen.append(await active(client))
            await asyncio.sleep(0.02)
        assert now in ("passed", "inconclusive"), now  # no answer; `max: 1.0` may pass
        assert 1.0 in seen, seen  # counted while it watched
        ended = time.monotonic()
        while (counted := await active(client)) != 0.0:
            # the pass the watch's end woke listed the pending rollbacks, and it still counts
            assert not store.listed_since(watching), (counted, store.listed, watching)
            # no such pass came (the wake lost): the next is a poll, an hour, away
            assert time.monotonic() - ended < 3 * SLOW_S, (counted, store.listed, watching)
            await asyncio.sleep(0.02)

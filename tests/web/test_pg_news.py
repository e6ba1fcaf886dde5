"""Replica news over PostgreSQL, the parts that need no server: payloads within the
NOTIFY limit, our own echo ignored, another's news never relayed back; and, on a real
server stopped and started, how an outage is logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from agent.web import pg_news
from agent.web.feed import DeployFeed
from agent.web.pg_news import PgNews, payloads
from tests.pg import PgCluster


def test_many_changed_windows_go_out_in_payloads_under_the_notify_limit() -> None:
    ids = {f"dep_{n:026d}" for n in range(1000)}
    sent = list(payloads("origin", ids))
    assert len(sent) > 1
    assert all(len(p.encode()) < 8000 and p.startswith("origin ") for p in sent)
    assert {i for p in sent for i in p.split(" ", 1)[1].split(",")} == ids


def test_news_from_another_replica_wakes_readers_and_is_not_sent_back() -> None:
    feed = DeployFeed()
    news = PgNews("postgresql://unused", feed)
    with feed.subscribe("dep_a") as sub:
        news._heard(None, 0, "", f"{news.origin} dep_a")  # our own, echoed by the server
        assert not sub.wake.is_set()
        news._heard(None, 0, "", "another dep_a,dep_b")
        assert sub.wake.is_set() and sub.changed
    assert news._pending == set()  # nothing to relay: it was not our change
    feed.publish("dep_c")  # a write of ours
    assert news._pending == {"dep_c"}


def test_another_replicas_news_is_also_told_to_the_watcher_and_ours_is_not() -> None:
    """The watcher hears what another replica changed (a window there cuts a background
    run in flight here: `agent.windows.in_flight.WindowNews`), never our own echo."""
    news = PgNews("postgresql://unused", DeployFeed())
    heard: list[str] = []
    news.also = heard.append
    news._heard(None, 0, "", f"{news.origin} dep_a")
    news._heard(None, 0, "", "another dep_a,dep_b")
    assert heard == ["dep_a", "dep_b"]


async def test_a_window_starting_is_sent_at_once_other_news_coalesced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`at_once` (a window starting to probe) goes out without the `FLUSH_S` wait that
    lets a burst of round writes go out as one: another replica's run in flight heard of
    it 52-55 ms after, beside the window's first round; 1-6 ms without the wait. The
    next change waits again (here a minute: not sent while the test looks)."""
    import asyncpg

    monkeypatch.setattr(pg_news, "FLUSH_S", 60.0)
    got: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(pg_url)
    await listener.add_listener(pg_news.CHANNEL, lambda *args: got.put_nowait(args[-1]))
    news = PgNews(pg_url, DeployFeed())
    running = asyncio.create_task(news.run())
    try:
        news.at_once("dep_a")
        assert await asyncio.wait_for(got.get(), 10) == f"{news.origin} dep_a"
        news.changed("dep_b")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(got.get(), 0.5)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await listener.close()


async def test_an_outage_is_one_warning_and_its_end_one_info(
    own_pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The listening connection is tried again every `RETRY_S` while PostgreSQL is away:
    each failed try logged a WARNING (35 lines in a 70 s outage). Now the outage is said
    once, and its end once, as the other background loops say theirs."""
    import asyncpg

    tries = 0
    enough, resumed = asyncio.Event(), asyncio.Event()
    connect = asyncpg.connect

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        if tries >= 6:
            enough.set()
        return await connect(*args, **kwargs)

    class Resumed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "resumed" in record.getMessage():
                resumed.set()

    monkeypatch.setattr(asyncpg, "connect", counted)
    monkeypatch.setattr(pg_news, "RETRY_S", 0.05)
    caplog.set_level(logging.INFO, logger="postflight.web")
    handler = Resumed()
    logging.getLogger("postflight.web").addHandler(handler)
    own_pg_cluster.stop()
    news = asyncio.create_task(PgNews(own_pg_cluster.url(), DeployFeed()).run())
    try:
        await enough.wait()  # six tries on a stopped server
        own_pg_cluster.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):  # the old code never said so
                await resumed.wait()
    finally:
        logging.getLogger("postflight.web").removeHandler(handler)
        news.cancel()
        await asyncio.gather(news, return_exceptions=True)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "postflight.web"]
    assert said == [
        (
            "WARNING",
            "replica news over PostgreSQL interrupted: ConnectionRefusedError; retrying every 50ms",
        ),
        ("INFO", "replica news over PostgreSQL resumed"),
    ], said


def test_news_of_a_run_cut_is_told_to_the_watcher_only() -> None:
    """A replica that cut its background run for a window tells it beside the windows'
    ids (`agent.windows.in_flight.cut_news`): the watcher hears it; the live pages, no
    window of that id changed, are not woken for it."""
    feed = DeployFeed()
    news = PgNews("postgresql://unused", feed)
    heard: list[str] = []
    news.also = heard.append
    with feed.subscribe("dep_a/api-health") as cut, feed.subscribe("dep_a") as window:
        news._heard(None, 0, "", "another dep_a/api-health")
        assert not cut.wake.is_set() and not window.wake.is_set()
    assert heard == ["dep_a/api-health"]

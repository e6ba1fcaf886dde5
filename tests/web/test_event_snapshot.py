"""The event stream against a store and a feed driven by the test: the deploy object is
one the store held (a rollback delivered between the stream's two reads, the rollback then
the window, shows `rolled_back` with its rollback `delivered`, never `rolled_back` with the
rollback still `pending`); a store outage, a client that reads nothing, and an idle
stream's keep-alive comments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agent.appkeys import SETTINGS, STORE
from agent.records import DeployWindow, RollbackIntent, RoundRecord
from agent.settings_file import load_settings_text
from agent.store.base import StoreError
from agent.store.sqlite import SqliteStore
from agent.web import events as events_module
from agent.web import reader as reader_module
from agent.web.events import deploy_events
from agent.web.feed import FEED, DeployFeed
from agent.web.reader import readers_of
from tests.app_client import AppClient
from tests.config.test_validate_config import MINIMAL
from tests.rollback.support import REQUESTED_AT, make_window, stored_intent
from tests.web.sse import events

WINDOW = "dep_01JDSNAPSH0T0000000000000A"


class DeliveredBetweenReads(SqliteStore):
    """Delivers the rollback just after the stream reads it, as a sender in another task
    would: the window turns `rolled_back` in that same transaction."""

    delivered = False

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        read = await super().get_rollback(window_id)
        if read is not None and read.state == "pending" and not self.delivered:
            self.delivered = True
            done = RollbackIntent(window_id, "delivered", read.body, read.requested_at)
            done.last_status, done.finished_at = 200, read.requested_at + 1.0
            assert await super().settle_rollback(done)
        return read


async def test_a_rollback_delivered_between_the_streams_reads_shows_delivered(
    tmp_path: Any,
) -> None:
    """Old code sent the late joiner's first event as `rolled_back` with the rollback
    `pending` (the rollback read before the delivery, the window after): a pair the store
    never held, and one the contract rules out (`rolled_back`: the webhook accepted it)."""
    store = DeliveredBetweenReads(tmp_path / "postflight.db")
    await store.open()
    try:
        await stored_intent(store, WINDOW)
        settings = load_settings_text(MINIMAL)
        app = web.Application()
        app[SETTINGS] = settings
        app[STORE] = store
        app.router.add_get("/v1/deploys/{id}/events", deploy_events)
        async with TestClient(TestServer(app)) as client:
            token = settings.server.api_tokens[0].get_secret_value()
            response = await client.get(
                f"/v1/deploys/{WINDOW}/events", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 200
            first = await anext(events(response))
        assert store.delivered
        said = (first.name, first.data["state"], first.data["rollback"]["state"])
        assert said == ("state", "rolled_back", "delivered")
    finally:
        await store.close()


class FlakyStore(SqliteStore):
    """A store that stops answering while `down` is set, as PostgreSQL restarting."""

    down = False
    refused = 0

    async def get_window(self, window_id: str) -> DeployWindow | None:
        if self.down:
            self.refused += 1
            raise StoreError("connection refused")
        return await super().get_window(window_id)


@contextlib.asynccontextmanager
async def stream_app(
    store: SqliteStore, watching: bool = False
) -> AsyncIterator[tuple[AppClient, DeployFeed]]:
    """The event stream of a window whose rollback is pending (so it stays open), or
    `watching`, its feed told of changes by the test."""
    if watching:
        await store.create_window(make_window(WINDOW))
    else:
        await stored_intent(store, WINDOW)
    settings = load_settings_text(MINIMAL)
    feed = DeployFeed()
    app = web.Application()
    app[SETTINGS], app[STORE], app[FEED] = settings, store, feed
    app.router.add_get("/v1/deploys/{id}/events", deploy_events)
    async with TestClient(TestServer(app)) as client:
        yield client, feed


def bearer() -> dict[str, str]:
    token = load_settings_text(MINIMAL).server.api_tokens[0].get_secret_value()
    return {"Authorization": f"Bearer {token}"}


async def until(done: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, "gave up waiting"
        await asyncio.sleep(0.02)


async def test_a_stream_stays_open_through_a_store_outage_and_goes_on_after_it(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that did not answer a stream's re-read ended the stream with a traceback
    (an error in the log); a browser reconnecting then got the 503 an EventSource gives
    up on. The stream now stays open, and says what changed once the store answers."""
    store = FlakyStore(tmp_path / "postflight.db")
    await store.open()
    try:
        async with stream_app(store) as (client, feed):
            response = await client.get(f"/v1/deploys/{WINDOW}/events", headers=bearer())
            stream = events(response)
            first = await anext(stream)
            assert (first.name, first.data["rollback"]["state"]) == ("state", "pending")
            store.down = True
            feed.publish(WINDOW)  # news the stream cannot read
            await until(lambda: store.refused > 0)
            store.down = False
            intent = await store.get_rollback(WINDOW)
            assert intent is not None
            done = RollbackIntent(WINDOW, "delivered", intent.body, intent.requested_at)
            done.last_status, done.finished_at = 200, intent.requested_at + 1.0
            assert await store.settle_rollback(done)
            feed.publish(WINDOW)
            async with asyncio.timeout(10):
                rest = [e async for e in stream]
        assert [(e.name, e.data["state"]) for e in rest] == [("state", "rolled_back")]
        assert feed.subscribers == 0
    finally:
        await store.close()
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert errors == [], [rec.getMessage()[:300] for rec in errors]


async def test_a_client_that_reads_nothing_is_dropped_and_its_stream_ends(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading (a frozen tab, a stuck proxy) held its stream, with the
    rounds stored meanwhile, for as long as its connection stayed open: the stream waited
    on a full socket forever. It is dropped after `WRITE_TIMEOUT_S` now."""
    monkeypatch.setattr(events_module, "WRITE_TIMEOUT_S", 0.5)
    caplog.set_level(logging.INFO, "postflight.api")
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        async with stream_app(store) as (client, feed):
            _, writer = await asyncio.open_connection(client.host, client.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            headers = "".join(f"{k}: {v}\r\n" for k, v in bearer().items())
            writer.write(
                f"GET /v1/deploys/{WINDOW}/events HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
            )
            await until(lambda: feed.subscribers == 1)
            big = {"checks": {"journey": {"failure": {"got": "x" * 256 * 1024}}}}
            for number in range(1, 65):  # 16 MiB, more than any socket's buffers hold
                feed.publish(WINDOW, RoundRecord(WINDOW, number, REQUESTED_AT, big))
            await until(lambda: feed.subscribers == 0)  # read nothing: dropped
            assert "the client read nothing for" in caplog.text
            writer.close()
    finally:
        await store.close()


async def test_an_idle_stream_sends_a_comment_to_keep_proxies_from_closing_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keep-alive comment every `HEARTBEAT_S` between events, and every block of the
    stream an event with data. The stream began with `retry:` in a block of its own, and
    each keep-alive comment ended a block: an EventSource dispatches no block without
    data, but SSE clients that go by blocks (httpx-sse 0.4 yields them as empty `message`
    events) read an empty event first, where contract §8 says a client first gets the
    deploy object as a `state` event, and another every 15 s between rounds. `retry:`
    goes with the first event, a keep-alive is a comment line inside the block to come."""
    monkeypatch.setattr(events_module, "HEARTBEAT_S", 0.2)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        async with stream_app(store) as (client, _):
            response = await client.get(f"/v1/deploys/{WINDOW}/events", headers=bearer())
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Cache-Control"] == "no-store"
            lines = []
            async with asyncio.timeout(10):
                async for raw in response.content:
                    lines.append(raw)
                    if lines.count(b": keep-alive\n") == 2:
                        break
            # a reconnect delay drawn per stream: the tabs of a stopped replica come back
            # spread over RETRY_MS, not all in the same instant
            low, high = events_module.RETRY_MS
            assert lines[0].startswith(b"retry: ") and lines[1] == b"event: state\n"
            assert low <= int(lines[0][7:]) <= high
            *ended, _ = b"".join(lines).split(b"\n\n")  # the blocks a blank line ended
            fields = [
                [line.partition(b":")[0] for line in block.split(b"\n") if line[:1] not in b":"]
                for block in ended
            ]
            assert fields[0] == [b"retry", b"event", b"id", b"data"], lines
            assert all(b"data" in block for block in fields), lines
    finally:
        await store.close()


class CountingStore(SqliteStore):
    """Counts the reads an event stream makes, at the store."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: Counter[str] = Counter()

    async def get_window(self, window_id: str) -> DeployWindow | None:
        self.reads["get_window"] += 1
        return await super().get_window(window_id)

    async def get_rollback(self, window_id: str) -> RollbackIntent | None:
        self.reads["get_rollback"] += 1
        return await super().get_rollback(window_id)

    async def rounds(
        self, window_id: str, after: int = 0, *, each: Any = None
    ) -> list[RoundRecord]:
        self.reads["rounds"] += 1
        return await super().rounds(window_id, after, each=each)


async def watched_by(
    clients: int,
    tmp_path: Any,
    change: Callable[[CountingStore, DeployFeed], Awaitable[int]],
    watching: bool = False,
) -> tuple[Counter[str], list[list[str]]]:
    """`clients` streams of one window; the store's reads while `change` changes it (it
    returns how many events each client is owed), and what each client was sent."""
    store = CountingStore(tmp_path / f"{clients}.db")
    await store.open()
    try:
        async with stream_app(store, watching) as (client, feed):
            responses = [
                await client.get(f"/v1/deploys/{WINDOW}/events", headers=bearer())
                for _ in range(clients)
            ]
            streams = [events(r) for r in responses]
            said: list[list[str]] = [[(await anext(s)).name] for s in streams]
            store.reads.clear()
            owed = await change(store, feed)
            async with asyncio.timeout(10):
                for stream, mine in zip(streams, said, strict=True):
                    while len(mine) < 1 + owed:
                        event = await anext(stream)
                        mine.append(f"{event.name} {event.id}")
            reads = Counter(store.reads)
            for response in responses:
                response.close()
            await until(lambda: feed.subscribers == 0)
            assert readers_of(feed) == {}  # the last stream to leave closed the reader
    finally:
        await store.close()
    return reads, said


async def test_store_reads_per_change_do_not_grow_with_the_clients(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream read the store on each change (the window, its rollback, the window
    again): fifty tabs open on a deploy in an incident made fifty times the reads. One
    reader per deploy reads it once for all of its streams now."""
    monkeypatch.setattr(reader_module, "RECHECK_S", 3600.0)  # the changes' reads alone

    async def three_attempts(store: CountingStore, feed: DeployFeed) -> int:
        taken = await store.take_rollback(WINDOW, "sender", REQUESTED_AT, REQUESTED_AT + 60)
        assert taken is not None
        for attempt in (1, 2, 3):
            assert await store.begin_attempt(WINDOW, taken.fence, REQUESTED_AT, 2e9) == attempt
            feed.publish(WINDOW)

            def read_twice(n: int = attempt) -> bool:
                return store.reads["get_window"] >= 2 * n

            await until(read_twice)
        return 3

    alone, one = await watched_by(1, tmp_path, three_attempts)
    crowd, many = await watched_by(20, tmp_path, three_attempts)
    assert alone["get_window"] == 6 and crowd == alone, (alone, crowd)
    assert [e.split()[0] for e in one[0]] == ["state", "rollback", "rollback", "rollback"]
    assert all(mine == one[0] for mine in many)  # the same events, the same ids


async def test_rounds_no_news_brought_are_read_once_for_every_stream(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds stored by another replica come with news of a change only (PostgreSQL's
    NOTIFY carries no round): each stream read every round of the window again."""
    monkeypatch.setattr(reader_module, "RECHECK_S", 3600.0)

    async def two_rounds_elsewhere(store: CountingStore, feed: DeployFeed) -> int:
        for number in (1, 2):
            record = RoundRecord(WINDOW, number, REQUESTED_AT, {"decision": "continue"})
            assert await store.record_round(record, None)
        feed.publish(WINDOW, remote=True)
        return 2

    reads, said = await watched_by(20, tmp_path, two_rounds_elsewhere, watching=True)
    assert reads["rounds"] == 1, reads
    for mine in said:
        assert [e.split()[0] for e in mine] == ["state", "round", "round"]
        assert mine[-1].split()[1].startswith("2.watching.")


async def test_a_reader_stopped_by_a_bug_fails_its_join_rather_than_hanging_it(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The streams of a deploy wait on its one reader: one that stopped by a bug would
    leave them, and every join, waiting for good. They are answered and logged."""

    def broken(self: Any) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(reader_module.DeployReader, "_went_live", broken)
    store = SqliteStore(tmp_path / "postflight.db")
    await store.open()
    try:
        async with stream_app(store) as (client, feed):
            async with asyncio.timeout(10):
                response = await client.get(f"/v1/deploys/{WINDOW}/events", headers=bearer())
            assert response.status == 500
            await until(lambda: feed.subscribers == 0 and readers_of(feed) == {})
    finally:
        await store.close()
    assert "their reader stopped: RuntimeError('a bug')" in caplog.text


class RowCountingStore(SqliteStore):
    """Counts the rounds the store hands back (rows read and parsed)."""

    rows = 0

    async def rounds(
        self, window_id: str, after: int = 0, *, each: Any = None
    ) -> list[RoundRecord]:
        read = await super().rounds(window_id, after, each=each)
        self.rows += len(read)
        return read


async def test_a_reconnect_reads_only_the_rounds_it_lacks(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tabs reconnecting after an agent restart (a new reader) each read and parsed every
    round of the window to send the few past their `Last-Event-ID`: ten tabs on a
    720-round window, 7,200 rounds. A connect now reads from the first round its streams
    lack: N connects at one stored round, the lacking rounds once each."""
    monkeypatch.setattr(reader_module, "RECHECK_S", 3600.0)
    store = RowCountingStore(tmp_path / "postflight.db")
    await store.open()
    try:
        async with stream_app(store, watching=True) as (client, feed):
            for number in range(1, 31):
                record = RoundRecord(WINDOW, number, REQUESTED_AT, {"decision": "continue"})
                assert await store.record_round(record, None)
            first = await client.get(f"/v1/deploys/{WINDOW}/events", headers=bearer())
            said = await anext(events(first))
            first.close()
            await until(lambda: feed.subscribers == 0)
            state, fingerprint = said.id.split(".")[1:]  # type: ignore[union-attr]
            resumed = {**bearer(), "Last-Event-ID": f"28.{state}.{fingerprint}"}
            store.rows = 0
            for _ in range(5):  # one after the other: a new reader each time
                response = await client.get(f"/v1/deploys/{WINDOW}/events", headers=resumed)
                stream = events(response)
                got = [await anext(stream), await anext(stream)]
                assert [(e.name, e.id.split(".")[0]) for e in got] == [  # type: ignore[union-attr]
                    ("round", "29"),
                    ("round", "30"),
                ]
                response.close()
                await until(lambda: feed.subscribers == 0)
            assert store.rows == 5 * 2, store.rows  # was 5 * 30: every round, every connect
    finally:
        await store.close()

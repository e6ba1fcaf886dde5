"""`GET /v1/deploys/{id}/events`: a deploy's live events as Server-Sent Events (contract §8).

First the current deploy object as a `state` event (so a late joiner starts from the
truth), then a `round` event after each stored round and a `state` event on each change
of the deploy object's `state` (contract section 8: one per change, so a client can list
the states it went through). What changes without a state change, a rollback's attempts
and its outcome once the window has failed, goes out as a `rollback` event with the same
deploy object. The stream ends once the window has ended and no rollback delivery is
pending. Everything sent is read from the store:
the feed only says when to look (of another replica's writes too, on PostgreSQL), and
a periodic re-read catches what no news told.

Event ids are the stream's position, not a counter of this process: the rounds sent, and
the state and a digest of the deploy object sent last. So a reconnect's `Last-Event-ID`
goes on from the store, on any replica and after any restart, with no buffer to outgrow
(the rounds are kept with their window); only the states a window went through while the
client was away are not replayed one by one, as the store keeps the last one alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.api.auth import CHALLENGE, require_token
from agent.api.models import deploy_object
from agent.api.problems import ApiProblem
from agent.appkeys import SETTINGS, STORE
from agent.records import (
    DEPLOY_ID_PATTERN,
    DEPLOY_STATES,
    DeployWindow,
    RollbackIntent,
    RoundRecord,
)
from agent.store.base import StoreError
from agent.web.access import admitted
from agent.web.feed import FEED, DeployFeed, Subscription
from agent.web.links import deploy_page_url
from agent.web.times import request_now
from agent.web.view import round_event

log = logging.getLogger("postflight.api")

RECHECK_S = 5.0
"""Without news from the feed, look at the store this often: news of another replica's
writes comes over PostgreSQL (`agent.web.pg_news`) and this catches what is lost."""
HEARTBEAT_S = 15.0
"""A comment line after this long without a write keeps proxies from closing an idle
stream."""
CLIENT_CHECK_S = 1.0
"""How often a stream with nothing to send looks whether its client is still there: a
closed tab ends the stream then, not at its next write (aiohttp does not cancel a handler
whose client left), which for an idle stream was the heartbeat's, 15 s on."""
WRITE_TIMEOUT_S = 30.0
"""A client that reads nothing for this long, with the connection's buffers full, is
dropped: it held its stream, and the rounds stored meanwhile, until it read again."""
_DEPLOY_ID = re.compile(DEPLOY_ID_PATTERN)
_EVENT_ID = re.compile(r"(\d{1,9})\.([a-z_]{1,16})\.([0-9a-f]{12})")


class _ClientStalled(Exception):
    """The client read nothing for `WRITE_TIMEOUT_S`."""


def _frame(event: str, data: Any, event_id: str) -> bytes:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {text}\n\n".encode()


def _fingerprint(window_id: str, obj: dict[str, Any]) -> str:
    """What makes an event worth sending besides a round: the state, the verdict's
    outcome, the rollback's progress (a round's new evidence travels in its `round`
    event); a digest, as event ids carry it, of this deploy's."""
    outcome = (obj.get("verdict") or {}).get("outcome")
    said = json.dumps([window_id, obj.get("state"), outcome, obj.get("rollback")], sort_keys=True)
    return hashlib.sha256(said.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where a reconnecting client's `Last-Event-ID` says it stopped: the rounds it was
    sent, and the deploy object's state and fingerprint it last had."""

    rounds: int
    state: str
    fingerprint: str


def _resume(request: web.Request, window: DeployWindow) -> _Resume | None:
    """The `Last-Event-ID` of a reconnect, or None: none sent, or one this stream cannot
    go on from (not one of its ids, or ahead of the store), which starts over as a new
    client would, with the current deploy object as a `state` event."""
    match = _EVENT_ID.fullmatch(request.headers.get("Last-Event-ID", "").strip())
    if match is None:
        return None
    rounds, state, fingerprint = int(match[1]), match[2], match[3]
    if state not in DEPLOY_STATES or rounds > window.rounds:
        return None
    return _Resume(rounds, state, fingerprint)


async def deploy_events(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[SETTINGS]
    store = request.config_dict[STORE]
    window_id = request.match_info["id"]
    now = request_now(request)
    if not settings.server.ui:
        # the pages are off (`server.ui: false`): the stream stays, as the API route it
        # is, for API tokens; a view token or a session is the pages' way in, refused
        require_token(request, settings.server.accepted_tokens())
    allowed, until = admitted(request, settings.server, window_id, now)
    if allowed == "unauthenticated":
        raise ApiProblem(
            401, "this stream needs a bearer token, a session or a view token", headers=CHALLENGE
        )
    if allowed == "forbidden":
        raise ApiProblem(403, "the view token is expired, altered or for another deploy")
    feed = request.config_dict.get(FEED) or DeployFeed()
    with feed.subscribe(window_id) as news:  # before the first read: nothing is missed
        window = await store.get_window(window_id) if _DEPLOY_ID.match(window_id) else None
        if window is None:
            raise ApiProblem(404, f"no deploy {window_id[:64]}", slug="unknown-deploy")
        response = web.StreamResponse(headers=STREAM_HEADERS)
        if request.method == "HEAD":
            await response.prepare(request)
            await response.write_eof()  # the headers alone: a HEAD answer has no body
            return response
        resume = _resume(request, window)
        stream = _Stream(request, response, window, resume)
        await stream.read_store()  # before the headers: a store down now is a 503
        if resume is not None and stream.finished and not stream.unsent:
            # a reconnect that has every event of an ended window: 204 tells an
            # EventSource to stop reconnecting, where it would read the end again and again
            return web.Response(status=204, headers={"Cache-Control": "no-store"})
        try:
            await stream.start()
            await _follow(stream, news, until)
        except ConnectionResetError:
            # the client went away (a closed tab, `curl` stopped): the end of its stream,
            # not an error of ours (aiohttp's ClientConnectionResetError is one of these)
            log.debug("event stream of %s: the client left", window_id)
        except _ClientStalled:
            log.info(
                "event stream of %s: the client read nothing for %.0f s; closed",
                window_id,
                WRITE_TIMEOUT_S,
            )
            if request.transport is not None:
                request.transport.abort()
    return response


STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


async def _follow(stream: _Stream, news: Subscription, until: float) -> None:
    """Send the stream's events until its window has ended (or the agent stops, or the
    view token or session it was opened with expires: its client is refused then, as it
    would be on a reload, or the client leaves), then end it."""
    clock = asyncio.get_running_loop().time
    read_at = clock() + RECHECK_S
    while not stream.finished and not news.closed:
        if stream.client_left:
            return  # nothing to end: no one reads it
        left = until - request_now(stream.request)
        if left <= 0:
            break
        now = clock()
        wait = min(CLIENT_CHECK_S, left, max(read_at - now, 0.0))
        wait = min(wait, max(stream.written_at + HEARTBEAT_S - now, 0.0))
        if stream.sent_state == "scheduled":
            # look again when it goes live: no news tells that moment (nothing is written)
            live_in = stream.window.deployed_at - request_now(stream.request)
            wait = min(wait, max(live_in, 0.0) + 0.05)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await news.wake.wait()
        if news.closed:
            break  # the agent is stopping: end here; a client reconnects to its next start
        rounds, changed = news.take()
        now = clock()
        live = stream.sent_state == "scheduled" and (
            request_now(stream.request) >= stream.window.deployed_at
        )
        due = now >= read_at or live
        if rounds or changed or due:
            sent = await stream.send_rounds(rounds)
            if not sent or changed or due:
                read_at = now + RECHECK_S
                try:
                    await stream.read_store()
                except StoreError as exc:
                    # the store is down for a moment: the stream stays open (a client
                    # that reconnected would get a 503, and an EventSource gives up on
                    # that) and reads it again at its next news or recheck
                    log.debug("event stream of %s: store: %s", stream.window.id, exc)
        if clock() - stream.written_at >= HEARTBEAT_S:
            await stream.write(b": keep-alive\n\n")
    await stream.response.write_eof()


class _Stream:
    """One client's event stream: what it has been sent so far."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        window: DeployWindow,
        resume: _Resume | None = None,
    ) -> None:
        self.request = request
        self.response = response
        self.window = window
        self.rollback: RollbackIntent | None = None
        self.seen_rounds = window.rounds if resume is None else resume.rounds
        self.sent: str | None = None if resume is None else resume.fingerprint
        self.sent_state: str | None = None if resume is None else resume.state
        self.unsent: list[bytes] = []
        """Frames written before the response started (`start`)."""
        self.started = False
        self.written_at = asyncio.get_running_loop().time()

    @property
    def finished(self) -> bool:
        rollback = self.rollback
        return not self.window.active and (rollback is None or rollback.state != "pending")

    @property
    def client_left(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    @property
    def event_id(self) -> str:
        """Where the client is once it has this event: the rounds it was sent, and the
        state and fingerprint of the deploy object it last had (so a reconnect with it
        goes on from the store, on any replica, however long it was away)."""
        return f"{self.seen_rounds}.{self.sent_state}.{self.sent}"

    async def start(self) -> None:
        """Send the headers and what was read before them."""
        await self.response.prepare(self.request)
        self.started = True
        frames, self.unsent = self.unsent, []
        if frames:
            await self.write(b"".join(frames))

    async def write(self, frame: bytes) -> None:
        if not self.started:
            self.unsent.append(frame)
            return
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.response.write(frame)
        except TimeoutError:
            raise _ClientStalled from None
        self.written_at = asyncio.get_running_loop().time()

    async def send_rounds(self, rounds: list[RoundRecord]) -> bool:
        """Send the rounds the feed brought, in order; False on a gap (read the store), or
        when the stream last said `scheduled` (its `watching` goes before its rounds)."""
        if rounds and self.sent_state == "scheduled":
            return False
        for record in sorted(rounds, key=lambda r: r.number):
            if record.number <= self.seen_rounds:
                continue
            if record.number != self.seen_rounds + 1:
                return False
            self.window.rounds = record.number
            await self._round(record)
        return True

    async def _round(self, record: RoundRecord) -> None:
        data = round_event(record, self.window, request_now(self.request))
        self.seen_rounds = record.number
        await self.write(_frame("round", data, self.event_id))

    async def read_store(self) -> None:
        """Catch up from the store: rounds not sent yet, and the deploy object if its
        state, verdict outcome or rollback changed (always, the first time)."""
        store = self.request.config_dict[STORE]
        window_id = self.window.id
        self.window = await store.get_window(window_id) or self.window
        failing = (self.window.verdict or {}).get("outcome") == "fail"
        if not self.window.active or failing or self.rollback is not None:
            # the rollback, then the window again: a delivery that lands between the two
            # reads is then seen as `rolled_back` with a delivered rollback, never as a
            # `failed` window whose rollback was delivered (which would end the stream)
            self.rollback = await store.get_rollback(window_id)
            self.window = await store.get_window(window_id) or self.window
            pending = self.rollback is not None and self.rollback.state == "pending"
            if pending and self.window.state == "rolled_back":
                # delivered between the two reads, and the same transaction made the
                # window rolled_back: read the rollback again rather than send a pair
                # the store never held (rolled_back with its rollback still pending)
                self.rollback = await store.get_rollback(window_id)
        now = request_now(self.request)
        server = self.request.config_dict[SETTINGS].server
        page = deploy_page_url(server, window_id, now=now)
        # with the clock, as the API shows it: `scheduled` while deployed_at is ahead
        current = deploy_object(self.window, self.rollback, page=page, now=now)
        if self.sent_state == "scheduled" and current["state"] == "watching":
            await self._send(current)  # it went live: say so before its first round
        if self.sent is not None and self.window.rounds > self.seen_rounds:
            # rounds stored since the client's last: missed news, or a reconnect's
            for record in await store.rounds(window_id):
                if record.number > self.seen_rounds:
                    await self._round(record)
        self.seen_rounds = max(self.seen_rounds, self.window.rounds)
        await self._send(current)

    async def _send(self, current: dict[str, Any]) -> None:
        """The deploy object as a `state` event if its state changed, else as a `rollback`
        event if its verdict or rollback did; nothing if neither."""
        fingerprint = _fingerprint(self.window.id, current)
        if fingerprint != self.sent:
            self.sent = fingerprint
            event = "state" if current["state"] != self.sent_state else "rollback"
            self.sent_state = current["state"]
            await self.write(_frame(event, current, self.event_id))

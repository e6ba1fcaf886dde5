"""`GET /v1/deploys/{id}/events`: a deploy's live events as Server-Sent Events (contract §8).

First the current deploy object as a `state` event (so a late joiner starts from the
truth), then a `round` event after each stored round and a `state` event on each change
of the deploy object's `state` (contract section 8: one per change, so a client can list
the states it went through). What changes without a state change, a rollback's attempts
and its outcome once the window has failed, goes out as a `rollback` event with the same
deploy object; a scheduled window's start (its `scheduled` flag cleared, its `state`
still `watching`) as a `started` event. The stream ends once the window has ended and no
rollback delivery is pending. Everything sent is read from the store, by one reader per
deploy for all of its streams (`agent.web.reader`): the feed only says when to look (of
another replica's writes too, on PostgreSQL), and a periodic re-read catches what no
news told.

Event ids are the stream's position, not a counter of this process: the rounds sent, and
the state and a digest of the deploy object sent last. So a reconnect's `Last-Event-ID`
goes on from the store, on any replica and after any restart, with no buffer to outgrow
(the rounds are kept with their window); only the states a window went through while the
client was away are not replayed one by one, as the store keeps the last one alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.api.auth import (
    CHALLENGE,
    SEVERAL_AUTHORIZATIONS,
    TOKEN_NOT_ACCEPTED,
    authorizations,
    bearer_token,
    require_token,
)
from agent.api.problems import ApiProblem
from agent.api.routes import CLOCK
from agent.appkeys import SETTINGS, STORE
from agent.records import DEPLOY_STATES, deploy_id_as_stored
from agent.web.access import admitted
from agent.web.feed import FEED, DeployFeed
from agent.web.reader import DeployReader, Follower, Snapshot, following
from agent.web.times import request_now
from agent.web.view import round_event
from common.durations import format_duration

log = logging.getLogger("postflight.api")

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
RETRY_MS = (1000, 3000)
"""The reconnect delay each stream asks of its EventSource (`retry:`), drawn in this
range: a stream ends on purpose when the agent stops (the browser reconnects to its next
start or another replica, from its last event), when the window ends (a reconnect gets
204) or when its view token expires (403). Browsers wait 3 s (Chrome) to 5 s (Firefox)
by default, and every tab of a stopped replica came back in the same instant; drawn per
stream, the reconnects of fifty tabs spread over two seconds, about as soon."""
_EVENT_ID = re.compile(r"(\d{1,9})\.([a-z_]{1,16})\.([0-9a-f]{12})")


class _ClientStalled(Exception):
    """The client read nothing for `WRITE_TIMEOUT_S`."""


def _frame(event: str, data: Any, event_id: str) -> bytes:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {text}\n\n".encode()


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where a reconnecting client's `Last-Event-ID` says it stopped: the rounds it was
    sent, and the deploy object's state and fingerprint it last had."""

    rounds: int
    state: str
    fingerprint: str


def _resume(request: web.Request) -> _Resume | None:
    """The `Last-Event-ID` of a reconnect, or None: none sent, or not one of the
    stream's ids (which starts over as a new client would, with the current deploy object
    as a `state` event; so does one ahead of the store, `_Stream.start_over`)."""
    match = _EVENT_ID.fullmatch(request.headers.get("Last-Event-ID", "").strip())
    if match is None:
        return None
    rounds, state, fingerprint = int(match[1]), match[2], match[3]
    if state not in DEPLOY_STATES:
        return None
    return _Resume(rounds, state, fingerprint)


def _contract_state(shown: str | None) -> str | None:
    """The deploy object's `state` for one as the page says it: a scheduled window is
    `watching` (contract section 2)."""
    return "watching" if shown == "scheduled" else shown


def _refused(request: web.Request) -> str:
    """Why a stream was refused, as the API's 401 says it: a token sent and not accepted
    read as if none had been sent ("needs a bearer token")."""
    if len(authorizations(request)) > 1:
        return SEVERAL_AUTHORIZATIONS
    if bearer_token(request) is not None:
        return TOKEN_NOT_ACCEPTED
    return "this stream needs a bearer token, a session or a view token"


async def deploy_events(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[SETTINGS]
    asked = request.match_info["id"]
    window_id = deploy_id_as_stored(asked) or asked  # a ULID's case is no part of it
    now = request_now(request)
    if not settings.server.ui:
        # the pages are off (`server.ui: false`): the stream stays, as the API route it
        # is, for API tokens; a view token or a session is the pages' way in, refused
        require_token(request, settings.server.accepted_tokens())
    allowed, until = admitted(request, settings.server, window_id, now)
    if allowed == "unauthenticated":
        raise ApiProblem(401, _refused(request), headers=CHALLENGE)
    if allowed == "forbidden":
        raise ApiProblem(403, "the view token is expired, altered or for another deploy")
    if deploy_id_as_stored(window_id) is None:
        raise ApiProblem(404, f"no deploy {window_id[:64]}", slug="unknown-deploy")
    feed = request.config_dict.get(FEED) or DeployFeed()
    resume = _resume(request)
    follower = Follower(None if resume is None else resume.rounds)
    clock = request.config_dict.get(CLOCK)
    with following(
        feed, window_id, follower, request.config_dict[STORE], settings, clock or time.time
    ) as reader:
        await reader.fresh()  # before the headers: a store down now is a 503
        snapshot = reader.snapshot
        if snapshot is None or snapshot.window is None:
            raise ApiProblem(404, f"no deploy {window_id[:64]}", slug="unknown-deploy")
        response = web.StreamResponse(headers=STREAM_HEADERS)
        stream = _Stream(request, response, reader, follower, resume)
        await stream.catch_up()
        if resume is not None and stream.finished and not stream.unsent:
            # a reconnect that has every event of an ended window: 204 tells an
            # EventSource to stop reconnecting, where it would read the end again and again
            return web.Response(status=204, headers={"Cache-Control": "no-store"})
        if request.method == "HEAD":
            # the headers alone (a HEAD answer has no body), and the status a GET gets;
            # a page left while it asked (the browser drops the request) is no error
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionResetError:
                log.debug("event stream of %s: the client left before the HEAD's answer", window_id)
            return response
        try:
            await stream.start()
            await _follow(stream, until)
        except ConnectionResetError:
            # the client went away (a closed tab, `curl` stopped): the end of its stream,
            # not an error of ours (aiohttp's ClientConnectionResetError is one of these)
            log.debug("event stream of %s: the client left", window_id)
        except _ClientStalled:
            log.info(
                "event stream of %s: the client read nothing for %s; closed",
                window_id,
                format_duration(WRITE_TIMEOUT_S),
            )
            if request.transport is not None:
                request.transport.abort()
    return response


STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


async def _follow(stream: _Stream, until: float) -> None:
    """Send the stream's events until its window has ended (or the agent stops, or the
    view token or session it was opened with expires: its client is refused then, as it
    would be on a reload, or the client leaves), then end it."""
    clock = asyncio.get_running_loop().time
    wake = stream.follower.wake
    while not stream.finished and not stream.reader.closed:
        if stream.client_left:
            return  # nothing to end: no one reads it
        left = until - request_now(stream.request)
        if left <= 0:
            break
        wait = min(CLIENT_CHECK_S, left, max(stream.written_at + HEARTBEAT_S - clock(), 0.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await wake.wait()
        wake.clear()
        if stream.reader.closed:
            break  # the agent is stopping: end here; a client reconnects to its next start
        await stream.catch_up()
        if clock() - stream.written_at >= HEARTBEAT_S:
            # a comment line in the block to come, not a block of its own: SSE clients
            # that go by blocks (httpx-sse) read a block without data as an empty event
            await stream.write(b": keep-alive\n")
    await stream.response.write_eof()


class _Stream:
    """One client's event stream: what it has been sent so far, from its deploy's reader."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        reader: DeployReader,
        follower: Follower,
        resume: _Resume | None,
    ) -> None:
        self.request = request
        self.response = response
        self.reader = reader
        self.follower = follower
        snapshot = reader.snapshot
        assert snapshot is not None
        if resume is not None and resume.rounds > snapshot.rounds:
            resume = None  # ahead of the store: not an id this stream can go on from
        self.sent: str | None = None if resume is None else resume.fingerprint
        self.sent_state: str | None = None if resume is None else resume.state
        self.had: Snapshot = snapshot
        """The snapshot this stream has caught up to."""
        self.unsent: list[bytes] = []
        """Frames written before the response started (`start`)."""
        self.started = False
        self.retry = f"retry: {random.randint(*RETRY_MS)}\n".encode()  # a spread, no secret
        """The reconnect delay asked of the client, until it goes with the first event."""
        self.written_at = asyncio.get_running_loop().time()
        if resume is None:
            follower.seen_rounds = None  # a new client: from the snapshot it gets first

    @property
    def finished(self) -> bool:
        return self.had.finished and (self.follower.seen_rounds or 0) >= self.had.rounds

    @property
    def client_left(self) -> bool:
        transport = self.request.transport
        return transport is None or transport.is_closing()

    @property
    def event_id(self) -> str:
        """Where the client is once it has this event: the rounds it was sent, and the
        state and fingerprint of the deploy object it last had (so a reconnect with it
        goes on from the store, on any replica, however long it was away)."""
        return f"{self.follower.seen_rounds or 0}.{self.sent_state}.{self.sent}"

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
        if self.retry and not frame.startswith(b":"):
            # with the first event, not in a block of its own: SSE clients that go by
            # blocks (httpx-sse) read a block without data as an empty event, first
            frame, self.retry = self.retry + frame, b""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.response.write(frame)
        except TimeoutError:
            raise _ClientStalled from None
        self.written_at = asyncio.get_running_loop().time()

    async def catch_up(self) -> None:
        """Send what the reader has that this stream has not had: a new client the deploy
        object first; then the rounds stored since the stream's last (a scheduled
        window's `started` before them), then the deploy object if its state, verdict
        outcome or rollback changed."""
        reader, follower = self.reader, self.follower
        snapshot = reader.snapshot
        if snapshot is None or snapshot.window is None:
            return
        self.had = snapshot
        if self.sent is None:
            follower.seen_rounds = snapshot.rounds  # a new client starts here
        elif self.sent_state == "scheduled" and snapshot.state == "watching":
            await self._send(snapshot)  # it went live: say so before its first round
        seen = follower.seen_rounds or 0
        for number in range(seen + 1, reader.known + 1):
            record = reader.round(number)
            if record is None:
                reader.ask()  # not kept (it cannot be, as kept): read it, then go on
                return
            data = round_event(record, reader.window or snapshot.window, request_now(self.request))
            follower.seen_rounds = number
            await self.write(_frame("round", data, self.event_id))
        await self._send(snapshot)

    async def _send(self, snapshot: Snapshot) -> None:
        """The deploy object as a `state` event if its contract state changed, as a
        `started` event if a scheduled window started (`watching` before and after), else
        as a `rollback` event if its verdict or rollback did; nothing if none did."""
        if snapshot.fingerprint != self.sent:
            self.sent = snapshot.fingerprint
            if _contract_state(snapshot.state) != _contract_state(self.sent_state):
                event = "state"
            elif self.sent_state == "scheduled" and snapshot.state == "watching":
                event = "started"
            else:
                event = "rollback"
            self.sent_state = snapshot.state
            await self.write(_frame(event, snapshot.current, self.event_id))

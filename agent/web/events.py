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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

from aiohttp import web

from agent.api.auth import CHALLENGE, require_token
from agent.api.models import deploy_object
from agent.api.problems import ApiProblem
from agent.appkeys import SETTINGS, STORE
from agent.records import DEPLOY_ID_PATTERN, DeployWindow, RollbackIntent, RoundRecord
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
"""A comment line this often keeps proxies from closing an idle stream."""
_DEPLOY_ID = re.compile(DEPLOY_ID_PATTERN)


def _frame(event: str, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n".encode()


def _fingerprint(obj: dict[str, Any]) -> str:
    """What makes an event worth sending besides a round: the state, the verdict's
    outcome, the rollback's progress (a round's new evidence travels in its `round`
    event)."""
    outcome = (obj.get("verdict") or {}).get("outcome")
    return json.dumps([obj.get("state"), outcome, obj.get("rollback")], sort_keys=True)


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
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()  # the headers alone: a HEAD answer has no body
            return response
        try:
            await _follow(_Stream(request, response, window), news, until)
        except ConnectionResetError:
            # the client went away (a closed tab, `curl` stopped): the end of its stream,
            # not an error of ours (aiohttp's ClientConnectionResetError is one of these)
            log.debug("event stream of %s: the client left", window_id)
    return response


async def _follow(stream: _Stream, news: Subscription, until: float) -> None:
    """Send the stream's events until its window has ended (or the agent stops, or the
    view token or session it was opened with expires: its client is refused then, as it
    would be on a reload), then end it."""
    await stream.read_store()
    idle = 0.0
    while not stream.finished and not news.closed:
        left = until - request_now(stream.request)
        if left <= 0:
            break
        wait = min(RECHECK_S, left)
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
        if not rounds and not changed:
            idle += wait
            if idle >= HEARTBEAT_S:
                idle = 0.0
                await stream.response.write(b": keep-alive\n\n")
        else:
            idle = 0.0
        if not await stream.send_rounds(rounds) or changed or not (rounds or changed):
            await stream.read_store()
    await stream.response.write_eof()


class _Stream:
    """One client's event stream: what it has been sent so far."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, window: DeployWindow
    ) -> None:
        self.request = request
        self.response = response
        self.window = window
        self.rollback: RollbackIntent | None = None
        self.seen_rounds = window.rounds
        self.sent: str | None = None
        self.sent_state: str | None = None

    @property
    def finished(self) -> bool:
        rollback = self.rollback
        return not self.window.active and (rollback is None or rollback.state != "pending")

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
        await self.response.write(_frame("round", data))
        self.seen_rounds = record.number

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
            for record in await store.rounds(window_id):
                if record.number > self.seen_rounds:
                    await self._round(record)
        self.seen_rounds = max(self.seen_rounds, self.window.rounds)
        await self._send(current)

    async def _send(self, current: dict[str, Any]) -> None:
        """The deploy object as a `state` event if its state changed, else as a `rollback`
        event if its verdict or rollback did; nothing if neither."""
        fingerprint = _fingerprint(current)
        if fingerprint != self.sent:
            self.sent = fingerprint
            event = "state" if current["state"] != self.sent_state else "rollback"
            self.sent_state = current["state"]
            await self.response.write(_frame(event, current))

"""`GET /v1/deploys/{id}/events`: a deploy's live events as Server-Sent Events (contract §8).

First the current deploy object as a `state` event (so a late joiner starts from the
truth), then a `round` event after each stored round and a `state` event whenever the
deploy object's state, verdict or rollback changes; the stream ends once the window has
ended and no rollback delivery is pending. Everything sent is read from the store:
the feed only says when to look, and a periodic re-read catches what another replica
wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from aiohttp import web

from agent.api.auth import CHALLENGE
from agent.api.problems import ApiProblem
from agent.api.schemas import DEPLOY_ID_PATTERN, deploy_object
from agent.appkeys import SETTINGS, STORE
from agent.records import DeployWindow, RollbackIntent
from agent.web.access import access
from agent.web.feed import DeployFeed
from agent.web.links import deploy_page_url
from agent.web.pages import request_now
from agent.web.view import round_event

FEED = web.AppKey("deploy_feed", DeployFeed)
RECHECK_S = 2.0
"""Without a wake-up from this process's feed, look at the store this often (another
replica may be watching the window)."""
HEARTBEAT_S = 15.0
"""A comment line this often keeps proxies from closing an idle stream."""
_DEPLOY_ID = re.compile(DEPLOY_ID_PATTERN)


def _frame(event: str, data: Any) -> bytes:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f"event: {event}\ndata: {text}\n\n".encode()


def _fingerprint(obj: dict[str, Any]) -> str:
    """What makes a `state` event worth sending: the state, the verdict's outcome, the
    rollback's progress (a round's new evidence travels in its `round` event)."""
    outcome = (obj.get("verdict") or {}).get("outcome")
    return json.dumps([obj.get("state"), outcome, obj.get("rollback")], sort_keys=True)


async def deploy_events(request: web.Request) -> web.StreamResponse:
    settings = request.config_dict[SETTINGS]
    store = request.config_dict[STORE]
    window_id = request.match_info["id"]
    now = request_now(request)
    allowed = access(request, settings.server, window_id, now)
    if allowed == "unauthenticated":
        raise ApiProblem(
            401, "this stream needs a bearer token, a session or a view token", headers=CHALLENGE
        )
    if allowed == "forbidden":
        raise ApiProblem(403, "the view token is expired, altered or for another deploy")
    feed = request.config_dict.get(FEED) or DeployFeed()
    with feed.subscribe(window_id) as changed:  # before the first read: no change is missed
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
        rollback = await store.get_rollback(window_id)
        window = await store.get_window(window_id) or window  # after the rollback: see below
        current = _deploy(request, window, rollback)
        sent = _fingerprint(current)
        seen_rounds = window.rounds
        await response.write(_frame("state", current))
        idle = 0.0
        while not _finished(window, rollback):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RECHECK_S)
            if changed.is_set():
                changed.clear()  # before reading: a change during the reads wakes us again
                idle = 0.0
            else:
                idle += RECHECK_S
                if idle >= HEARTBEAT_S:
                    idle = 0.0
                    await response.write(b": keep-alive\n\n")
            # the rollback first, then the window: a delivery that lands between the two
            # reads is then seen as `rolled_back` with a delivered rollback, never as a
            # `failed` window whose rollback was delivered (which would end the stream early)
            rollback = await store.get_rollback(window_id)
            window = await store.get_window(window_id) or window
            if window.rounds > seen_rounds:
                for record in await store.rounds(window_id):
                    if record.number > seen_rounds:
                        data = round_event(record, window, request_now(request))
                        await response.write(_frame("round", data))
                seen_rounds = window.rounds
            current = _deploy(request, window, rollback)
            if _fingerprint(current) != sent:
                sent = _fingerprint(current)
                await response.write(_frame("state", current))
        await response.write_eof()
    return response


def _deploy(
    request: web.Request, window: DeployWindow, rollback: RollbackIntent | None
) -> dict[str, Any]:
    server = request.config_dict[SETTINGS].server
    page = deploy_page_url(server, window.id, now=request_now(request))
    return deploy_object(window, rollback, page=page)


def _finished(window: DeployWindow, rollback: RollbackIntent | None) -> bool:
    return not window.active and (rollback is None or rollback.state != "pending")

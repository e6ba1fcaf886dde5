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
    """What makes a `state` event worth sending: state, verdict, rollback, round count."""
    keys = ("state", "verdict", "rollback", "rounds")
    return json.dumps({k: obj.get(k) for k in keys}, sort_keys=True)


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
    window = await store.get_window(window_id) if _DEPLOY_ID.match(window_id) else None
    if window is None:
        raise ApiProblem(404, f"no deploy {window_id[:64]}", slug="unknown-deploy")
    feed = request.config_dict.get(FEED) or DeployFeed()

    def obj(win: Any, rollback: Any) -> dict[str, Any]:
        page = deploy_page_url(settings.server, win.id, now=request_now(request))
        return deploy_object(win, rollback, page=page)

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    with feed.subscribe(window_id) as changed:
        rollback = await store.get_rollback(window_id)
        current = obj(window, rollback)
        sent = _fingerprint(current)
        seen_rounds = window.rounds
        await response.write(_frame("state", current))
        idle = 0.0
        while not _finished(window, rollback):
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), RECHECK_S)
            if not changed.is_set():
                idle += RECHECK_S
                if idle >= HEARTBEAT_S:
                    idle = 0.0
                    await response.write(b": keep-alive\n\n")
            window = await store.get_window(window_id) or window
            if window.rounds > seen_rounds:
                for record in await store.rounds(window_id):
                    if record.number > seen_rounds:
                        data = round_event(record, window, request_now(request))
                        await response.write(_frame("round", data))
                seen_rounds = window.rounds
            rollback = await store.get_rollback(window_id)
            current = obj(window, rollback)
            if _fingerprint(current) != sent:
                sent = _fingerprint(current)
                await response.write(_frame("state", current))
    await response.write_eof()
    return response


def _finished(window: Any, rollback: Any) -> bool:
    return not window.active and (rollback is None or rollback.state != "pending")

"""A session made at the login form from an API token ends when that token is no longer
accepted: an engineer whose leaked token is taken out of the configuration (the agent
restarted on it) is signed out at once, where the session it had made opened the pages
for its 12 hours, since every session was signed alike, with no word of its token."""

from __future__ import annotations

import time

import pytest

from agent.appkeys import SETTINGS
from agent.web.access import session_subject
from agent.web.links import sign, signing_key
from tests.e2e.conftest import TOKEN
from tests.web.conftest import ONE_CHROMIUM, JourneyAgent
from tests.web.sse import events

pytestmark = [pytest.mark.e2e, ONE_CHROMIUM]

ALICE = "alice-token-0123456789abcdef"


async def test_a_session_ends_with_the_token_it_was_made_from(
    journey_agent: JourneyAgent,
) -> None:
    first = await journey_agent(server=f"named_tokens: {{alice: {ALICE}}}")
    deploy = await first.register("production", "v1")
    page = f"/deploys/{deploy['id']}"
    sessions = {}
    for token in (ALICE, TOKEN):
        form = {"token": token, "next": page}
        async with first.http.post(f"{first.url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            sessions[token] = f"postflight_session={r.cookies['postflight_session'].value}"
        async with first.http.get(f"{first.url}{page}", headers={"Cookie": sessions[token]}) as r:
            assert r.status == 200
    await first.stop()
    # alice's token revoked; the signing key (the first API token) unchanged
    again = await journey_agent()
    for path in (page, "/deploys", f"/v1/deploys/{deploy['id']}/events"):
        async with again.http.get(
            f"{again.url}{path}", headers={"Cookie": sessions[ALICE]}, allow_redirects=False
        ) as r:
            assert r.status == 401, (path, r.status)
        async with again.http.get(
            f"{again.url}{path}", headers={"Cookie": sessions[TOKEN]}, allow_redirects=False
        ) as r:
            assert r.status == 200, (path, r.status)  # a token still accepted keeps its own


async def test_a_session_past_its_expiry_opens_nothing_and_its_stream_ends_then(
    journey_agent: JourneyAgent,
) -> None:
    """The agent checks a session's own signed expiry, not the browser's `Max-Age` alone
    (a cookie kept past it, copied, or from a browser whose clock is behind): past its 12
    hours it opens no page, list or stream, and a stream it opened ends at that moment
    while the window goes on."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")  # a 30 s window
    key = signing_key(agent.app[SETTINGS].server)
    subject = session_subject(key, TOKEN)
    page = f"/deploys/{deploy['id']}"
    stream = f"/v1/deploys/{deploy['id']}/events"
    expired = {"Cookie": f"postflight_session={sign(key, subject, time.time() - 1)}"}
    for path in (page, "/deploys", stream):
        async with agent.http.get(f"{agent.url}{path}", headers=expired) as r:
            assert r.status == 401, (path, r.status)
    ending = {"Cookie": f"postflight_session={sign(key, subject, time.time() + 3)}"}
    async with agent.http.get(f"{agent.url}{page}", headers=ending) as r:
        assert r.status == 200
    async with agent.http.get(f"{agent.url}{stream}", headers=ending) as r:
        assert r.status == 200
        seen = [e async for e in events(r)]  # until the stream ends by itself
    assert seen[0].name == "state"
    assert (await agent.get(deploy["id"]))["state"] == "watching"  # the window goes on
    async with agent.http.get(f"{agent.url}{stream}", headers=ending) as r:
        assert r.status == 401

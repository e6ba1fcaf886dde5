"""A session made at the login form from an API token ends when that token is no longer
accepted: an engineer whose leaked token is taken out of the configuration (the agent
restarted on it) is signed out at once, where the session it had made opened the pages
for its 12 hours, since every session was signed alike, with no word of its token."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TOKEN
from tests.web.conftest import ONE_CHROMIUM, JourneyAgent

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

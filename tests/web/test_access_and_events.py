"""Who may open a deploy page and its live events, and what the event stream says:
view tokens for one deploy only, expiring; bearer and session; `server.ui: false`;
`state` first for a late joiner, `round` per stored round, the end with the window."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from yarl import URL

from agent.api.models import CLOCK_SKEW_S
from agent.appkeys import SETTINGS
from agent.web import events as events_module
from agent.web.feed import FEED
from agent.web.links import sign, signing_key
from agent.web.pages import prefers_html
from tests.e2e.conftest import SECRET, TOKEN, AgentFactory, RunningAgent
from tests.receivers import JsonSink
from tests.web.conftest import ALERTING, JourneyAgent
from tests.web.sse import events
from tests.web.target import JourneyTarget, journey_environment

pytestmark = pytest.mark.e2e


async def status(agent: RunningAgent, path: str, **headers: str) -> int:
    async with agent.http.get(f"{agent.url}{path}", headers=headers) as r:
        return r.status  # not reading the body: an event stream runs until its window ends


def view_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["view"][0]


async def test_a_view_token_opens_its_deploy_only_and_not_once_expired_or_altered(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    one = await agent.register("production", "v1")
    two = await agent.register("production", "v2")  # supersedes one; both have pages
    token = view_of(one["links"]["page"])
    key = signing_key(agent.app[SETTINGS].server)

    assert await status(agent, f"/deploys/{one['id']}?view={token}") == 200
    assert await status(agent, f"/v1/deploys/{one['id']}/events?view={token}") == 200
    assert await status(agent, f"/deploys/{two['id']}?view={token}") == 403
    assert await status(agent, f"/v1/deploys/{two['id']}/events?view={token}") == 403
    assert await status(agent, f"/deploys?view={token}") == 403
    assert await status(agent, f"/v1/deploys/{one['id']}?view={token}") == 401  # the API
    expired = sign(key, one["id"], time.time() - 1)
    assert await status(agent, f"/deploys/{one['id']}?view={expired}") == 403
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert await status(agent, f"/deploys/{one['id']}?view={tampered}") == 403
    longer = sign(key, one["id"], time.time() + 10**6).split(".")
    stretched = f"{longer[0]}.{int(longer[1]) + 1}.{longer[2]}"
    assert await status(agent, f"/deploys/{one['id']}?view={stretched}") == 403
    assert await status(agent, f"/deploys/{one['id']}?view=") == 403

    # no credentials: 401 (the login form); a bearer token opens everything
    assert await status(agent, f"/deploys/{one['id']}") == 401
    assert await status(agent, f"/v1/deploys/{one['id']}/events") == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert await status(agent, f"/deploys/{one['id']}", **bearer) == 200
    assert await status(agent, "/deploys?environment=production&state=superseded", **bearer) == 200
    assert await status(agent, f"/deploys/{one['id']}", Authorization="Bearer nope") == 401
    # the sign-in form says the token sent was refused (it read as if none had been sent)
    nope = {"Authorization": "Bearer nope"}
    async with agent.http.get(f"{agent.url}/deploys/{one['id']}", headers=nope) as r:
        assert "That token is not accepted." in await r.text()
    async with agent.http.get(f"{agent.url}/deploys/{one['id']}") as r:
        assert "not accepted" not in await r.text()

    # the list, filtered
    async with agent.http.get(f"{agent.url}/deploys?state=superseded", headers=bearer) as r:
        listed = await r.text()
    assert one["id"] in listed and two["id"] not in listed
    async with agent.http.get(f"{agent.url}/deploys?environment=production", headers=bearer) as r:
        listed = await r.text()
    assert one["id"] in listed and two["id"] in listed


async def test_login_sets_a_session_cookie_that_is_not_the_api_token(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    form = {"token": "wrong", "next": f"/deploys/{deploy['id']}"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert r.status == 401
    form["token"] = TOKEN
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] == f"/deploys/{deploy['id']}"
        cookie = r.cookies["postflight_session"]
        assert TOKEN not in cookie.value
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
    session = f"postflight_session={cookie.value}"
    assert await status(agent, f"/deploys/{deploy['id']}", Cookie=session) == 200
    assert await status(agent, f"/v1/deploys/{deploy['id']}/events", Cookie=session) == 200
    assert await status(agent, f"/deploys/{deploy['id']}", Cookie=session + "x") == 401
    form["next"] = "//evil.example/steal"
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert r.headers["Location"] == "/deploys"


async def test_a_signed_in_engineer_opens_an_alert_link_whose_view_token_expired(
    journey_agent: JourneyAgent,
) -> None:
    """A week-old alert's link carries an expired view token: signed in (or with an API
    token), the engineer sees the page, as the 403's "sign in" advice promises; before,
    the token alone decided and every credential beside it was a 403 all the same."""
    agent = await journey_agent()
    one = await agent.register("production", "v1")
    two = await agent.register("production", "v2")
    key = signing_key(agent.app[SETTINGS].server)
    expired = sign(key, one["id"], time.time() - 1)
    other = view_of(two["links"]["page"])  # a link of another deploy
    form = {"token": TOKEN, "next": "/deploys"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        session = f"postflight_session={r.cookies['postflight_session'].value}"
    bearer = f"Bearer {TOKEN}"

    for view in (expired, other):
        page, stream = (
            f"/deploys/{one['id']}?view={view}",
            f"/v1/deploys/{one['id']}/events?view={view}",
        )
        assert await status(agent, page, Cookie=session) == 200
        assert await status(agent, stream, Cookie=session) == 200
        assert await status(agent, page, Authorization=bearer) == 200
        assert await status(agent, stream, Authorization=bearer) == 200
        assert await status(agent, page) == 403  # the link alone: refused, as before
        assert await status(agent, stream) == 403
        assert await status(agent, page, Authorization="Bearer nope") == 403
    assert await status(agent, f"/deploys?view={expired}", Cookie=session) == 200
    assert await status(agent, f"/deploys?view={expired}") == 403
    # the 403 of the link alone offers the sign-in it advises, back to this deploy's page
    async with agent.http.get(f"{agent.url}/deploys/{one['id']}?view={expired}") as r:
        refused = await r.text()
    assert r.status == 403 and 'action="/login"' in refused
    assert f'name="next" value="/deploys/{one["id"]}"' in refused
    # the page signed in does not pass the dead token on to its event stream
    async with agent.http.get(
        f"{agent.url}/deploys/{one['id']}?view={expired}", headers={"Cookie": session}
    ) as r:
        page_text = await r.text()
    assert expired not in page_text and f"/v1/deploys/{one['id']}/events" in page_text


async def test_a_login_form_that_is_not_utf8_is_a_400_not_a_500(
    journey_agent: JourneyAgent,
) -> None:
    """A browser or script posting the form in another charset gets the form again,
    saying why (it was a 500 with a UnicodeDecodeError traceback in the log)."""
    agent = await journey_agent()
    url = f"{agent.url}/login"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body, headers in (
        (b"\xff\xfe", form),
        (b"token=\xff&next=/deploys", form),
        (
            b'--b\r\nContent-Disposition: form-data; name="token"\r\n\r\n\xff\r\n--b--\r\n',
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
    ):
        async with agent.http.post(url, data=body, headers=headers, allow_redirects=False) as r:
            assert r.status == 400, body
            assert r.content_type == "text/html"
            assert "UTF-8" in await r.text()
            assert "postflight_session" not in r.cookies


async def test_login_goes_to_no_next_with_a_control_character_or_space(
    journey_agent: JourneyAgent,
) -> None:
    """A browser strips tabs and newlines from a Location, so `/<TAB>/evil.example` is
    `//evil.example`, another site; a CR or LF cannot be written in a header at all (the
    connection was dropped with a traceback). Such a `next` goes to /deploys, on the form
    and after it."""
    agent = await journey_agent()
    for target in ("/\t/evil.example/x", "/\n/evil.example", "/x\r\nSet-Cookie: a=b", "/ /x"):
        form = {"token": TOKEN, "next": target}
        async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, target
            assert r.headers["Location"] == "/deploys", target
        async with agent.http.get(f"{agent.url}/login", params={"next": target}) as r:
            assert 'name="next" value="/deploys"' in await r.text(), target
    form = {"token": TOKEN, "next": "/deploys?state=passed&cursor=1_dep_x"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert r.headers["Location"] == "/deploys?state=passed&cursor=1_dep_x"


async def test_pages_are_off_with_ui_false(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent(server="ui: false")
    deploy = await agent.register("production", "v1")
    assert deploy["links"]["page"] is None
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert await status(agent, f"/deploys/{deploy['id']}", **bearer) == 404
    assert await status(agent, "/deploys", **bearer) == 404
    assert await status(agent, "/deploys/static/page.css") == 404
    assert await status(agent, "/deploys/", **bearer) == 404
    assert await status(agent, f"/deploys/{deploy['id']}/", **bearer) == 404
    # the event stream is API v1 and stays for API tokens; a view token and a session are
    # the pages' ways in, and open nothing with the pages off (an alert's link sent before
    # the switch opened the stream, and all of the deploy object, for a week)
    stream = f"/v1/deploys/{deploy['id']}/events"
    assert await status(agent, stream, **bearer) == 200
    key = signing_key(agent.app[SETTINGS].server)
    view = sign(key, deploy["id"], time.time() + 600)
    session = f"postflight_session={sign(key, 'session', time.time() + 600)}"
    for refused in ({"path": f"{stream}?view={view}"}, {"path": stream, "Cookie": session}):
        async with agent.http.get(f"{agent.url}{refused.pop('path')}", headers=refused) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
            assert r.content_type == "application/problem+json"


async def test_head_of_an_event_stream_is_its_headers_alone(
    journey_agent: JourneyAgent,
) -> None:
    """HEAD answered the stream's headers, then its events as a body (which a HEAD
    response never has) until the window ended: the next request on that connection read
    them as its answer."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    path = f"/v1/deploys/{deploy['id']}/events"
    reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(agent.url).port)
    try:
        # HEAD, then another request on the same connection, as a keep-alive client sends
        writer.write(
            f"HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        async with asyncio.timeout(10):  # the window runs 30 s: a stream would outlast it
            answer = (await reader.read()).decode()
    finally:
        writer.close()
    head, _, rest = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200 ") and "Content-Type: text/event-stream" in head
    assert "Cache-Control: no-store" in head
    assert rest.startswith("HTTP/1.1 200 "), rest[:200]  # no body between the two answers
    assert rest.endswith('{"status": "ok"}'), rest[-200:]
    async with agent.http.head(f"{agent.url}{path}") as r:
        assert r.status == 401
    missing = "/v1/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ/events"
    async with agent.http.head(f"{agent.url}{missing}", headers=agent.headers) as r:
        assert r.status == 404


async def test_a_page_typed_with_a_trailing_slash_redirects_to_the_page(
    journey_agent: JourneyAgent,
) -> None:
    """`/deploys/` and `/deploys/<id>/`, as people type or paste them, were a JSON 404
    ("no such route; see /v1/openapi.json") in the browser."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    for typed, page in (
        ("/deploys/?state=watching", "/deploys?state=watching"),
        (f"/deploys/{deploy['id']}/?view=abc", f"/deploys/{deploy['id']}?view=abc"),
    ):
        async with agent.http.get(f"{agent.url}{typed}", allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (308, page), typed


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_a_browser_opening_a_deploy_object_without_a_token_is_sent_to_its_page(
    journey_agent: JourneyAgent,
) -> None:
    """A GitHub deployment status's `log_url` is the deploy object (contract section 7):
    opened from GitHub's page, the browser got a 401 JSON with no way in. It goes to the
    deploy page (303), whose sign-in comes back to it; API clients get the 401 as before."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    api, page = f"/v1/deploys/{deploy['id']}", f"/deploys/{deploy['id']}"
    browser = {"Accept": BROWSER_ACCEPT}
    async with agent.http.get(f"{agent.url}{api}", headers=browser, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (303, page)
    async with agent.http.head(f"{agent.url}{api}", headers=browser, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (303, page)
    async with agent.http.get(f"{agent.url}{api}", headers=browser) as r:
        assert r.status == 401 and r.content_type == "text/html"  # the page's sign-in
        assert f'value="{page}"' in await r.text()
    form = {"token": TOKEN, "next": page}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (303, page)
    # API clients, and any request with a token, get the API's answer as before
    for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5"):
        headers = {"Accept": accept} if accept else {}
        async with agent.http.get(
            f"{agent.url}{api}", headers=headers, skip_auto_headers=["Accept"]
        ) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer", accept
            assert r.content_type == "application/problem+json", accept
    bearer = {**browser, "Authorization": f"Bearer {TOKEN}"}
    async with agent.http.get(f"{agent.url}{api}", headers=bearer) as r:
        assert r.status == 200 and (await r.json())["id"] == deploy["id"]
    nope = {**browser, "Authorization": "Bearer nope"}
    async with agent.http.get(f"{agent.url}{api}", headers=nope, allow_redirects=False) as r:
        assert r.status == 401
    # only the deploy object has a page to go to: the list and the actions stay the API's
    async with agent.http.get(f"{agent.url}/v1/deploys", headers=browser) as r:
        assert r.status == 401
    async with agent.http.post(f"{agent.url}{api}/cancel", headers=browser) as r:
        assert r.status == 401


async def test_with_the_pages_off_a_browser_gets_the_deploy_objects_401(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent(server="ui: false")
    deploy = await agent.register("production", "v1")
    api = f"{agent.url}/v1/deploys/{deploy['id']}"
    async with agent.http.get(api, headers={"Accept": BROWSER_ACCEPT}, allow_redirects=False) as r:
        assert r.status == 401 and r.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("server", "home"),
    [("", "/deploys"), ("public_url: https://ops.example/pf/", "/pf/deploys"), ("ui: false", None)],
    ids=["default", "behind-a-prefix", "pages-off"],
)
async def test_a_browser_opening_the_agents_own_address_is_sent_to_the_deploy_list(
    journey_agent: JourneyAgent, server: str, home: str | None
) -> None:
    """The address `postflight run` logs (`listening on http://127.0.0.1:8787`), opened in
    a browser, was the API's JSON 404 ("no such route; see /v1/openapi.json"): a new user's
    first look at the pages. A browser goes to the list (303), under `public_url`'s prefix;
    an API client, another method, and everyone with the pages off keep the 404 problem."""
    agent = await journey_agent(server=server)
    browser = {"Accept": BROWSER_ACCEPT}
    for method in ("GET", "HEAD"):
        async with agent.http.request(
            method, f"{agent.url}/", headers=browser, allow_redirects=False
        ) as r:
            assert (r.status, r.headers.get("Location")) == (303 if home else 404, home), method
    if home == "/deploys":
        async with agent.http.get(f"{agent.url}/", headers=browser) as r:
            assert r.status == 401 and "Sign in" in await r.text()  # the list's sign-in form
    for accept in (None, "*/*", "application/json"):
        headers = {"Accept": accept} if accept else {}
        async with agent.http.get(
            f"{agent.url}/", headers=headers, skip_auto_headers=["Accept"]
        ) as r:
            assert r.status == 404 and r.content_type == "application/problem+json", accept
            assert (await r.json())["detail"] == "no such route; see /v1/openapi.json"
    async with agent.http.post(f"{agent.url}/", headers=browser) as r:
        assert r.status == 404 and r.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("text/*", True),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html;q=0, */*", False),
        ("application/*;q=0.2, text/html;q=0.3", True),
        ("text/html;q=oops", False),
    ],
)
def test_prefers_html_ranks_html_over_json_by_the_most_specific_range(
    accept: str, html: bool
) -> None:
    assert prefers_html(accept) is html


async def test_event_stream_starts_with_state_sends_each_round_and_ends_with_the_window(
    journey_agent: JourneyAgent, journey: JourneyTarget
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    seen: list[Any] = []
    async with agent.http.get(url, headers=agent.headers) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async for event in events(r):
            seen.append(event)
            if event.name == "round" and event.data["round"] == 2:
                journey.bad = True
    # the stream ended by itself once the window ended and the rollback settled
    assert seen[0].name == "state" and seen[0].data["id"] == deploy["id"]
    rounds = [e.data for e in seen if e.name == "round"]
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert rounds[0]["progress"]["rounds"] >= 1
    assert "journey-errors" in rounds[-1]["summary"]["rules"]
    assert rounds[-1]["summary"]["checks"]["journey"]["failure"]["step"] == "orders"
    states = [e.data["state"] for e in seen if e.name == "state"]
    assert states[0] == "watching" and states[-1] == "rolled_back"
    assert all(a != b for a, b in itertools.pairwise(states))  # one per change
    assert seen[-1].data["rollback"]["state"] == "delivered"

    # a late joiner gets the current deploy object, then the stream ends at once
    async with agent.http.get(url, headers=agent.headers) as r:
        late = [e async for e in events(r)]
    assert [e.name for e in late] == ["state"]
    assert late[0].data["state"] == "rolled_back"


async def test_a_reconnect_with_last_event_id_loses_and_repeats_nothing(
    journey_agent: JourneyAgent, journey: JourneyTarget
) -> None:
    """An EventSource reconnects (a proxy's timeout, a laptop's sleep, the agent's restart)
    with the id of the last event it had as `Last-Event-ID`. The events had no ids, so it
    started over: the `state` event again, and no `round` event for the rounds stored
    while it was away. Now it goes on from there, from the store; once it has every event
    of an ended window, a reconnect is told to stop (204)."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    first = []
    async with agent.http.get(url, headers=agent.headers) as r:
        async for event in events(r):
            first.append(event)
            if event.name == "round" and event.data["round"] == 2:
                break  # the connection drops here
    await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 4)  # stored while away
    journey.bad = True
    resumed = {**agent.headers, "Last-Event-ID": first[-1].id or ""}
    async with agent.http.get(url, headers=resumed) as r:
        assert r.status == 200
        second = [e async for e in events(r)]
    assert all(e.id for e in first + second)
    assert second[0].name == "round" and second[0].data["round"] == 3  # nothing said twice
    rounds = [e.data["round"] for e in first + second if e.name == "round"]
    assert rounds == list(range(1, len(rounds) + 1))  # nothing lost
    states = [e.data["state"] for e in first + second if e.name == "state"]
    assert states[0] == "watching" and states[-1] == "rolled_back"
    assert all(a != b for a, b in itertools.pairwise(states))
    assert second[-1].data["rollback"]["state"] == "delivered"

    # every event of the ended window had: told to stop reconnecting, with nothing sent
    done = {**agent.headers, "Last-Event-ID": second[-1].id or ""}
    async with agent.http.get(url, headers=done) as r:
        assert r.status == 204 and await r.read() == b""
    async with agent.http.head(url, headers=done) as r:
        assert r.status == 204  # as the GET: it was 200, a stream a GET would not open
    # an id of one round before the end: that round, then the end
    async with agent.http.get(url, headers=resumed) as r:
        again = [e async for e in events(r)]
    assert [e.data["round"] for e in again if e.name == "round"] == rounds[2:]
    # an id the stream cannot go on from (not one of its ids, or ahead of the store):
    # the start of a new client, the current deploy object as a `state` event
    for unknown in ("nonsense", f"999.watching.{'0' * 12}", f"1.wandering.{'0' * 12}"):
        async with agent.http.get(url, headers={**agent.headers, "Last-Event-ID": unknown}) as r:
            fresh = [e async for e in events(r)]
        assert [(e.name, e.data["state"]) for e in fresh] == [("state", "rolled_back")]


async def test_many_clients_at_once_each_get_every_event_and_leave_nothing_open(
    journey_agent: JourneyAgent,
) -> None:
    """Twenty streams of one window (a team watching a release): each gets every round
    once, in order, and the end; none is left subscribed."""
    agent = await journey_agent(window="4s", interval="500ms")
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"

    async def watch() -> list[tuple[str, Any]]:
        async with agent.http.get(url, headers=agent.headers) as r:
            return [
                (e.name, e.data["round"] if e.name == "round" else e.data["state"])
                async for e in events(r)
            ]

    seen = await asyncio.gather(*(watch() for _ in range(20)))
    final = await agent.get(deploy["id"])
    for said in seen:
        rounds = [value for name, value in said if name == "round"]
        assert rounds and rounds == list(range(rounds[0], final["rounds"] + 1))  # once each
        assert said[-1] == ("state", final["state"]) and final["state"] == "passed"
    assert agent.app[FEED].subscribers == 0


async def test_a_stream_opened_with_a_view_token_ends_when_the_token_expires(
    journey_agent: JourneyAgent,
) -> None:
    """A view token is checked when the stream opens; the stream then ran on until its
    window ended, however long after the token's expiry. It ends at the expiry now."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")  # a 30 s window
    key = signing_key(agent.app[SETTINGS].server)
    token = sign(key, deploy["id"], time.time() + 3)
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events?view={token}"
    async with agent.http.get(url) as r:
        assert r.status == 200
        seen = [e async for e in events(r)]  # until the stream ends by itself
    assert seen[0].name == "state"
    assert (await agent.get(deploy["id"]))["state"] == "watching"  # the window goes on
    assert await status(agent, f"/v1/deploys/{deploy['id']}/events?view={token}") == 403


async def test_a_scheduled_window_is_scheduled_on_its_page_and_stream_until_it_goes_live(
    journey_agent: JourneyAgent,
) -> None:
    """The API flags a window whose deployed_at is ahead `scheduled` (its state is
    `watching`, contract section 2); its page said `watching`, and nothing on its event
    stream marked the moment it went live. Now: the page says `scheduled`, the stream's
    first `state` event has the flag, and a `started` event (not a `state` event: the
    state did not change) clears it before the first round."""
    agent = await journey_agent(window="2s")
    # past the clock skew taken as now by 1 s: the registration, the page and the stream's
    # opening come well before it goes live (0.2-0.4 s at load 17)
    ahead = datetime.now(UTC) + timedelta(seconds=CLOCK_SKEW_S + 1)
    deploy = await agent.register("production", "v1", deployed_at=ahead.isoformat())
    assert deploy["state"] == "watching" and deploy["scheduled"] is True
    async with agent.http.get(f"{agent.url}/deploys/{deploy['id']}", headers=agent.headers) as r:
        page = await r.text()
    assert 'data-state="scheduled"' in page and 'data-state="watching"' not in page
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    async with agent.http.get(url, headers=agent.headers) as r:
        seen = [e async for e in events(r)]
    assert seen[0].name == "state" and seen[0].data["scheduled"] is True
    states = [e.data["state"] for e in seen if e.name == "state"]
    assert states[0] == "watching" and "watching" not in states[1:], states
    first_round = next(i for i, e in enumerate(seen) if e.name == "round")
    before = [(e.name, e.data["state"], e.data["scheduled"]) for e in seen[:first_round]]
    assert before == [("state", "watching", True), ("started", "watching", False)], before
    assert states[-1] == (await agent.get(deploy["id"]))["state"]


async def test_event_stream_of_an_unknown_deploy_is_404(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    missing = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert await status(agent, f"/v1/deploys/{missing}/events", **bearer) == 404
    assert await status(agent, f"/deploys/{missing}", **bearer) == 404


async def test_a_state_event_per_state_change_and_rollback_events_for_its_attempts(
    start_agent: AgentFactory, journey: JourneyTarget, rollback_receiver: Any, json_sink: JsonSink
) -> None:
    """The pipeline answers 503 twice, then accepts: the window's states are watching,
    failed, rolled_back, one `state` event each; the attempts in between come as
    `rollback` events, each the deploy object in its unchanged state."""
    receiver = await rollback_receiver(SECRET, script=(503, 503))
    agent = await start_agent(
        journey_environment(journey, receiver.url, SECRET), ALERTING.format(url=json_sink.url())
    )
    journey.bad = True
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    async with agent.http.get(url, headers=agent.headers) as r:
        seen = [e async for e in events(r)]

    async with agent.http.get(f"{agent.url}/v1/openapi.json") as served:
        document = await served.json()
    stream = document["paths"]["/v1/deploys/{id}/events"]["get"]["responses"]["200"]
    named = stream["content"]["text/event-stream"]["schema"]["properties"]["event"]["enum"]
    assert sorted(named) == ["rollback", "round", "state"]  # `rollback` was left out
    assert {e.name for e in seen} == set(named)
    changes = [e for e in seen if e.name != "round"]
    states = [e.data["state"] for e in changes if e.name == "state"]
    assert states == ["watching", "failed", "rolled_back"]
    for before, after in itertools.pairwise(changes):
        # a `state` event exactly where the state changed, a `rollback` event elsewhere
        assert (after.name == "state") == (after.data["state"] != before.data["state"])
    attempts = [e.data["rollback"]["attempts"] for e in changes if e.name == "rollback"]
    assert attempts and attempts == sorted(attempts)
    assert len(receiver.attempts) == 3  # at the receiver: two refused, the third taken
    last = changes[-1].data["rollback"]
    assert last["state"] == "delivered" and last["attempts"] == 3


async def test_a_stop_ends_the_live_streams_at_once_rather_than_waiting_on_them(
    journey_agent: JourneyAgent,
) -> None:
    """SIGTERM with a page open: the agent ends its event streams (cleanly, so a browser
    reconnects to the next start) instead of waiting for them to end by themselves; it
    waited out aiohttp's shutdown timeout twice, about 4 s, running rounds meanwhile."""
    agent = await journey_agent(window="30s")
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    async with agent.http.get(url, headers=agent.headers) as r:
        seen = []
        stream = events(r)
        async for event in stream:
            seen.append(event.name)
            if event.name == "round":
                break
        stopping = asyncio.get_running_loop().time()
        stop = asyncio.create_task(agent.stop())
        try:
            async for event in stream:  # the rest, until the agent ends the stream
                seen.append(event.name)
        except aiohttp.ClientPayloadError:
            seen.append("cut")  # the connection closed under it, not an end of stream
        ended = asyncio.get_running_loop().time() - stopping
        await stop
        stopped = asyncio.get_running_loop().time() - stopping
    assert seen[0] == "state" and "round" in seen and seen[-1] != "cut", seen
    assert ended < 1.0, ended
    assert stopped < 1.5, stopped


async def test_a_stream_whose_client_left_ends_with_nothing_to_send(
    journey_agent: JourneyAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp does not cancel a handler whose client left (the daemon's runner, unlike
    aiohttp's test server): a stream with nothing to send noticed only at its next write,
    for a scheduled window its heartbeat 15 s on, reading the store all the while."""
    monkeypatch.setattr(events_module, "HEARTBEAT_S", 3600.0)
    agent = await journey_agent()
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    deploy = await agent.register("production", "v1", deployed_at=ahead.isoformat())
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    feed = agent.app[FEED]
    async with agent.http.get(url, headers=agent.headers) as r:
        assert (await anext(events(r))).data["scheduled"] is True
        assert feed.subscribers == 1
        r.connection.transport.abort()  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10  # nothing is written for 30 min: only a look ends it
    while feed.subscribers:
        assert loop.time() < deadline, "the stream of a client gone is still open"
        await asyncio.sleep(0.05)


async def test_a_client_that_leaves_a_live_stream_is_no_error(
    journey_agent: JourneyAgent, caplog: pytest.LogCaptureFixture
) -> None:
    """A tab closed mid-window: the stream ends there, with no ERROR and no traceback."""
    agent = await journey_agent(interval="200ms")
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    async with agent.http.get(url, headers=agent.headers) as r:
        async for event in events(r):
            if event.name == "round":
                break
        r.connection.transport.abort()  # type: ignore[union-attr]
    await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 4)  # rounds went on
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert errors == [], [rec.getMessage()[:300] for rec in errors]


async def test_a_page_left_while_its_stream_s_head_is_asked_is_no_error(
    journey_agent: JourneyAgent,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page asks its stream's `HEAD` why a reconnect was refused (an ended session);
    a browser leaving the page then drops that request, and the agent logged an ERROR
    with a traceback ("unexpected error serving HEAD …", seen in a browser test) where a
    client gone from a GET stream is no error."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    asked = asyncio.Event()
    caught_up = events_module._Stream.catch_up

    async def after_the_client_left(self: Any) -> None:
        asked.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        transport = self.request.transport
        while transport is not None and not transport.is_closing():
            # the answer is written once the client has gone
            assert loop.time() < deadline, "the agent never saw the client leave"
            await asyncio.sleep(0.01)
            transport = self.request.transport
        await caught_up(self)

    monkeypatch.setattr(events_module._Stream, "catch_up", after_the_client_left)
    address = URL(agent.url)
    _, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(
        f"HEAD /v1/deploys/{deploy['id']}/events HTTP/1.1\r\nHost: agent\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.wait_for(asked.wait(), 10)
    writer.transport.abort()
    feed = agent.app[FEED]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while feed.subscribers:  # the HEAD's answer is done with
        assert loop.time() < deadline, "the HEAD of a client gone is still open"
        await asyncio.sleep(0.02)
    errors = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert errors == [], [rec.getMessage()[:300] for rec in errors]


async def test_an_event_stream_refusing_a_bearer_token_says_it_was_not_accepted(
    journey_agent: JourneyAgent,
) -> None:
    """A wrong token was answered "this stream needs a bearer token, a session or a view
    token", as if none had been sent: on-call looked for a missing header. It is said not
    accepted, as the API's 401 says it; one sent twice is said so."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    url = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    for headers, detail in (
        ({"Authorization": "Bearer nope"}, "the bearer token is not accepted"),
        ({}, "this stream needs a bearer token, a session or a view token"),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "this stream needs a bearer token, a session or a view token",
        ),
    ):
        async with agent.http.get(url, headers=headers) as r:
            assert (r.status, r.headers["WWW-Authenticate"]) == (401, "Bearer"), headers
            assert r.content_type == "application/problem+json"
            assert (await r.json())["detail"] == detail, headers
    twice = [("Authorization", f"Bearer {TOKEN}"), ("Authorization", "Bearer nope")]
    async with agent.http.get(url, headers=twice) as r:
        assert r.status == 401
        assert (await r.json())[
            "detail"
        ] == "send one Authorization header: this request has several"


async def test_a_view_token_sent_as_the_bearer_opens_its_page_and_stream_only(
    journey_agent: JourneyAgent,
) -> None:
    """Contract §8's event stream takes a "bearer token or view token": a client given a
    deploy's view token (an alert's link) that sent it as `Authorization: Bearer`, as it
    sends an API token, where no proxy's log keeps it, got 401 from the page and the
    stream it opens in the query. Sent so it opens the same two, and nothing more."""
    agent = await journey_agent()
    one = await agent.register("production", "v1")
    two = await agent.register("production", "v2")
    view = {"Authorization": f"Bearer {view_of(one['links']['page'])}"}
    assert await status(agent, f"/deploys/{one['id']}", **view) == 200
    assert await status(agent, f"/v1/deploys/{one['id']}/events", **view) == 200
    assert await status(agent, f"/deploys/{one['id']}?fragment=1", **view) == 200
    assert await status(agent, f"/deploys/{two['id']}", **view) == 401
    assert await status(agent, f"/v1/deploys/{two['id']}/events", **view) == 401
    assert await status(agent, "/deploys", **view) == 401
    assert await status(agent, f"/v1/deploys/{one['id']}", **view) == 401  # the API
    async with agent.http.post(
        f"{agent.url}/v1/deploys/{one['id']}/rollback", json={"reason": "x"}, headers=view
    ) as r:
        assert r.status == 401
    async with agent.http.get(f"{agent.url}/deploys/{one['id']}", headers=view) as r:
        assert "postflight_session" not in r.cookies  # a view token makes no session
    key = signing_key(agent.app[SETTINGS].server)
    expired = {"Authorization": f"Bearer {sign(key, two['id'], time.time() - 1)}"}
    assert await status(agent, f"/deploys/{two['id']}", **expired) == 401
    await agent.cancel(two["id"])


async def test_a_view_link_read_with_the_bracket_or_stop_after_it_still_opens(
    journey_agent: JourneyAgent,
) -> None:
    """An alert writes its link as a markdown autolink, `<https://…?view=v1.…>`: a reader
    (a mail's text part, a script taking the URL up to the next space) that kept the `>`,
    or a sentence's `.` or `)`, sent a token it could not have altered by hand and got
    403. What follows a whole signature is no part of the token; a changed one still is."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    token = view_of(deploy["links"]["page"])
    for tail in (">", "%3E", ").", ","):
        assert await status(agent, f"/deploys/{deploy['id']}?view={token}{tail}") == 200, tail
        events = f"/v1/deploys/{deploy['id']}/events?view={token}{tail}"
        assert await status(agent, events) == 200, tail
    async with agent.http.get(f"{agent.url}/deploys/{deploy['id']}?view={token}>") as r:
        assert f'events?view={token}"' in await r.text()  # the stream's link: the token
    for altered in (f"{token}A>", f"{token[:-1]}>", f"{token}_"):
        assert await status(agent, f"/deploys/{deploy['id']}?view={altered}") == 403, altered
    await agent.cancel(deploy["id"])


async def test_a_view_token_whose_expiry_is_not_ascii_digits_is_refused_not_a_500(
    journey_agent: JourneyAgent,
) -> None:
    """A view token's expiry is ASCII digits, as signed: one sent with a superscript
    (`v1.²…`, a digit to `str.isdigit`, not to `int`) made the page and the stream 500,
    in the query or as the bearer; the same expiry in Arabic-Indic digits (a digit to
    both) opened the page, a second spelling of one token. Both are refused as altered."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    _, expires, signature = view_of(deploy["links"]["page"]).split(".")
    arabic = "".join(chr(0x660 + int(digit)) for digit in expires)
    for token in (f"v1.\u00b2.{signature}", f"v1.{arabic}.{signature}"):
        page, stream = f"/deploys/{deploy['id']}", f"/v1/deploys/{deploy['id']}/events"
        assert await status(agent, f"{page}?view={token}") == 403, token
        assert await status(agent, f"{stream}?view={token}") == 403, token
    bearer = {"Authorization": f"Bearer v1.\u00b2.{signature}"}
    assert await status(agent, f"/deploys/{deploy['id']}", **bearer) == 401
    assert await status(agent, f"/v1/deploys/{deploy['id']}/events", **bearer) == 401
    # a bearer whose signature is no UTF-8 (aiohttp reads it to surrogates): 500 too
    for path in (f"/deploys/{deploy['id']}", f"/v1/deploys/{deploy['id']}/events"):
        reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(agent.url).port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
                + f"Authorization: Bearer v1.{expires}.".encode()
                + b"\xff\xfe\r\n\r\n"
            )
            async with asyncio.timeout(10):
                assert (await reader.readline()).startswith(b"HTTP/1.1 401 "), path
        finally:
            writer.close()
    await agent.cancel(deploy["id"])


async def test_nothing_after_a_view_tokens_signature_opens_another_deploy_or_expiry(
    journey_agent: JourneyAgent,
) -> None:
    """What a reader took along after a whole signature is dropped (the link read with
    its `>`): nothing so dropped, nor a second `view=`, may choose the deploy or the expiry
    the token opens. The first `view=` is the token, for the page and its stream alike."""
    agent = await journey_agent()
    one = await agent.register("production", "v1")
    two = await agent.register("production", "v2")
    ones, twos = view_of(one["links"]["page"]), view_of(two["links"]["page"])
    page, stream = f"/deploys/{two['id']}", f"/v1/deploys/{two['id']}/events"
    for query in (
        f"view={ones}&view={twos}",  # one's token first: refused on two's page
        f"view={ones}%00&view={twos}",
        f"view={ones}%26view%3D{twos}",
        f"view={ones}%00.{int(twos.split('.')[1]) + 10**6}",
        f"view={ones}%E2%80%8B{twos.split('.')[2]}",
    ):
        assert await status(agent, f"{page}?{query}") == 403, query
        assert await status(agent, f"{stream}?{query}") == 403, query
    async with agent.http.get(f"{agent.url}{page}?view={twos}%00&view={ones}") as r:
        assert r.status == 200 and f'events?view={twos}"' in await r.text()
    await agent.cancel(two["id"])

"""Contract §8: the pages accept "a session cookie set from" an API token. The login
form sets one from its `token` field; a client that is no browser (a script, a test, a
CLI opening the page for its user) sends the token as JSON or as its bearer token, and
got `401 That token is not accepted` for the token it had just used on /v1."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import TOKEN
from tests.web.conftest import JourneyAgent


async def _login(agent: Any, **request: Any) -> tuple[int, str | None, str | None]:
    async with agent.http.post(f"{agent.url}/login", allow_redirects=False, **request) as r:
        cookie = r.cookies.get("postflight_session")
        return r.status, r.headers.get("Location"), cookie.value if cookie else None


async def test_a_client_sets_the_session_cookie_from_a_json_body_or_its_bearer_token(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    page = f"/deploys/{deploy['id']}"
    for request in (
        {"json": {"token": TOKEN, "next": page}},
        {"headers": {"Authorization": f"Bearer {TOKEN}"}, "params": {"next": page}},
    ):
        status, location, session = await _login(agent, **request)
        assert (status, location) == (303, page), request
        assert session is not None and TOKEN not in session
        async with agent.http.get(
            f"{agent.url}{page}", headers={"Cookie": f"postflight_session={session}"}
        ) as r:
            assert r.status == 200
    # a wrong token is refused as the form's is; so is a body that is not a JSON object
    for request in (
        {"json": {"token": "wrong-token-0123456789"}},
        {"headers": {"Authorization": "Bearer wrong-token-0123456789"}},
    ):
        assert (await _login(agent, **request))[0] == 401, request
    bad = {"data": b"[1]", "headers": {"Content-Type": "application/json"}}
    assert (await _login(agent, **bad))[0] == 400


async def test_another_site_cannot_sign_a_browser_in(journey_agent: JourneyAgent) -> None:
    """Login CSRF: another site's form posting a token of its own (`Sec-Fetch-Site:
    cross-site`, as a browser sends it) got a 303 with its session's cookie, so the victim's
    browser was signed in as the other site chose. It is refused, as `POST /logout` is; the
    agent's own form (`same-origin`) and a client that sends no such header sign in."""
    agent = await journey_agent()
    form = {"token": TOKEN, "next": "/deploys"}
    for site, status in (("cross-site", 403), ("same-origin", 303), ("none", 303), (None, 303)):
        headers = {"Sec-Fetch-Site": site} if site else {}
        status_, _, session = await _login(agent, data=form, headers=headers)
        assert (status_, session is not None) == (status, status == 303), site


async def test_a_json_body_nested_too_deeply_is_a_400(journey_agent: JourneyAgent) -> None:
    """`request.json()` let a RecursionError through: a body of 5 000 `[` answered 500
    with a traceback in the log, where the API's bodies are read by `parse_json_text`."""
    agent = await journey_agent()
    for raw in (b"[" * 5_000, b'{"token": ' * 5_000):
        bad = {"data": raw, "headers": {"Content-Type": "application/json"}}
        assert (await _login(agent, **bad))[0] == 400


async def test_a_client_is_refused_in_problem_json_and_a_form_in_html(
    journey_agent: JourneyAgent,
) -> None:
    """A JSON or bearer client's refusal was the sign-in form's HTML page (401, 400): the
    client reads `application/problem+json`, as the API answers it, and the form's
    refusal stays the page the browser shows."""
    agent = await journey_agent()
    wrong = "wrong-token-0123456789"
    for request, status in (
        ({"json": {"token": wrong}}, 401),
        ({"headers": {"Authorization": f"Bearer {wrong}"}}, 401),
        ({"data": {"token": wrong}, "headers": {"Accept": "application/json"}}, 401),
        ({"data": b"[1]", "headers": {"Content-Type": "application/json"}}, 400),
        ({"json": {"token": TOKEN}, "headers": {"Sec-Fetch-Site": "cross-site"}}, 403),
    ):
        async with agent.http.post(f"{agent.url}/login", allow_redirects=False, **request) as r:
            assert (r.status, r.content_type) == (status, "application/problem+json"), request
            body = await r.json(content_type=None)
            assert body["status"] == status and body["type"].startswith("urn:postflight:")
            if status == 401:
                assert r.headers["WWW-Authenticate"] == "Bearer"
    browser = "text/html,application/xhtml+xml,*/*;q=0.8"
    for headers in ({}, {"Accept": browser}):
        async with agent.http.post(
            f"{agent.url}/login", data={"token": wrong}, headers=headers, allow_redirects=False
        ) as r:
            assert (r.status, r.content_type) == (401, "text/html"), headers


async def test_a_page_opened_with_a_bearer_token_sets_the_session_cookie_from_it(
    journey_agent: JourneyAgent,
) -> None:
    """Contract §8 names three ways into the pages, "a session cookie set from" an API
    token one of them, and no login route: a client holding the contract alone opened a
    page with its token and got no cookie, so none to open the pages and the event stream
    with (an EventSource sends no header). Opened with the token, a page sets the session
    as `/login` does; a request whose session still holds gets none again."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in (f"/deploys/{deploy['id']}", "/deploys"):
        async with agent.http.get(f"{agent.url}{path}", headers=bearer) as r:
            assert r.status == 200, path
            cookie = r.cookies.get("postflight_session")
        assert cookie is not None and TOKEN not in cookie.value, path
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        session = {"Cookie": f"postflight_session={cookie.value}"}
        for opened in (f"/deploys/{deploy['id']}", "/deploys"):
            async with agent.http.get(f"{agent.url}{opened}", headers=session) as r:
                assert r.status == 200, (path, opened)
        async with agent.http.get(f"{agent.url}{path}", headers={**bearer, **session}) as r:
            assert r.status == 200 and "postflight_session" not in r.cookies, path
    events = f"{agent.url}/v1/deploys/{deploy['id']}/events"
    async with agent.http.head(events, headers=session) as r:
        assert r.status == 200
    async with agent.http.get(
        f"{agent.url}/deploys", headers={"Authorization": "Bearer wrong-token-0123456789"}
    ) as r:
        assert r.status == 401 and "postflight_session" not in r.cookies
    await agent.cancel(deploy["id"])


async def test_the_session_a_bearer_page_sets_writes_nothing_and_is_secure_behind_https(
    journey_agent: JourneyAgent,
) -> None:
    """The cookie a page opened with the bearer token sets must be no more than the
    login's: a cross-site request rides on a cookie, never on a header a page cannot set
    (no CORS: a preflight for `Authorization` gets no allow), so that cookie must write
    nothing (cancel, rollback, register: 401, the deploy as it was) and read no API
    object, and behind `https` it is `Secure`, HttpOnly and Lax, as `/login`'s."""
    agent = await journey_agent(server="public_url: 'https://ops.example/'")
    deploy = await agent.register("production", "v1")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with agent.http.get(f"{agent.url}/deploys/{deploy['id']}", headers=bearer) as r:
        cookie = r.cookies["postflight_session"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
    session = {"Cookie": f"postflight_session={cookie.value}"}
    for path in (f"/v1/deploys/{deploy['id']}/cancel", f"/v1/deploys/{deploy['id']}/rollback"):
        async with agent.http.post(
            f"{agent.url}{path}", json={"reason": "x"}, headers=session
        ) as r:
            assert r.status == 401, path
    async with agent.http.post(f"{agent.url}/v1/deploys", json={}, headers=session) as r:
        assert r.status == 401
    async with agent.http.get(f"{agent.url}/v1/deploys/{deploy['id']}", headers=session) as r:
        assert r.status == 401
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    async with agent.http.options(f"{agent.url}/deploys", headers=preflight) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
    async with agent.http.get(f"{agent.url}/v1/deploys/{deploy['id']}", headers=bearer) as r:
        assert (await r.json())["state"] == deploy["state"]  # not cancelled, nor rolled back
    await agent.cancel(deploy["id"])

"""Signing out: a page opened with a session offers it, and it deletes the session
cookie at the path it was set with, so the pages ask for a token again; a session was
otherwise good for its 12 hours on a shared or borrowed machine, with no way to end it
but clearing the browser's cookies. Another site cannot sign a browser out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import TOKEN
from tests.web.conftest import ONE_CHROMIUM, JourneyAgent

pytestmark = [pytest.mark.e2e, ONE_CHROMIUM]


async def test_sign_out_ends_the_session_in_the_browser(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v9")
    page_url = f"{agent.url}/deploys/{deploy['id']}"
    page = await browser.new_page()
    # a signed link alone: nothing to sign out of
    assert (await page.goto(deploy["links"]["page"])).status == 200
    assert await page.locator("form.signout").count() == 0
    assert (await page.goto(page_url)).status == 401
    assert await page.locator("form.signout").count() == 0
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(page_url)
    assert [c["name"] for c in await browser.cookies()] == ["postflight_session"]
    async with page.expect_navigation(url=f"{agent.url}/login") as left:
        await page.click("form.signout button")
    assert (await left.value).status == 200
    assert await page.locator("#token").count() == 1
    assert await browser.cookies() == []
    assert (await page.goto(page_url)).status == 401
    assert (await page.goto(f"{agent.url}/deploys")).status == 401
    await agent.cancel(deploy["id"])


async def test_another_site_cannot_sign_a_browser_out(journey_agent: JourneyAgent) -> None:
    agent = await journey_agent()
    form = {"token": TOKEN, "next": "/deploys"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        session = f"postflight_session={r.cookies['postflight_session'].value}"
    for site, status in (("cross-site", 403), ("same-origin", 303), (None, 303)):
        headers = {"Cookie": session} | ({"Sec-Fetch-Site": site} if site else {})
        async with agent.http.post(
            f"{agent.url}/logout", headers=headers, allow_redirects=False
        ) as r:
            assert r.status == status, (site, r.status)
            deleted = "postflight_session" in r.cookies
            assert deleted == (status == 303), site


async def test_a_browser_that_opens_logout_gets_a_sign_out_form(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """Typing /logout (a GET) answered the API's JSON 405: the page's sign-out is a POST,
    so that a link or an image on another site cannot sign anyone out. It is a page now,
    whose button posts that form; opening it changes nothing, signed in or not."""
    agent = await journey_agent()
    page = await browser.new_page()
    opened = await page.goto(f"{agent.url}/logout")
    assert opened.status == 200 and "text/html" in opened.headers["content-type"]
    assert await page.locator("form.signout button").count() == 0
    assert "not signed in" in (await page.locator("main").inner_text())
    async with page.expect_navigation(url=f"{agent.url}/login"):
        await page.click("main a")  # the way to sign in

    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{agent.url}/deploys")
    opened = await page.goto(f"{agent.url}/logout")
    assert opened.status == 200
    assert [c["name"] for c in await browser.cookies()] == ["postflight_session"]  # kept
    async with page.expect_navigation(url=f"{agent.url}/login") as left:
        await page.click("main form.signout button")
    assert (await left.value).status == 200
    assert await browser.cookies() == []


async def test_logout_by_get_signs_no_one_out_and_other_clients_get_a_page_too(
    journey_agent: JourneyAgent,
) -> None:
    """A GET never signs out (an `<img src=/logout>` on another site would): it answers
    the page with its form, and the session cookie stays."""
    agent = await journey_agent()
    form = {"token": TOKEN, "next": "/deploys"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        session = f"postflight_session={r.cookies['postflight_session'].value}"
    for accept in ("text/html", "application/json", "*/*"):
        headers = {"Cookie": session, "Accept": accept, "Sec-Fetch-Site": "cross-site"}
        async with agent.http.get(f"{agent.url}/logout", headers=headers) as r:
            assert r.status == 200, (accept, r.status)
            assert r.content_type == "text/html"
            assert "postflight_session" not in r.cookies
            body = await r.text()
        assert '<form method="post" action="/logout" class="signout">' in body

"""The session cookie in a real browser, opened from another site: the on-call engineer,
signed in, follows a deploy page's link posted in chat (a top-level navigation from
another site) and sees the page, where a `SameSite=Strict` cookie was not sent and the
sign-in form came instead. `Lax` still keeps it off another site's POSTs, and the
cookie opens pages only: no request it alone sends changes anything (the API's
cancel and rollback take a bearer token, never the cookie)."""

from __future__ import annotations

from html import escape
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import TOKEN, LocalTarget
from tests.web.conftest import ONE_CHROMIUM, JourneyAgent

pytestmark = [pytest.mark.e2e, ONE_CHROMIUM]


class ChatSite(LocalTarget):
    """Another site (`http://localhost:<port>`, another host than the agent's
    127.0.0.1, so another site to the browser): a page with a link to a deploy page and
    a form posting to the agent's cancel."""

    def __init__(self) -> None:
        super().__init__()
        self.link = ""
        self.post_to = ""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text=(
                f'<a id="link" href="{escape(self.link)}">the deploy</a>'
                f'<form id="post" method="post" action="{escape(self.post_to)}">'
                '<button type="submit">cancel it</button></form>'
            ),
        )

    @property
    def other_site(self) -> str:
        return f"http://localhost:{self.port}"


@pytest.fixture
async def chat() -> Any:
    site = ChatSite()
    await site.start()
    yield site
    await site.stop()


async def test_a_link_from_another_site_opens_the_page_signed_in(
    journey_agent: JourneyAgent, chat: ChatSite, browser: Any
) -> None:
    agent = await journey_agent(window="60s")
    deploy = await agent.register("production", "v9")
    page_url = f"{agent.url}/deploys/{deploy['id']}"
    page = await browser.new_page()
    assert (await page.goto(page_url)).status == 401
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(page_url)

    # the link in chat: a navigation from another site, signed in
    chat.link = page_url
    await page.goto(chat.other_site)
    async with page.expect_navigation(url=page_url) as opened:
        await page.click("#link")
    assert (await opened.value).status == 200
    assert "postflight_session=" in (await (await opened.value).request.all_headers())["cookie"]
    assert await page.locator("#token").count() == 0
    assert deploy["id"] in await page.locator("main").inner_text()
    (cookie,) = await browser.cookies()
    assert cookie["name"] == "postflight_session" and cookie["sameSite"] == "Lax"

    # another site's POST carries no cookie; nor does the cookie let the agent's own
    # page change anything: the API refuses it without a bearer token
    chat.post_to = f"{agent.url}/v1/deploys/{deploy['id']}/cancel"
    await page.goto(chat.other_site)
    async with page.expect_navigation(url=chat.post_to) as posted:
        await page.click("#post button")
    assert (await posted.value).status == 401
    assert "cookie" not in await (await posted.value).request.all_headers()
    await page.goto(page_url)
    same_site = await page.evaluate(
        "url => fetch(url, {method: 'POST', credentials: 'same-origin'}).then(r => r.status)",
        chat.post_to,
    )
    assert same_site == 401
    assert (await agent.get(deploy["id"]))["state"] == "watching"

    # a signed link from chat opens its page in a browser never signed in, as before
    chat.link = deploy["links"]["page"]
    await browser.clear_cookies()
    await page.goto(chat.other_site)
    async with page.expect_navigation() as opened:
        await page.click("#link")
    assert (await opened.value).status == 200
    assert deploy["id"] in await page.locator("main").inner_text()
    await agent.cancel(deploy["id"])

"""The deploy pages behind a reverse proxy that serves the agent under a path prefix
(`server.public_url: https://ops.example/postflight/`): every link, asset, form, redirect
and the event stream stay under the prefix, in a real browser through a real proxy
(`tests.web.prefix_proxy`, the stripping nginx's `proxy_pass http://agent/;` does)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from tests.e2e.conftest import TOKEN
from tests.receivers import JsonSink
from tests.web.conftest import ONE_CHROMIUM, JourneyAgent
from tests.web.prefix_proxy import PrefixProxy
from tests.web.target import JourneyTarget

pytestmark = [pytest.mark.e2e, ONE_CHROMIUM]

PREFIX = "/postflight"


@pytest.fixture
async def proxy() -> AsyncIterator[PrefixProxy]:
    proxy = PrefixProxy(PREFIX)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def _links(page: Any) -> list[str]:
    """Every address the page holds: links, assets, forms and its event stream's."""
    found: list[str] = await page.evaluate(
        """() => [
          ...[...document.querySelectorAll('a[href], link[href]')].map(e => e.getAttribute('href')),
          ...[...document.querySelectorAll('script[src]')].map(e => e.getAttribute('src')),
          ...[...document.querySelectorAll('form')].map(e => e.getAttribute('action')),
          ...[...document.querySelectorAll('[data-events]')].map(e => e.dataset.events),
        ]"""
    )
    return [link for link in found if not link.startswith(("http://", "https://", "#"))]


async def test_the_pages_work_under_the_public_url_s_path(
    journey_agent: JourneyAgent,
    journey: JourneyTarget,
    proxy: PrefixProxy,
    browser: Any,
    json_sink: JsonSink,
) -> None:
    base = f"{proxy.url}{PREFIX}"
    agent = await journey_agent(server=f"public_url: {base}/", window="20s", interval="1s")
    proxy.upstream = agent.url
    deploy = await agent.register("production", "v9")
    assert deploy["links"]["page"].startswith(f"{base}/deploys/{deploy['id']}?view=")
    page = await browser.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status == 404 else None)
    # the alert-style link: page, stylesheet, script and the live event stream
    assert (await page.goto(deploy["links"]["page"])).status == 200
    from playwright.async_api import expect  # installed, or `browser` skipped the test

    await expect(page.locator("#live-status")).to_have_text(
        re.compile(r"^(Live:|Round \d+ stored)"), timeout=10000
    )
    assert await page.evaluate("document.styleSheets[0].cssRules.length") > 0
    for link in await _links(page):
        assert link.startswith(f"{PREFIX}/"), link
    # no token: the sign-in form, which comes back to the page under the prefix
    assert (await page.goto(f"{base}/deploys/{deploy['id']}")).status == 401
    for link in await _links(page):
        assert link.startswith(f"{PREFIX}/"), link
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/deploys/{deploy['id']}")
    # the header's link to the list, and the list's to the page
    await page.click("header a.brand")
    await page.wait_for_url(f"{base}/deploys")
    for link in await _links(page):
        assert link.startswith(f"{PREFIX}/"), link
    await page.click(f'a[href="{PREFIX}/deploys/{deploy["id"]}"]')
    await page.wait_for_url(f"{base}/deploys/{deploy['id']}")
    # the list's filter form
    await page.goto(f"{base}/deploys")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url(f"{base}/deploys?**")
    # a path typed with a slash, and the API object opened in a browser, redirect in it
    await page.goto(f"{base}/deploys/")
    assert page.url == f"{base}/deploys"
    await page.context.clear_cookies()
    await page.goto(f"{base}/v1/deploys/{deploy['id']}")
    assert page.url == f"{base}/deploys/{deploy['id']}"
    # the alert of a failed window links under the prefix too
    journey.bad = True
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "rolled_back", final
    alerts = await json_sink.wait_for(1, within=10)
    assert any(f"{base}/deploys/{deploy['id']}?view=" in a.message for a in alerts)
    assert proxy.outside == [] and failed == []


async def test_the_session_cookie_is_kept_to_the_public_url_s_path(
    journey_agent: JourneyAgent, proxy: PrefixProxy
) -> None:
    """Signed in through the proxy, the session cookie carries the prefix's path, so a
    browser sends it to the agent's pages only, never to the host's other applications
    (`/grafana/`, another agent under `/postflight-eu/`); it was set with `path=/`."""
    base = f"{proxy.url}{PREFIX}"
    agent = await journey_agent(server=f"public_url: {base}/", window="20s", interval="1s")
    proxy.upstream = agent.url
    deploy = await agent.register("production", "v9")
    jar = aiohttp.CookieJar(unsafe=True)  # a browser's path rules, on 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        form = {"token": TOKEN, "next": f"/deploys/{deploy['id']}"}
        async with http.post(f"{base}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            assert r.headers["Location"] == f"{PREFIX}/deploys/{deploy['id']}"
            assert r.cookies["postflight_session"]["path"] == PREFIX
            assert r.cookies["postflight_session"]["max-age"] == str(12 * 3600)  # README
        for other in ("/", "/grafana/", f"{PREFIX}-eu/deploys"):
            assert not jar.filter_cookies(URL(f"{proxy.url}{other}")), other
        async with http.get(f"{base}/deploys/{deploy['id']}", allow_redirects=False) as r:
            assert r.status == 200  # the cookie went with it
        async with http.get(f"{base}/v1/deploys/{deploy['id']}/events") as r:
            assert r.status == 200 and r.content_type == "text/event-stream"
    assert proxy.outside == []


async def test_without_a_prefix_the_session_cookie_is_the_whole_site_s(
    journey_agent: JourneyAgent,
) -> None:
    agent = await journey_agent()
    form = {"token": TOKEN, "next": "/deploys"}
    async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.cookies["postflight_session"]["path"] == "/"


async def test_a_prefix_with_a_space_or_an_accent_is_the_cookie_path_a_browser_matches(
    journey_agent: JourneyAgent,
) -> None:
    """A browser matches a cookie's path against the request's path as sent, percent-
    encoded (`/ops%20eu/deploys`): a cookie path written `/ops eu` matched nothing, and
    signing in came back to the sign-in form."""
    for written, sent in (("/ops eu", "/ops%20eu"), ("/été", "/%C3%A9t%C3%A9")):
        agent = await journey_agent(server=f"public_url: 'https://ops.example{written}/'")
        form = {"token": TOKEN, "next": "/deploys"}
        async with agent.http.post(f"{agent.url}/login", data=form, allow_redirects=False) as r:
            assert r.status == 303
            assert r.cookies["postflight_session"]["path"] == sent, written
        await agent.stop()


async def test_a_next_that_already_has_the_prefix_goes_there_once(
    journey_agent: JourneyAgent, proxy: PrefixProxy
) -> None:
    """A sign-in form opened by hand with the address the browser shows as `next`
    (`/postflight/login?next=/postflight/deploys/dep_…`) comes back to that page, where
    the prefix went before it a second time (`/postflight/postflight/deploys/…`, the
    proxy's 404). The prefix alone is the list; what follows it stays on this agent."""
    base = f"{proxy.url}{PREFIX}"
    agent = await journey_agent(server=f"public_url: {base}/", window="20s", interval="1s")
    proxy.upstream = agent.url
    deploy = await agent.register("production", "v9")
    page = f"/deploys/{deploy['id']}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        for typed, back in (
            (f"{PREFIX}{page}", f"{PREFIX}{page}"),
            (page, f"{PREFIX}{page}"),
            (f"{PREFIX}/deploys?state=passed", f"{PREFIX}/deploys?state=passed"),
            (f"{PREFIX}/deploys", f"{PREFIX}/deploys"),
            (PREFIX, f"{PREFIX}/deploys"),
            (f"{PREFIX}/", f"{PREFIX}/deploys"),
            (f"{PREFIX}//evil.example/x", f"{PREFIX}/deploys"),
            (f"{PREFIX}/\\evil.example", f"{PREFIX}/deploys"),
        ):
            async with http.get(f"{base}/login", params={"next": typed}) as r:
                form = await r.text()
            hidden = re.search(r'name="next" value="([^"]*)"', form)
            assert hidden is not None and f"{PREFIX}{hidden[1]}" == back, (typed, hidden)
            sent = {"token": TOKEN, "next": typed}
            async with http.post(f"{base}/login", data=sent, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == back, (typed, r.headers)
        async with http.post(
            f"{base}/login", data={"token": TOKEN, "next": f"{PREFIX}{page}"}
        ) as r:
            assert r.status == 200 and str(r.url) == f"{base}{page}"
    assert proxy.outside == []


async def test_sign_out_deletes_the_cookie_at_the_prefix_s_path(
    journey_agent: JourneyAgent, proxy: PrefixProxy
) -> None:
    """A cookie is deleted only by one of the same name and path: signing out behind the
    prefix deletes the one signing in set there, and comes back to the sign-in form."""
    base = f"{proxy.url}{PREFIX}"
    agent = await journey_agent(server=f"public_url: {base}/")
    proxy.upstream = agent.url
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        form = {"token": TOKEN, "next": "/deploys"}
        async with http.post(f"{base}/login", data=form) as r:
            assert r.status == 200 and str(r.url) == f"{base}/deploys"
            assert 'class="signout"' in await r.text()
        assert jar.filter_cookies(URL(f"{base}/deploys"))
        async with http.post(f"{base}/logout", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"{PREFIX}/login"
            assert r.cookies["postflight_session"]["path"] == PREFIX
        assert not jar.filter_cookies(URL(f"{base}/deploys"))
        async with http.get(f"{base}/deploys") as r:
            assert r.status == 401
    assert proxy.outside == []


async def test_signing_in_behind_a_prefix_with_an_accent_comes_back_in_the_browser(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """`public_url: https://ops.example/été/`: the redirect after signing in names the
    prefix as a browser sends it (percent-encoded: a header is ASCII; it was the raw UTF-8
    bytes of `/été`), and the browser lands on the list signed in; signing out too."""
    sent = "/%C3%A9t%C3%A9"
    proxy = PrefixProxy(sent)
    await proxy.start()
    try:
        agent = await journey_agent(server=f"public_url: '{proxy.url}/été/'")
        proxy.upstream = agent.url
        async with aiohttp.ClientSession() as http:
            for typed in ("/deploys", f"{sent}/deploys"):  # with the prefix, as shown
                form = {"token": TOKEN, "next": typed}
                async with http.post(
                    f"{proxy.url}{sent}/login", data=form, allow_redirects=False
                ) as r:
                    assert r.status == 303 and r.headers["Location"] == f"{sent}/deploys"
        page = await browser.new_page()
        assert (await page.goto(f"{proxy.url}{sent}/deploys")).status == 401
        await page.fill("#token", TOKEN)
        async with page.expect_navigation(url=f"{proxy.url}{sent}/deploys") as landed:
            await page.click("button[type=submit]")
        assert (await landed.value).status == 200
        assert await page.locator("#token").count() == 0
        async with page.expect_navigation(url=f"{proxy.url}{sent}/login") as left:
            await page.click("form.signout button")
        assert (await left.value).status == 200 and await browser.cookies() == []
        assert proxy.outside == []
    finally:
        await proxy.stop()

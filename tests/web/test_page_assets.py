"""The page's script and stylesheet are linked under URLs naming their content, so after
an upgrade a browser runs the new script with the new page, never the one it cached for
an hour under the same URL; those URLs are immutable, the plain ones revalidated."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import agent.web
from tests.e2e.conftest import TOKEN, RunningAgent
from tests.web.conftest import JourneyAgent

pytestmark = pytest.mark.e2e

BEARER = {"Authorization": f"Bearer {TOKEN}"}
STATIC = Path(agent.web.__file__).parent / "static"
LINKED = re.compile(r'(?:src|href)="(/deploys/static/[^"]+)"')


async def linked_files(agent: RunningAgent, deploy_id: str) -> dict[str, str]:
    """The page's file URLs by the file they name (`page.js` → its URL)."""
    async with agent.http.get(f"{agent.url}/deploys/{deploy_id}", headers=BEARER) as r:
        assert r.status == 200
        page = await r.text()
    urls = LINKED.findall(page)
    named = {re.sub(r"\.[0-9a-f]{12}\.", ".", url.rsplit("/", 1)[1]): url for url in urls}
    assert set(named) == {"page.js", "page.css", "favicon.svg"}, urls
    return named


async def test_a_page_links_its_files_by_their_content_and_an_upgrade_by_the_new_one(
    journey_agent: JourneyAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v1")
    before = await linked_files(agent, deploy["id"])

    for name, url in before.items():
        assert re.fullmatch(rf"/deploys/static/{name.split('.')[0]}\.[0-9a-f]{{12}}\.\w+", url)
        async with agent.http.get(f"{agent.url}{url}") as r:
            assert r.status == 200
            assert await r.read() == (STATIC / name).read_bytes()
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # the plain URL (bookmarked, or an old page's) is revalidated on each use, by its ETag
    async with agent.http.get(f"{agent.url}/deploys/static/page.js") as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
        etag = r.headers["ETag"]
    async with agent.http.get(
        f"{agent.url}/deploys/static/page.js", headers={"If-None-Match": etag}
    ) as r:
        assert r.status == 304 and await r.read() == b""

    # an upgrade changes page.js: the page links the new one under a new URL, and the old
    # URL, which a browser may hold for a year, is never answered with the new content
    assets = importlib.import_module("agent.web.assets")  # new with the content's URLs
    files = {name: (STATIC / name).read_bytes() for name in assets.CONTENT_TYPES}
    files["page.js"] += b"\n// the next release\n"
    upgraded = assets.Assets(files)
    monkeypatch.setattr(assets, "packaged", lambda: upgraded)
    after = await linked_files(agent, deploy["id"])
    assert after["page.js"] != before["page.js"]
    assert after["page.css"] == before["page.css"]  # unchanged: still cached
    async with agent.http.get(f"{agent.url}{after['page.js']}") as r:
        assert r.status == 200 and (await r.read()).endswith(b"// the next release\n")
    async with agent.http.get(f"{agent.url}{before['page.js']}") as r:
        assert r.status == 404
        assert "immutable" not in r.headers.get("Cache-Control", "")
    async with agent.http.get(f"{agent.url}/deploys/static/page.js") as r:
        assert r.headers["ETag"] != etag
    await agent.cancel(deploy["id"])


def test_an_assets_url_names_its_content() -> None:
    from agent.web import assets

    one = assets.Assets({"page.js": b"one();"})
    two = assets.Assets({"page.js": b"two();"})
    assert one.url_name("page.js") != two.url_name("page.js")
    assert one.url_name("page.js") == assets.Assets({"page.js": b"one();"}).url_name("page.js")
    assert one.find(two.url_name("page.js")) is None
    plain, versioned = one.find("page.js"), one.find(one.url_name("page.js"))
    assert plain is not None and versioned is not None
    assert plain[0] == versioned[0] and (plain[1], versioned[1]) == (False, True)
    assert one.find("../page.js") is None and one.find("other.js") is None

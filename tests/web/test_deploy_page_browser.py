"""The deploy page in a real browser: a rolled-back deploy's evidence, a passed one,
a watching one updating live over SSE, view links, and escaping of hostile values."""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from agent.appkeys import SETTINGS, STORE
from agent.web import events as events_module
from agent.web.links import sign, signing_key
from tests.e2e.conftest import SECRET, TOKEN
from tests.receivers import JsonSink
from tests.web.conftest import ALERTING, ONE_CHROMIUM, BrowserFactory, JourneyAgent, screenshot
from tests.web.sse import drop_connections
from tests.web.target import JourneyTarget, journey_environment

pytestmark = [pytest.mark.e2e, ONE_CHROMIUM]


async def rolled_back(
    journey_agent: JourneyAgent,
    journey: JourneyTarget,
    environment: dict[str, str] | None = None,
    **register: Any,
) -> tuple[Any, dict[str, Any]]:
    agent = await journey_agent(**(environment or {}))
    deploy = await agent.register("production", register.pop("version", "v2.4.1"), **register)
    journey.bad = True
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "rolled_back", final
    return agent, final


async def test_rolled_back_page_shows_the_failing_rule_its_step_and_the_rollback(
    journey_agent: JourneyAgent,
    journey: JourneyTarget,
    json_sink: JsonSink,
    browser: Any,
    tmp_path: Path,
) -> None:
    agent, final = await rolled_back(journey_agent, journey, previous_version="v2.4.0")
    link = final["links"]["page"]
    assert link.startswith(f"{agent.url}/deploys/{final['id']}?view=")
    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    response = await page.goto(link)
    assert response.status == 200
    await page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(f"{agent.url}/") for url in requested), requested

    assert await page.title() == "production v2.4.1: rolled back · Postflight"  # in words
    rule = page.locator('article[data-rule="journey-errors"]')
    assert await rule.get_attribute("data-outcome") == "fail"
    chart = rule.locator('svg[data-kind="rounds"]')
    assert await chart.locator('line[data-line="bound"]').count() == 1
    assert await chart.locator('[data-series="observed"]').count() >= 2
    assert "max" in (await chart.locator("desc").text_content() or "")
    reason = await page.locator("#verdict-reason").text_content()
    assert reason is not None and "journey-errors" in reason
    step = await page.locator(".broken-step").text_content()
    assert step == "journey-errors: check journey broke at step 'orders' (expected 200, got 500)"
    failure = page.locator('li.failure[data-check="journey"]')
    assert await failure.locator(".step-name").text_content() == "orders"
    assert "500" in (await failure.text_content() or "")
    attempts = page.locator("table.attempts tr.attempt")
    assert await attempts.count() == 1
    assert "200" in (await attempts.first.text_content() or "")
    assert "delivered" in (await page.locator(".rollback-state").text_content() or "")
    assert await page.locator(".alerts li").count() >= 1
    await screenshot(page, tmp_path, "deploy-rolled-back")

    # readable on a phone: the page fits the screen; a chart too wide to read at that
    # size scrolls sideways within its own box
    await page.set_viewport_size({"width": 390, "height": 844})
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    box = await rule.locator("figure").first.bounding_box()
    assert box is not None and box["width"] <= 390
    await screenshot(page, tmp_path, "deploy-rolled-back-phone")

    # the alert bodies link to the same page, with a view token
    alerts = await json_sink.wait_for(1, within=10)
    assert any(f"/deploys/{final['id']}?view=" in a.message for a in alerts)


async def test_passed_page_is_a_complete_snapshot_with_javascript_off(
    journey_agent: JourneyAgent,
    chromium: BrowserFactory,
    tmp_path: Path,
) -> None:
    browser = await chromium(javascript=False)
    agent = await journey_agent(window="3s")
    deploy = await agent.register("production", "v2.4.2", previous_version="v2.4.1")
    final = await agent.settled(deploy["id"], within=15)
    assert final["state"] == "passed"
    page = await browser.new_page()
    await page.goto(final["links"]["page"])
    assert await page.locator('[data-state="passed"]').count() >= 1
    rule = page.locator('article[data-rule="journey-errors"]')
    assert await rule.get_attribute("data-outcome") == "pass"
    chart = rule.locator('svg[data-kind="rounds"]')
    assert await chart.locator('line[data-line="bound"]').count() == 1
    assert await chart.locator('[data-series="observed"]').count() >= 3
    assert await page.locator("tr[data-round]").count() == final["rounds"]
    assert await page.locator("table.attempts").count() == 0
    await screenshot(page, tmp_path, "deploy-passed")


async def test_watching_page_shows_each_new_round_within_two_seconds_without_reload(
    journey_agent: JourneyAgent,
    browser: Any,
    tmp_path: Path,
) -> None:
    latency = """
        - name: health-latency
          source: checks
          check: health
          metric: latency_p95
          max_increase: 5.0
    """
    agent = await journey_agent(
        window="20s",
        interval="1s",
        policy="sequential",
        more_rules=textwrap.indent(textwrap.dedent(latency), " " * 8),
    )
    await asyncio.sleep(1.0)  # background probes before the deploy: the baseline
    deploy = await agent.register("production", "v3.0.0", previous_version="v2.4.2")
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    await page.evaluate("window.__sameDocument = true")
    loop = asyncio.get_running_loop()
    seen = (await agent.get(deploy["id"]))["rounds"]
    for _ in range(2):

        def past(d: dict[str, Any], n: int = seen) -> bool:
            return bool(d["rounds"] > n)

        now = await agent.wait_until(deploy["id"], past, within=10)
        stored_at = loop.time()  # at most one 0.1 s poll after the round was stored:
        seen = now["rounds"]
        left_ms = 1900 - (loop.time() - stored_at) * 1000  # so 1.9 s from here
        await page.wait_for_selector(f'tr[data-round="{seen}"]', timeout=left_ms)
        count = await page.locator("#round-count").text_content()
        assert count is not None and int(count) >= seen
    assert await page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    status = await page.locator("#live-status").text_content()
    assert status is not None and "Round" in status
    latency_rule = page.locator('article[data-rule="health-latency"]')
    assert await latency_rule.locator('svg[data-kind="rounds"]').count() == 1
    assert await latency_rule.locator('svg[data-kind="distribution"]').count() == 1
    assert await page.locator('svg[data-kind="evidence"]').count() >= 1
    await screenshot(page, tmp_path, "deploy-watching")
    await agent.cancel(deploy["id"])


async def test_hostile_labels_versions_and_messages_are_shown_escaped(
    journey_agent: JourneyAgent,
    journey: JourneyTarget,
    browser: Any,
    tmp_path: Path,
) -> None:
    hostile_version = "v1\"'><script>alert('version')</script>"
    labels = {
        "pipeline": "<script>alert('label')</script>",
        "quote\"'><img src=x onerror=alert(1)>": '"\' onmouseover=alert(2) x="',
    }
    _agent, final = await rolled_back(
        journey_agent,
        journey,
        # the page names each check's LAST failure: on a loaded machine a 1 s probe timeout
        # could be that failure, and the body's message asserted below would not be shown
        {"timeout": "10s"},
        version=hostile_version,
        previous_version="<b>old</b>",
        commit='"><svg onload=alert(3)>',
        labels=labels,
    )
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(final["links"]["page"])
    await page.wait_for_load_state("networkidle")
    await asyncio.sleep(0.3)

    assert dialogs == []
    scripts = await page.eval_on_selector_all("script", "els => els.map(e => e.src)")
    assert len(scripts) == 1 and re.search(r"/deploys/static/page\.[0-9a-f]{12}\.js$", scripts[0])
    assert await page.locator("img").count() == 0
    assert await page.locator("b").count() == 0
    assert await page.locator("main svg:not([data-kind]):not(.swatch)").count() == 0
    injected = await page.evaluate(
        "[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
        ".some(a => a.name.startsWith('on'))).length"
    )
    assert injected == 0
    text = await page.locator("main").inner_text()
    assert hostile_version in text
    assert "<script>alert('label')</script>" in text
    assert "<b>old</b>" in text
    assert "<script>alert('body')</script>" in text  # the check's message, from the body
    await screenshot(page, tmp_path, "deploy-hostile")


async def test_signed_view_link_opens_the_page_in_the_browser(
    journey_agent: JourneyAgent,
    browser: Any,
) -> None:
    agent = await journey_agent()
    deploy = await agent.register("production", "v9")
    page = await browser.new_page()
    assert (await page.goto(deploy["links"]["page"])).status == 200
    assert deploy["id"] in (await page.locator("main").inner_text())
    tampered = deploy["links"]["page"][:-2] + (
        "AA" if not deploy["links"]["page"].endswith("AA") else "BB"
    )
    assert (await page.goto(tampered)).status == 403
    # no token: the login form; signing in with an API token sets a session cookie
    response = await page.goto(f"{agent.url}/deploys/{deploy['id']}")
    assert response.status == 401
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{agent.url}/deploys/{deploy['id']}")
    assert deploy["id"] in (await page.locator("main").inner_text())
    await page.goto(f"{agent.url}/deploys")
    assert await page.locator(f'a[href="/deploys/{deploy["id"]}"]').count() == 1
    await agent.cancel(deploy["id"])


async def test_a_browser_viewing_the_page_logs_no_error(
    journey_agent: JourneyAgent,
    browser: Any,
) -> None:
    """A browser asks for the site's icon by itself: `/favicon.ico` answered 404, an
    error in the console of every page view. The pages name their icon, served beside
    the page's other assets (the CSP allows no `data:` image)."""
    agent = await journey_agent()
    deploy = await agent.register("production", "v9")
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(deploy["links"]["page"])
    await page.wait_for_load_state("networkidle")
    assert errors == []
    icon = await page.goto(f"{agent.url}/deploys/static/favicon.svg")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    await agent.cancel(deploy["id"])


async def test_the_page_reconnects_after_a_dropped_stream_from_its_last_event(
    journey_agent: JourneyAgent, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped connection (a proxy's timeout, a network change): Chromium's EventSource
    reconnects with the last event's id as `Last-Event-ID`, the stream goes on from it, and
    the page keeps updating."""
    asked: list[str | None] = []
    resume = events_module._resume

    def recorded(request: Any) -> Any:
        asked.append(request.headers.get("Last-Event-ID"))
        return resume(request)

    monkeypatch.setattr(events_module, "_resume", recorded)
    agent = await journey_agent(window="30s")
    deploy = await agent.register("production", "v5")
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    await page.wait_for_selector('tr[data-round="2"]', timeout=10_000)
    assert asked == [None]
    drop_connections(agent)
    rounds = (await agent.get(deploy["id"]))["rounds"]
    await page.wait_for_selector(f'tr[data-round="{rounds + 2}"]', timeout=15_000)
    assert len(asked) >= 2 and None not in asked[1:], asked
    done, state = (asked[1] or "").split(".")[:2]
    assert state == "watching" and int(done) >= 2  # it went on from where it was
    await agent.cancel(deploy["id"])


async def test_the_page_says_its_live_updates_stopped_when_its_link_expires(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """The stream ends when the view token it was opened with expires, and the browser's
    reconnect is a 403, which an EventSource does not retry: the page said "retrying…"
    for good. It says why now (the stream's HEAD answers the status)."""
    agent = await journey_agent(window="30s")
    deploy = await agent.register("production", "v6")
    key = signing_key(agent.app[SETTINGS].server)
    link = f"{agent.url}/deploys/{deploy['id']}?view={sign(key, deploy['id'], time.time() + 6)}"
    page = await browser.new_page()
    assert (await page.goto(link)).status == 200
    status = page.locator("#live-status")
    await page.wait_for_selector('#live-status:has-text("stopped")', timeout=20_000)
    assert "link has expired" in (await status.text_content() or "")
    assert (await agent.get(deploy["id"]))["state"] == "watching"
    await agent.cancel(deploy["id"])


async def test_a_window_cancelled_before_a_verdict_says_it_has_none_live_and_on_reload(
    journey_agent: JourneyAgent, chromium: BrowserFactory, tmp_path: Path
) -> None:
    """A cancelled window ends without a verdict and will never get one: its page said
    `verdict: pending` (live and reloaded) under a `cancelled` badge, where `status ID`
    says `none: cancelled before a verdict (figures of round N)`."""
    agent = await journey_agent(window="60s")
    ahead = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    scheduled = await agent.register("production", "v6", deployed_at=ahead)
    await agent.cancel(scheduled["id"])  # never ran a round: its rules were never judged
    bare = await (await chromium(javascript=False)).new_page()
    await bare.goto(scheduled["links"]["page"])
    assert "none" in await bare.locator(".verdict").inner_text()
    assert await bare.locator("#verdict-reason").inner_text() == "cancelled before a verdict"
    assert await bare.locator("article.rule .outcome").all_inner_texts() == ["not judged"]

    deploy = await agent.register("production", "v7")
    page = await (await chromium()).new_page()
    await page.goto(deploy["links"]["page"])
    await page.wait_for_selector('tr[data-round="1"]', timeout=10_000)
    await agent.cancel(deploy["id"])
    await page.wait_for_selector('[data-state="cancelled"]', timeout=10_000)
    for shown in (page, await (await chromium(javascript=False)).new_page()):
        if shown is not page:
            await shown.goto(deploy["links"]["page"])
        verdict = await shown.locator(".verdict").inner_text()
        assert "pending" not in verdict and "none" in verdict, verdict
        reason = await shown.locator("#verdict-reason").inner_text()
        assert reason.startswith("cancelled before a verdict (figures of round "), reason
        outcomes = await shown.locator("article.rule .outcome").all_inner_texts()
        assert outcomes and "pending" not in outcomes, outcomes
        # how far it got, not a full progress bar ("Window progress 100%" after one round)
        assert await shown.locator("progress").count() == 0
        ended = await shown.locator("#window-ended").inner_text()
        assert re.fullmatch(r"Window ended after \S+ of its 1m\.", ended), ended
    await screenshot(page, tmp_path, "deploy-cancelled")


async def test_the_list_on_a_phone_shows_each_window_s_state_without_scrolling_sideways(
    journey_agent: JourneyAgent, browser: Any, tmp_path: Path
) -> None:
    """On a 390 px screen the list's table scrolled within its box: a phone showed a column
    of deploy ids, each window's environment, version and state out of sight."""
    agent = await journey_agent()
    first = await agent.register("production", "v1")
    second = await agent.register("production", "v2-with-a-rather-long-version-name")
    page = await browser.new_page()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
    await page.goto(f"{agent.url}/deploys")
    for deploy, state in ((first, "superseded"), (second, "watching")):
        row = page.locator("table.deploys tbody tr").filter(
            has=page.locator(f'a[href="/deploys/{deploy["id"]}"]')
        )
        for cell in (row.locator(".state"), row.get_by_text(deploy["version"], exact=True)):
            box = await cell.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert await row.locator(".state").inner_text() == state
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(page, tmp_path, "list-phone")
    await agent.cancel(second["id"])


async def test_a_threshold_rule_past_its_bound_short_of_its_limit_shows_a_breach_not_a_pass(
    journey_agent: JourneyAgent, journey: JourneyTarget, chromium: BrowserFactory
) -> None:
    """Past its bound for fewer rounds than `failure_limit`, a threshold rule is `pass` in
    the API's progress (the verdict if the window ended now): the page showed `✔ pass`
    beside 100% errors, where `status ID` and `register --wait` say `! breach … N of M
    rounds`."""
    agent = await journey_agent(window="60s", failure_limit="50")
    journey.bad = True
    deploy = await agent.register("production", "v8")

    def breaching(d: dict[str, Any]) -> bool:
        rules = (d.get("progress") or {}).get("rules") or []
        return any((r.get("evidence") or {}).get("streak", 0) >= 1 for r in rules)

    await agent.wait_until(deploy["id"], breaching, within=20)
    for javascript in (True, False):
        page = await (await chromium(javascript=javascript)).new_page()
        await page.goto(deploy["links"]["page"])
        rule = page.locator('article[data-rule="journey-errors"]')
        assert await rule.get_attribute("data-outcome") == "breach"
        shown = await rule.locator(".outcome").inner_text()
        assert shown == "! breach" and "pass" not in await rule.inner_text(), shown
        facts = await rule.locator(".rule-facts").inner_text()
        assert re.search(r"bound max 5%, \d+ of 50 rounds past it", facts), facts
    await agent.cancel(deploy["id"])


async def test_the_tab_s_title_follows_the_window_s_state_live(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """The live part updated in place while the tab kept the title it loaded with
    (`production v4: watching · Postflight`) after the window had ended: a tab among
    others still said watching."""
    agent = await journey_agent(window="60s")
    deploy = await agent.register("production", "v4")
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    assert await page.title() == "production v4: watching · Postflight"
    await page.wait_for_selector('tr[data-round="1"]', timeout=10_000)
    await agent.cancel(deploy["id"])
    await page.wait_for_selector('[data-state="cancelled"]', timeout=10_000)
    for _ in range(50):  # the title changes with the event (CSP: no wait_for_function)
        if "watching" not in await page.title():
            break
        await asyncio.sleep(0.1)
    assert await page.title() == "production v4: cancelled · Postflight"


async def test_each_rule_s_value_in_every_round_is_in_the_rounds_table_not_only_drawn(
    journey_agent: JourneyAgent, journey: JourneyTarget, chromium: BrowserFactory
) -> None:
    """A rule's value per round was drawn (an SVG, `role=img`, whose text alternative
    names the last 12 rounds) and written nowhere: a screen reader, a text browser or a
    copy-paste of the page had no figure of the rounds before. The rounds table has a
    column per rule: its value that round, and whether it was past the bound, in words."""
    _, final = await rolled_back(journey_agent, journey)
    page = await (await chromium(javascript=False)).new_page()
    await page.goto(final["links"]["page"])
    table = page.locator("table.rounds")
    header = await table.locator("thead th").all_inner_texts()
    assert header[-1] == "journey-errors (max 5%)", header
    cells = table.locator('tbody td[data-rule="journey-errors"]')
    assert await cells.count() == final["rounds"]
    last = await table.locator('tr[data-round] td[data-rule="journey-errors"]').first.inner_text()
    assert re.fullmatch(r"\d+(\.\d+)?% \(past the bound\)", last), last


async def test_on_a_phone_the_charts_open_at_the_latest_round_and_each_round_is_one_line(
    journey_agent: JourneyAgent, journey: JourneyTarget, browser: Any, tmp_path: Path
) -> None:
    """On a 390 px screen a chart (540 px at least, to keep its text readable) scrolled
    sideways from its first round: the latest rounds and the bounds' labels were out of
    sight until scrolled to; and the rounds table squeezed each row into four lines
    (`50% / (past / the / bound)`)."""
    _, final = await rolled_back(journey_agent, journey)
    page = await browser.new_page()
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.goto(final["links"]["page"])
    # the live script's catch-up: the stream's state, then the figures fetched again and
    # put in place of the page's (a chart measured as it was replaced had no box)
    await page.wait_for_selector('#live-status:has-text("The window has ended")')
    await page.wait_for_load_state("networkidle")
    chart = page.locator('article[data-rule="journey-errors"] svg[data-kind="rounds"]')
    for element in (
        chart.locator('[data-series="observed"]').last,  # the latest round's point
        chart.locator("text.ref-label-bound"),
    ):
        box = await element.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    row = page.locator("table.rounds tr[data-round]").first
    cell = await row.locator("td").first.bounding_box()
    line = await page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)")
    assert cell is not None and cell["height"] < 2 * line, (cell, line)
    await screenshot(page, tmp_path, "deploy-phone")


async def test_the_page_retries_a_stream_answered_503_until_the_agent_is_ready(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """The README: an agent not ready yet (`503`: restarted, its store not answering yet)
    is retried, waiting 1 s, doubling; an EventSource gives up on a non-200 by itself. The
    stream's connection is dropped, and its next four answers (reconnect and HEAD, twice)
    are 503s: the page says it is retrying, then takes the rounds again."""
    agent = await journey_agent(window="30s")
    deploy = await agent.register("production", "v7")
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    await page.wait_for_selector('tr[data-round="2"]', timeout=10_000)
    served: list[str] = []

    async def not_ready(route: Any) -> None:
        if len(served) < 4:
            served.append(route.request.method)
            await route.fulfill(status=503, body="starting", headers={"Retry-After": "1"})
        else:
            await route.continue_()

    await page.route(re.compile(r"/v1/deploys/[^/]+/events"), not_ready)
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)

    await page.expose_function("said", say)
    await page.evaluate(
        """() => new MutationObserver(() => window.said(
             document.querySelector('#live-status').textContent))
           .observe(document.querySelector('#live-status'),
                    {childList: true, characterData: true, subtree: true})"""
    )
    drop_connections(agent)
    rounds = (await agent.get(deploy["id"]))["rounds"]
    await page.wait_for_selector(f'tr[data-round="{rounds + 2}"]', timeout=20_000)
    assert served == ["GET", "HEAD", "GET", "HEAD"], served
    retrying = next(i for i, s in enumerate(said) if "retrying" in s)
    assert any(s.startswith("Live:") for s in said[retrying:]), said  # open again
    await agent.cancel(deploy["id"])


async def test_an_alert_still_being_sent_when_the_window_ends_is_shown_sent_once_it_is(
    journey_agent: JourneyAgent, browser: Any
) -> None:
    """The stream ends with the window and its rollback, while the alert that ending sends
    (ROLLBACK FAILED, rollback delivered) may still be going out: the open page said
    `ROLLBACK FAILED: sending` for good (seen in Chromium on a rollback that failed after
    8 attempts; a reload said `sent`), so on-call read that the page never went out."""
    agent = await journey_agent(window="60s")
    deploy = await agent.register("production", "v8")
    await agent.cancel(deploy["id"])
    store = agent.app[STORE]
    assert await store.claim_alert(deploy["id"], "breach:journey-errors", time.time())
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    alert = page.locator('.alerts li[title="breach:journey-errors"]')
    await page.wait_for_selector("text=The window has ended", timeout=10_000)
    assert await alert.inner_text() == "journey-errors breached: sending"
    await store.record_alert(deploy["id"], "breach:journey-errors", "sent", "")
    await page.wait_for_selector(
        '.alerts li:text-is("journey-errors breached: sent")', timeout=10_000
    )


async def test_a_failed_windows_page_says_it_follows_the_rollback_not_rounds(
    start_agent: Any,
    journey: JourneyTarget,
    rollback_receiver: Any,
    json_sink: JsonSink,
    browser: Any,
) -> None:
    """A window that failed gets no more rounds; while its rollback is being delivered
    (the receiver asked for 30 s) the page's live status said 'Live: updates as each round
    is stored.' (seen auditing a failed rollback's page in Chromium)."""
    receiver = await rollback_receiver(SECRET, script=["503:retry-after=30"])
    agent = await start_agent(
        journey_environment(journey, receiver.url, SECRET, window="60s"),
        ALERTING.format(url=json_sink.url()),
    )
    deploy = await agent.register("production", "v9")
    journey.bad = True
    for _ in range(150):
        shown = await agent.get(deploy["id"])
        if (shown.get("rollback") or {}).get("attempts"):
            break
        await asyncio.sleep(0.1)
    assert shown["state"] == "failed" and shown["rollback"]["state"] == "pending", shown
    page = await browser.new_page()
    await page.goto(deploy["links"]["page"])
    status = page.locator("#live-status")
    for _ in range(100):  # the page's CSP refuses wait_for_function's string (no eval)
        if (await status.inner_text()).startswith("Live"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the page's live status never said Live within 10 s")
    said = await status.inner_text()
    assert "round" not in said, said
    assert said == (
        "Live: the window has ended (failed); following its rollback until it is delivered"
        " or given up."
    )

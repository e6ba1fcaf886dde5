"""The page's HTML from stored records, without a browser: provider queries and their
links, links that are not web links, security headers, and the list's filters."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape as html_escape

from agent.api import create_api_app
from agent.metrics import Metrics
from agent.records import DeployWindow, RollbackIntent, RoundRecord, replaced_words
from agent.rollback import rollback_intent
from agent.settings import Settings
from agent.store.sqlite import SqliteStore
from agent.web.routes import mount as mount_pages
from agent.web.times import iso
from agent.windows.lifecycle import settled_alert
from alerting.events import headline
from tests.api.harness import AUTH, TOKEN, RecordingEvents, make_app, rule
from tests.app_client import AppClient
from tests.store.peek import set_rollback

ID = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"


async def page_of(
    aiohttp_client: Any,
    store: SqliteStore,
    verdict: dict[str, Any],
    alerts: dict[str, str] | None = None,
) -> str:
    now = time.time()
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    record = RoundRecord(ID, 1, now - 30, {"observations": {}, "decision": "continue"})
    await store.record_round(record, verdict)
    for key, result in (alerts or {}).items():
        assert await store.claim_alert(ID, key, now - 20)
        await store.record_alert(ID, key, result, "")
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    response = await client.get(f"/deploys/{ID}", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    return await response.text()


async def test_provider_queries_are_listed_with_their_links(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    sentry = rule(
        "sentry-errors",
        "pass",
        source="sentry",
        metric="error_count",
        query="event.type:error release:v2",
        link="https://sentry.example/organizations/acme/issues/?query=x&y=<1>",
    )
    evil = rule(
        "evil", "pass", source="prometheus", metric="value", query="up", link="javascript:alert(1)"
    )
    html = await page_of(
        aiohttp_client, store, {"outcome": "pending", "reason": "", "rules": [sentry, evil]}
    )
    assert "Provider queries" in html
    assert "event.type:error release:v2" in html
    assert (
        'href="https://sentry.example/organizations/acme/issues/?query=x&amp;y=&lt;1&gt;"' in html
    )
    assert "javascript:" not in html


async def test_a_rule_without_evidence_or_rounds_still_renders(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    odd = {
        "name": "odd",
        "outcome": "inconclusive",
        "evidence": "not a mapping",
        "observed": "NaN?",
    }
    html = await page_of(
        aiohttp_client, store, {"outcome": "pending", "reason": "", "rules": [odd]}
    )
    assert 'data-rule="odd"' in html
    assert "no data yet" in html  # the chart's text alternative


async def test_the_list_filters_on_every_state_and_environment_and_refuses_unknown_ones(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """`?state=scheduled` was silently ignored (every window shown under a filter that
    looked applied) and had no option; now the page lists what `GET /v1/deploys` lists
    for each state, and an unknown state is a 400 naming the states, as the API's 422."""
    now = time.time()
    ids = {name: f"dep_01JD8X9Q2ZK3V7Y0M5T4N6R8W{n}" for n, name in enumerate("PSW", 1)}
    passed = DeployWindow(
        ids["P"], "production", "v1", None, None, {}, "watching", now - 900, now - 300, now - 900
    )
    await store.create_window(passed)
    assert await store.finish_window(ids["P"], "passed", None, now - 300)
    scheduled = DeployWindow(
        ids["S"], "production", "v2", "v1", None, {}, "watching", now + 600, now + 1200, now - 5
    )
    watching = DeployWindow(
        ids["W"], "staging", "v3", None, None, {}, "watching", now - 60, now + 240, now - 60
    )
    await store.create_window(scheduled)
    await store.create_window(watching)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))

    # `watching` is the contract's state of a scheduled window too: both listed, newest first
    for state, expected in (("scheduled", "S"), ("watching", "SW"), ("passed", "P")):
        response = await client.get(f"/deploys?state={state}", headers=AUTH)
        assert response.status == 200
        page = await response.text()
        assert [key for key, id_ in ids.items() if id_ in page] == list(expected), state
        assert f'<option value="{state}" selected>' in page
        api = await (await client.get(f"/v1/deploys?state={state}", headers=AUTH)).json()
        assert [item["id"] for item in api["items"]] == [ids[key] for key in expected]

    response = await client.get("/deploys?state=", headers=AUTH)  # the form's "all"
    assert response.status == 200
    page = await response.text()
    assert all(id_ in page for id_ in ids.values())

    response = await client.get("/deploys?state=bogus<b>", headers=AUTH)
    assert response.status == 400
    page = await response.text()
    assert "No state &#39;bogus&lt;b&gt;&#39;: choose one of scheduled, watching" in page
    assert not any(id_ in page for id_ in ids.values())
    assert '<select name="state">' in page  # the filter form stays, to pick a state
    assert (await client.get("/v1/deploys?state=bogus", headers=AUTH)).status == 422

    # an environment never seen is a 400 naming the environments (it showed every window,
    # as if filtered); one removed from the config keeps its history, as in the API
    response = await client.get("/deploys?environment=prodction", headers=AUTH)
    assert response.status == 400
    page = await response.text()
    assert "No environment &#39;prodction&#39;: choose one of production" in page
    assert not any(id_ in page for id_ in ids.values())
    assert (await client.get("/v1/deploys?environment=prodction", headers=AUTH)).status == 404
    removed = DeployWindow(
        "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WR",
        "retired",
        "v0",
        None,
        None,
        {},
        "watching",
        now - 99,
        now - 9,
        now - 99,
    )
    await store.create_window(removed)
    response = await client.get("/deploys?environment=retired", headers=AUTH)
    assert response.status == 200
    page = await response.text()
    assert removed.id in page and not any(id_ in page for id_ in ids.values())
    assert '<option value="retired" selected>' in page


async def test_alerts_sent_are_named_in_words_not_store_keys(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """The page listed the store's keys (`breach:errors`, `rollback_delivered`)."""
    alerts = {
        "breach:errors": "sent",
        "rollback_delivered": "sent",
        "marker:sentry:deploy": "failed",
        "alert:then:page-db-team": "sent",
        # a first run of the example config: chat took it, the mail server was down; the
        # page said `sentry unreachable: partial`, a store word on-call cannot read
        "provider_unreachable:sentry": "partial",
        "provider_unreachable:newrelic": "claimed",
        "rollback_requested": "unrouted",
    }
    html = await page_of(
        aiohttp_client, store, {"outcome": "pending", "reason": "", "rules": []}, alerts
    )
    for said in (
        "errors breached: sent",
        "rollback delivered: sent",
        "sentry deploy marker not recorded: failed",
        "follow-up page-db-team failed: sent",
        "sentry unreachable: sent to some channels, failed on others",
        "newrelic unreachable: sending",
        "rollback requested: no channel takes it",
    ):
        assert said in html
    assert 'title="breach:errors"' in html  # the key, for whoever greps the store
    # in the order a window sends them, not the keys' alphabet ("rollback delivered"
    # above "rollback requested", "ROLLBACK FAILED" above both)
    shown = html[html.index('<ul class="alerts">') :]
    order = ["errors breached", "rollback requested", "rollback delivered", "follow-up"]
    assert sorted(order, key=shown.index) == order, shown[:600]


async def test_a_round_stored_while_the_page_reads_waits_for_the_next_read(
    aiohttp_client: Any, store: SqliteStore, monkeypatch: Any
) -> None:
    """The page reads the window, then its rounds: a round stored between the two showed
    as a row beside a count (and verdict) that did not have it yet, 'Rounds 0' over round
    1's row (a browser test on a loaded machine saw it). The rows are those the count has."""
    await page_of(aiohttp_client, store, {"outcome": "pending", "reason": "", "rules": []})
    read = store.rounds

    async def with_a_round_stored_first(
        window_id: str, after: int = 0, *, each: Any = None
    ) -> list[RoundRecord]:
        monkeypatch.setattr(store, "rounds", read)
        late = RoundRecord(ID, 2, time.time(), {"observations": {}, "decision": "continue"})
        assert await store.record_round(late, None)
        return await read(window_id, after, each=each)

    monkeypatch.setattr(store, "rounds", with_a_round_stored_first)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    fragment = await (await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)).text()
    assert 'data-rounds="1"' in fragment
    assert 'data-round="1"' in fragment and 'data-round="2"' not in fragment
    again = await (await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)).text()
    assert 'data-rounds="2"' in again and 'data-round="2"' in again


async def _failed_asking_rollback(
    store: SqliteStore, now: float, reason: str, labels: dict[str, str] | None = None
) -> tuple[DeployWindow, RollbackIntent]:
    """Window `ID` opened a minute before `now`, failed 10 s before it with a rollback
    asked for `reason`: the window and that rollback, not yet tried."""
    labels = labels or {}
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", labels, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    intent: RollbackIntent = rollback_intent(window, reason, [], now - 10)
    await store.finish_window(ID, "failed", {"outcome": "fail", "reason": "x"}, now - 10, intent)
    return window, intent


async def test_the_rollback_section_says_why_it_was_asked_for_and_why_it_was_not_sent(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """The section said "failed after 0 attempt(s)" and nothing more: on-call opening a
    ROLLBACK FAILED link read neither the rollback's reason (a manual one's, after a pass,
    is nowhere else on the page) nor why it could not be sent."""
    now = time.time()
    _, intent = await _failed_asking_rollback(store, now, "checkout <b>broken</b>")
    intent.state, intent.finished_at = "failed", now - 9
    intent.last_error = "no previous production deployment is known (label vercel.previous)"
    await set_rollback(store, intent)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    response = await client.get(f"/deploys/{ID}", headers=AUTH)
    html = await response.text()
    section = html[html.index('id="rollback-title"') :]
    assert "Reason: checkout &lt;b&gt;broken&lt;/b&gt;" in section
    assert "Not delivered: no previous production deployment is known" in section
    assert '<strong class="rollback-state">failed</strong> before any attempt.' in section

    # counted in words that read: "after 1 attempt(s)" was the section's own plural
    intent.attempts, intent.last_status = 1, 400
    await set_rollback(store, intent)
    html = await (await client.get(f"/deploys/{ID}", headers=AUTH)).text()
    section = html[html.index('id="rollback-title"') :]
    assert "</strong> after 1 attempt, last status 400." in section


async def test_the_rollback_section_names_the_deployment_vercel_goes_back_to(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """On-call read "delivered after 1 attempt(s), last status 201" and not where
    production went: the Vercel deployment (`vercel.previous`) is named in the section."""
    now = time.time()
    labels = {"vercel.deployment": "dpl_new<b>", "vercel.previous": "dpl_old<i>"}
    await _failed_asking_rollback(store, now, "bad", labels)
    env = {
        "base_url": "http://127.0.0.1:9",
        "sources": {"vercel": {"project": "prj_1"}},
        "rollback": {"target": "vercel"},
    }
    settings = Settings(
        server={"api_tokens": [TOKEN]},
        integrations={"vercel": {"token": "t"}},
        environments={"production": env},
    )
    app = create_api_app(settings, store, Metrics(), RecordingEvents())
    mount_pages(app)
    client: AppClient = await aiohttp_client(app)
    html = await (await client.get(f"/deploys/{ID}", headers=AUTH)).text()
    section = html[html.index('id="rollback-title"') :]
    assert "Target: Vercel&#39;s instant rollback, back to deployment dpl_old&lt;i&gt;." in section


class CountingStore(SqliteStore):
    """Counts the reads of every round, the page's costliest, at the store."""

    round_reads = 0

    async def rounds(
        self, window_id: str, after: int = 0, *, each: Any = None
    ) -> list[RoundRecord]:
        self.round_reads += 1
        return await super().rounds(window_id, after, each=each)


async def test_tabs_fetching_the_live_part_at_once_share_a_read_that_follows_the_event(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    """Each live event makes every open page fetch its live part (page.js): each fetch
    read the window, its rollback, every round, the attempts and the alerts, so fifty
    tabs in an incident read the store fifty times per event. Fetches arriving together
    share one read now, and each still shows what was stored before it asked."""
    store = CountingStore(tmp_path / "postflight.db")
    await store.open()
    try:
        now = time.time()
        window = DeployWindow(
            ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
        )
        await store.create_window(window)
        client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))

        async def live_part() -> str:
            response = await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)
            assert response.status == 200
            return await response.text()

        for number in (1, 2):  # a round stored, its event, twenty tabs fetching at once
            record = RoundRecord(ID, number, now - 30, {"observations": {}, "decision": "go"})
            assert await store.record_round(record, {"outcome": "pending", "reason": ""})
            before = store.round_reads
            pages = await asyncio.gather(*(live_part() for _ in range(20)))
            assert all(f'data-rounds="{number}"' in page for page in pages)
            # one read here; a few on a loaded machine, where the fetches arrive spread
            assert store.round_reads - before <= 4, store.round_reads - before
        response = await client.get("/deploys/dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WA", headers=AUTH)
        assert response.status == 404
    finally:
        await store.close()


async def test_a_failed_rollbacks_section_says_what_to_do_as_its_alert_does(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """The section said "failed after 8 attempts" and the last error, not what to do: roll
    back by hand, or not since a newer deploy went out (that would undo it). The ROLLBACK
    FAILED alert says so; the page now gives its headline (`failed_rollback_headline`,
    one source), in each case the alert has: given up for the newer deploy its sender met
    (named as the alert named it, not the newest at the fetch), failed on its own with a
    newer deploy registered after (not "given up for" it: it was refused first), and
    delivered while a newer deploy took effect (check what serves)."""
    now = time.time()
    window, intent = await _failed_asking_rollback(store, now, "bad")
    intent.state, intent.finished_at, intent.attempts = "failed", now - 9, 8
    intent.last_status, intent.last_error = 503, "HTTP 503"
    await set_rollback(store, intent)
    env = {
        "base_url": "http://127.0.0.1:9",
        "rollback": {"url": "http://127.0.0.1:9/rollback", "secret": "s" * 32},
    }
    settings = Settings(server={"api_tokens": [TOKEN]}, environments={"production": env})
    app = create_api_app(settings, store, Metrics(), RecordingEvents())
    mount_pages(app)
    client: AppClient = await aiohttp_client(app)

    async def advice() -> str | None:
        html = await (await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)).text()
        section = html[html.index('id="rollback-title"') :]
        if 'class="rollback-advice"' not in section:
            return None
        start = section.index('<p class="rollback-advice"><strong>') + 35
        return section[start : section.index("</strong>", start)]

    def alerts_headline(newer: DeployWindow | None) -> str:
        intent.replaced_by = newer
        alert = settled_alert(window, settings.environments["production"], intent)
        return html_escape(headline(alert).replace("**", "").replace("`", ""))

    by_hand = await advice()
    assert by_hand is not None
    assert by_hand.startswith("Rollback FAILED. The pipeline&#39;s webhook did not accept it")
    assert by_hand.endswith("roll back by hand.")
    assert by_hand == alerts_headline(None)

    # v3 deployed 4 s after the rollback failed on its own (503s, its attempts spent):
    # rolling back by hand would now undo v3, but the rollback was not given up for it
    v3 = dataclasses.replace(
        window,
        id="dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WR",
        version="v3",
        previous_version="v2",
        deployed_at=now - 5,
        ends_at=now + 595,
        created_at=now - 5,
    )
    await store.create_window(v3)
    failed_first = await advice()
    assert failed_first is not None
    assert failed_first.startswith(
        "Rollback FAILED. The pipeline&#39;s webhook did not accept it, or could not be"
        f" reached (the reason says which). Since then v3 ({v3.id}) was deployed, after this"
        " rollback was requested. Rolling back now would undo v3, so do not roll back by"
        " hand: v3&#39;s own window judges it."
    ), failed_first
    assert "NOT sent" not in failed_first and "given up" not in failed_first

    # given up for v3, as its sender words it; v4 registered after: named as the alert did
    intent.finished_at, intent.attempts, intent.last_status = now - 4, 1, None
    intent.last_error = f"{replaced_words(v3)} at ..., after this rollback was requested"
    await set_rollback(store, intent)
    v4 = dataclasses.replace(
        v3, id="dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WS", version="v4", deployed_at=now - 2,
        created_at=now - 2,
    )  # fmt: skip
    await store.create_window(v4)
    not_by_hand = await advice()
    assert not_by_hand is not None
    assert not_by_hand.startswith(f"Rollback NOT sent: v3 ({v3.id}) was deployed since.")
    assert "do not roll back by hand" in not_by_hand
    assert not_by_hand == alerts_headline(v3)

    # delivered while v3 took effect: its alert said to check what serves, and so does
    # the page; delivered before v3 took effect, nothing to say
    intent.state, intent.last_error, intent.last_status = "delivered", None, 200
    await set_rollback(store, intent)
    delivered_past = await advice()
    assert delivered_past is not None
    assert delivered_past.startswith(f"Rollback delivered after v3 ({v3.id}) was deployed.")
    assert delivered_past == alerts_headline(v3)
    intent.finished_at = now - 6
    await set_rollback(store, intent)
    assert await advice() is None


async def test_a_window_that_ended_early_says_when_it_ended_beside_its_planned_end(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """A window rolled back 50 s in read "Window ends" with its planned end, 9 minutes
    after it had ended: on-call read a time that never happened as the window's end."""
    now = 1_733_380_000.0  # whole seconds: the page writes its moments so
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    planned, ended = iso(now + 540), iso(now - 10)

    def facts(html: str) -> str:
        return html[html.index('<dl class="facts">') : html.index("</dl>")]

    watching = facts(await (await client.get(f"/deploys/{ID}", headers=AUTH)).text())
    assert f'<dt>Window ends</dt><dd><time datetime="{planned}">{planned}</time></dd>' in watching
    assert "ended" not in watching

    intent: RollbackIntent = rollback_intent(window, "checkout broken", [], now - 10)
    await store.finish_window(ID, "failed", {"outcome": "fail", "reason": "x"}, now - 10, intent)
    shown = facts(await (await client.get(f"/deploys/{ID}", headers=AUTH)).text())
    assert "Window ends" not in shown
    assert f'<dt>Window ended</dt><dd><time datetime="{ended}">{ended}</time>' in shown
    assert f'(planned end <time datetime="{planned}">{planned}</time>)</dd>' in shown


async def test_a_window_that_ran_its_full_length_says_it_ended_then(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """Ended at its planned end: one moment, no planned end beside it."""
    now = 1_733_380_000.0
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 600, now, now - 600
    )
    await store.create_window(window)
    await store.finish_window(ID, "passed", {"outcome": "pass", "reason": "x"}, now)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    html = await (await client.get(f"/deploys/{ID}", headers=AUTH)).text()
    shown = html[html.index('<dl class="facts">') : html.index("</dl>")]
    end = iso(now)
    assert f'<dt>Window ended</dt><dd><time datetime="{end}">{end}</time></dd>' in shown
    assert "planned end" not in shown


async def test_a_window_ended_says_how_long_it_ran_as_its_moments_show(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """Deployed at :32.7 and ended at :34.1, the page showed "Deployed …:32", "Window
    ended …:34" (whole seconds, truncated) and "Window ended after 1s of its 30s" (1.4 s,
    rounded): the reader's own sum said 2 s. It now says how long as the moments it shows
    tell it; a window that ran its length still says its length."""
    t = 1_733_380_000.0
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", t + 32.7, t + 62.7, t + 32.7
    )
    await store.create_window(window)
    await store.finish_window(ID, "cancelled", None, t + 34.1)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    html = await (await client.get(f"/deploys/{ID}", headers=AUTH)).text()

    assert f'<time datetime="{iso(t + 32)}">' in html and f'<time datetime="{iso(t + 34)}">' in html
    assert '<p id="window-ended">Window ended after 2s of its 30s.</p>' in html


class _Loads(HTMLParser):
    """Every URL an HTML document has the browser load (not a link it follows)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None or (tag == "a" and name == "href"):
                continue  # a link is followed by the reader, never loaded by the page
            if name in ("src", "href", "action", "formaction", "poster", "data", "background"):
                self.urls.append(value)
            elif name == "srcset":
                self.urls += [part.split()[0] for part in value.split(",") if part.strip()]
            elif name == "style" and "url(" in value:
                self.urls.append(value)


async def test_the_pages_load_nothing_from_other_origins_whatever_a_deploy_names(
    aiohttp_client: Any, store: SqliteStore
) -> None:
    """Contract §8: "the page loads nothing from other origins". A deploy whose version,
    labels and commit name other sites' scripts and images: neither the deploy page nor the
    list loads any URL that is not this agent's, and each says so in its
    Content-Security-Policy (no source but 'self' and 'none')."""
    now = time.time()
    outside = "https://cdn.example.net/x.js"
    window = DeployWindow(
        ID,
        "production",
        f'v2"><script src="{outside}"></script>',
        "v1",
        f"<img src={outside}>",
        {"vercel.url": outside, "link": f'<link rel="stylesheet" href="{outside}">'},
        "watching",
        now - 60,
        now + 540,
        now - 60,
    )
    await store.create_window(window)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    for path in (f"/deploys/{ID}", "/deploys"):
        response = await client.get(path, headers=AUTH)
        assert response.status == 200, path
        html = await response.text()
        assert "cdn.example.net" in html, path  # shown, as text
        loads = _Loads()
        loads.feed(html)
        assert loads.urls, path  # its own script and style
        for url in loads.urls:
            assert not urlsplit(url).netloc and not url.startswith("//"), (path, url)
        policy = response.headers["Content-Security-Policy"]
        sources = {s for d in policy.split(";") for s in d.split()[1:]}
        assert sources <= {"'self'", "'none'"}, (path, policy)

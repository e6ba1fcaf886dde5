"""A deploy page's fetch and the agent's event loop: the fetches of one stored round
share one built page part, and the CPU-heavy build and render run off the loop (the
loop times every window's probes; bench/page_size.py measures how long it is held)."""

from __future__ import annotations

import dataclasses
import gc
import json
import threading
import time
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import jinja2

import agent.store.sql as sql_module
import agent.web.pages as pages
import agent.web.view as view_module
from agent.appkeys import SETTINGS
from agent.records import DeployWindow, RoundRecord
from agent.store.sqlite import SqliteStore
from agent.web.built_views import BuiltPage, BuiltViews
from agent.web.charts import evidence_chart, rounds_chart
from tests.api.harness import AUTH, RecordingEvents, make_app
from tests.app_client import AppClient

ID = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"
VERDICT = {
    "outcome": "pending",
    "reason": "",
    "rules": [{"name": "errors", "metric": "error_rate", "outcome": "pass", "observed": 0.0}],
}


class CountingStore(SqliteStore):
    """Counts the reads of every round (with every probe's sample), the page's costliest."""

    round_reads = 0
    afters: list[int]

    async def rounds(
        self, window_id: str, after: int = 0, *, each: Any = None
    ) -> list[RoundRecord]:
        self.round_reads += 1
        self.afters = [*getattr(self, "afters", []), after]
        return await super().rounds(window_id, after, each=each)


def a_round(number: int, now: float) -> RoundRecord:
    summary = {"observations": {"errors": {"value": 0.0}}, "decision": "continue"}
    return RoundRecord(ID, number, now - 60 + number, summary)


async def watching(store: SqliteStore) -> float:
    now = time.time()
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    assert await store.record_round(a_round(1, now), VERDICT)
    return now


async def test_fetches_of_one_stored_round_read_and_build_its_rounds_once(
    aiohttp_client: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """Every fetch read every round and drew every chart again: 1.6 s of the loop per
    fetch of a 720-round page of 50 rules, for each open tab on each event. Fetches at one
    stored round now share one built and rendered part; a new round, or an alert, still
    shows."""
    built: list[int] = []
    draw = view_module._rule_charts

    def counted(item: Any, rule: Any, rounds: Any, baseline: Any, current: bool) -> Any:
        built.append(len(rounds))
        return draw(item, rule, rounds, baseline, current)

    rendered: list[str] = []
    render = jinja2.Template.generate

    def render_counted(self: jinja2.Template, *args: Any, **kwargs: Any) -> Iterator[str]:
        rendered.append(str(self.name))
        return render(self, *args, **kwargs)

    monkeypatch.setattr(view_module, "_rule_charts", counted)
    monkeypatch.setattr(jinja2.Template, "generate", render_counted)
    store = CountingStore(tmp_path / "postflight.db")
    await store.open()
    try:
        now = await watching(store)
        client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))

        async def live_part() -> str:
            response = await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)
            assert response.status == 200
            return await response.text()

        for _ in range(3):
            assert 'data-rounds="1"' in await live_part()
        assert (store.round_reads, built) == (1, [1])
        # the charts' and rounds' HTML (2.6 MB for 720 rounds of 50 rules) rendered once
        assert rendered.count("live.html") == 3 and rendered.count("rounds.html") == 1
        assert await store.claim_alert(ID, "breach:errors", now - 5)
        await store.record_alert(ID, "breach:errors", "sent", "")
        assert "errors breached" in await live_part()  # no round: the same part, new alerts
        assert (store.round_reads, built) == (1, [1])

        assert await store.record_round(a_round(2, now), VERDICT)
        for _ in range(3):
            page = await live_part()
            assert 'data-rounds="2"' in page and 'data-round="2"' in page
        assert (store.round_reads, built) == (2, [1, 2])
        assert store.afters == [0, 1]  # only the round stored since is read
        assert rendered.count("rounds.html") == 2
        page = await (await client.get(f"/deploys/{ID}", headers=AUTH)).text()
        assert 'data-round="2"' in page and store.round_reads == 2
    finally:
        await store.close()


async def test_the_page_is_built_and_rendered_off_the_loop_thread(
    aiohttp_client: Any, store: SqliteStore, monkeypatch: Any
) -> None:
    """The build (0.3 s of CPU for 720 rounds of 50 rules) and the render (0.3 s) ran on
    the loop's thread, holding the loop that times every window's probes."""
    threads: dict[str, set[int]] = {"build": set(), "render": set()}
    draw = view_module._rule_charts
    render = jinja2.Template.generate

    def drawn(item: Any, rule: Any, rounds: Any, baseline: Any, current: bool) -> Any:
        threads["build"].add(threading.get_ident())
        return draw(item, rule, rounds, baseline, current)

    def rendered(self: jinja2.Template, *args: Any, **kwargs: Any) -> Iterator[str]:
        if self.name in ("live.html", "deploy.html"):
            threads["render"].add(threading.get_ident())
        return render(self, *args, **kwargs)

    monkeypatch.setattr(view_module, "_rule_charts", drawn)
    monkeypatch.setattr(jinja2.Template, "generate", rendered)
    await watching(store)
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    for path in (f"/deploys/{ID}", f"/deploys/{ID}?fragment=1"):
        response = await client.get(path, headers=AUTH)
        assert response.status == 200 and "errors" in await response.text()
    loop_thread = threading.get_ident()
    assert threads["build"] and loop_thread not in threads["build"]
    assert threads["render"] and loop_thread not in threads["render"]


async def test_the_rounds_read_for_the_page_are_parsed_off_the_loop_thread(
    store: SqliteStore, monkeypatch: Any
) -> None:
    """Every probe's sample of every round is JSON in the store: 720 rounds of 50 checks'
    40 took ~1 s to parse on the loop (the page's read of its rounds, and a resume's)."""
    made: set[int] = set()

    def record(*fields: Any) -> RoundRecord:
        made.add(threading.get_ident())
        return RoundRecord(*fields)

    await watching(store)
    monkeypatch.setattr(sql_module, "RoundRecord", record)
    assert [r.number for r in await store.rounds(ID)] == [1]
    assert made and threading.get_ident() not in made


LATENCY = {
    "outcome": "pending",
    "reason": "",
    "rules": [{"name": "lat", "metric": "latency_p95", "outcome": "pass", "observed": 0.2}],
}


def rounds_part(page: str) -> str:
    """The rules, rounds and check failures sections of a page or its live part."""
    start = page.index('<section class="rules"')
    return page[start : page.index('<section aria-labelledby="rollback-title">', start)].strip()


async def test_a_page_built_round_by_round_draws_what_one_built_at_once_draws(
    aiohttp_client: Any, store: SqliteStore, monkeypatch: Any
) -> None:
    """Between rounds a page keeps only what it draws of the rounds it read (no samples
    past the distribution chart's cap, `MAX_DISTRIBUTION_SAMPLES`, nor what no chart or
    table shows) and reads only the rounds stored since: what it draws is what a page
    reading every round draws."""
    monkeypatch.setattr(view_module, "MAX_DISTRIBUTION_SAMPLES", 5)
    now = time.time()
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    assert await store.set_baseline(ID, {"lat": {"value": 0.1, "values": [0.1, 0.11, 0.12]}})
    watched: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    for number in range(1, 6):
        values = [0.2 + number / 100 + i / 1000 for i in range(3)]
        failed = {"failed": 2, "message": f"500 in round {number}", "failure": {"step": "s"}}
        summary = {
            "observations": {"lat": {"value": values[-1], "values": values, "count": 3}},
            "rules": {"lat": {"likelihood_ratio": number / 10, "outcome": "pass"}},
            "checks": {"home": {"failed": 0, "runs": 3}} | ({"api": failed} if number < 4 else {}),
            "decision": "continue" if number % 2 else "hold",
            "probed": {"home": 3},
        }
        record = RoundRecord(ID, number, now - 60 + number, summary)
        assert await store.record_round(record, LATENCY)
        response = await watched.get(f"/deploys/{ID}?fragment=1", headers=AUTH)
        part = rounds_part(await response.text())
    # as drawn from every round read whole, every sample in it
    app = make_app(store, RecordingEvents())
    rules = [r.to_rule() for r in app[SETTINGS].environments["production"].rules]
    stored = await store.get_window(ID)
    assert stored is not None and stored.rounds == 5
    view = view_module.rounds_view(stored, await store.rounds(ID), rules=rules)
    whole = pages._templates().get_template("rounds.html").render(d=view).strip()
    assert "latency, new vs baseline" in whole and 'data-round="5"' in whole
    assert "evidence toward failing" in whole and "500 in round 3" in whole
    assert part == whole
    fresh: AppClient = await aiohttp_client(app)  # and a page read at once
    page = await (await fresh.get(f"/deploys/{ID}?fragment=1", headers=AUTH)).text()
    assert rounds_part(page) == whole


def test_built_parts_are_kept_for_the_latest_watched_windows_only() -> None:
    """Bounded (each is ~19 MB for 720 rounds of 50 rules), dropped when the window ends
    (its rounds may be pruned; its page is read whole when opened)."""
    views = BuiltViews(size=2)
    now = time.time()
    windows = [
        DeployWindow(f"dep_{n}", "production", "v2", None, None, {}, "watching", now, now, now)
        for n in range(3)
    ]
    page = BuiltPage(cast(Any, None), "")
    for window in windows:
        views.put(window, None, page, [a_round(1, now)], {})
        assert views.get(window, None) is page and views.get(window, object()) is None
    assert len(views) == 2 and views.get(windows[0], None) is None
    assert [r.number for r in views.earlier(windows[2])[0]] == [1]
    ended = dataclasses.replace(windows[2], state="passed", ended_at=now)
    assert views.earlier(ended) == ([], {})
    views.put(ended, None, page, [], {})
    assert views.get(ended, None) is None and views.get(windows[2], None) is None
    assert len(views) == 1


class _Summary(dict[str, Any]):
    """A parsed round's summary that says when it is freed (a plain dict cannot)."""


async def test_a_pages_first_read_never_holds_every_round_whole(
    aiohttp_client: Any, store: SqliteStore, monkeypatch: Any
) -> None:
    """A window's first page read every round, with every probe's sample, before keeping
    only what it draws: 720 rounds of 50 checks' 40 samples were millions of objects at
    once, and each full pass of the collector over them while they were parsed (in a
    thread, holding the GIL) held the loop that times the probes 0.2-0.4 s
    (`bench/page_size.py`). Each round is now slimmed as it is parsed: one whole at a time,
    and the page is the same."""
    now = time.time()
    window = DeployWindow(
        ID, "production", "v2", "v1", "abc123", {}, "watching", now - 60, now + 540, now - 60
    )
    await store.create_window(window)
    for number in range(1, 7):
        summary = {
            "observations": {"errors": {"value": number / 100, "values": [0.0] * 40}},
            "checks": {"home": {"failed": 1, "runs": 40, "message": f"500 in {number}"}},
            "judge": {"errors": {"samples": list(range(40))}},
            "decision": "continue",
        }
        assert await store.record_round(
            RoundRecord(ID, number, now - 60 + number, summary), VERDICT
        )
    whole = [r.summary for r in await store.rounds(ID)]

    alive: set[int] = set()
    most = 0
    loads = json.loads

    def parsed(text: str) -> Any:
        nonlocal most
        summary = loads(text)
        if not (isinstance(summary, dict) and "judge" in summary):
            return summary  # not a round's (the window's verdict, its labels)
        summary = _Summary(summary)
        alive.add(id(summary))
        most = max(most, len(alive))
        weakref.finalize(summary, alive.discard, id(summary))
        return summary

    monkeypatch.setattr(sql_module, "json", SimpleNamespace(loads=parsed, dumps=json.dumps))
    client: AppClient = await aiohttp_client(make_app(store, RecordingEvents()))
    page = await (await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)).text()
    assert 'data-rounds="6"' in page and "500 in 6" in page
    assert most == 1, f"{most} rounds' whole summaries held at once"
    monkeypatch.undo()
    assert [r.summary for r in await store.rounds(ID)] == whole  # the store's read as it was


def test_a_charts_points_are_nothing_the_collector_tracks() -> None:
    """A page of 720 rounds of 50 rules draws 72,000 points, held until it is rendered:
    as instances the collector tracked each for good, and went through them all on each
    full pass while the page was built (holding the GIL, so the loop)."""
    observed = [(n, 0.2 if n == 300 else 0.01) for n in range(1, 721)]
    chart = rounds_chart(
        "errors",
        observed,
        fmt=str,
        baseline=0.01,
        bounds=[("max", 0.05)],
        breach=[v > 0.05 for _, v in observed],
    )
    evidence = evidence_chart("errors", [(n, 1.0 + n / 100) for n in range(1, 721)], 100.0)
    points = [*chart.series[0], *evidence.series[0]]
    gc.collect()
    assert len(points) == 1440
    assert not [p for p in points if gc.is_tracked(p)]

"""A deploy page's fetch and the agent's event loop: the fetches of one stored round
share one built page part, and the CPU-heavy build and render run off the loop (the
loop times every window's probes; bench/page_size.py measures how long it is held)."""

from __future__ import annotations

import threading
import time
from typing import Any

import jinja2
from aiohttp.test_utils import TestClient

import agent.store.sql as sql_module
import agent.web.view as view_module
from agent.records import DeployWindow, RoundRecord
from agent.store.sqlite import SqliteStore
from tests.api.harness import AUTH, RecordingEvents, make_app

ID = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"
VERDICT = {
    "outcome": "pending",
    "reason": "",
    "rules": [{"name": "errors", "metric": "error_rate", "outcome": "pass", "observed": 0.0}],
}


class CountingStore(SqliteStore):
    """Counts the reads of every round (with every probe's sample), the page's costliest."""

    round_reads = 0

    async def rounds(self, window_id: str) -> list[RoundRecord]:
        self.round_reads += 1
        return await super().rounds(window_id)


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
    stored round now share one built part; a new round, or an alert, still shows."""
    built: list[int] = []
    draw = view_module._rule_charts

    def counted(item: Any, rule: Any, rounds: Any, baseline: Any) -> Any:
        built.append(len(rounds))
        return draw(item, rule, rounds, baseline)

    monkeypatch.setattr(view_module, "_rule_charts", counted)
    store = CountingStore(tmp_path / "postflight.db")
    await store.open()
    try:
        now = await watching(store)
        client: TestClient = await aiohttp_client(make_app(store, RecordingEvents()))

        async def live_part() -> str:
            response = await client.get(f"/deploys/{ID}?fragment=1", headers=AUTH)
            assert response.status == 200
            return await response.text()

        for _ in range(3):
            assert 'data-rounds="1"' in await live_part()
        assert (store.round_reads, built) == (1, [1])
        assert await store.claim_alert(ID, "breach:errors", now - 5)
        await store.record_alert(ID, "breach:errors", "sent", "")
        assert "errors breached" in await live_part()  # no round: the same part, new alerts
        assert (store.round_reads, built) == (1, [1])

        assert await store.record_round(a_round(2, now), VERDICT)
        for _ in range(3):
            page = await live_part()
            assert 'data-rounds="2"' in page and 'data-round="2"' in page
        assert (store.round_reads, built) == (2, [1, 2])
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
    render = jinja2.Template.render

    def drawn(item: Any, rule: Any, rounds: Any, baseline: Any) -> Any:
        threads["build"].add(threading.get_ident())
        return draw(item, rule, rounds, baseline)

    def rendered(self: jinja2.Template, *args: Any, **kwargs: Any) -> str:
        if self.name in ("live.html", "deploy.html"):
            threads["render"].add(threading.get_ident())
        return render(self, *args, **kwargs)

    monkeypatch.setattr(view_module, "_rule_charts", drawn)
    monkeypatch.setattr(jinja2.Template, "render", rendered)
    await watching(store)
    client: TestClient = await aiohttp_client(make_app(store, RecordingEvents()))
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

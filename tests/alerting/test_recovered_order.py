"""A crash's cut-off alerts go out again in the order they were raised (contract §4).

A kill -9 after a rollback's outcome was stored and before its alerts were sent leaves
the window's "rollback requested" and its outcome (and maybe the breach before them)
claimed and unsent; the next start's recovery takes them all over at once. Sent side by
side, a channel slow on the first took the outcome before the request (or a resolve
before its breach): the newest alert then said a rollback was under way that had
failed. Each test makes the channel slow on the alert that must come first.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agent.metrics import Metrics
from agent.store.base import UnsettledAlert
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts, dump_payload, raised_order
from alerting.events import Alert, AlertEvent, breach_key, resolved_key
from tests.alerting.test_window_alerts import make_notifier, rule, window
from tests.receivers import JsonSink, SlowOnTitles

LEASE_S = 2.0


TITLES: dict[str, str] = {
    "breach": "breached",
    "resolved": "resolved",
    "rollback_requested": "rollback requested",
    "rollback_failed": "ROLLBACK FAILED",
    "rollback_delivered": "rollback delivered",
}


async def crashed_with(path: Path, claims: list[tuple[str, AlertEvent, list[str]]]) -> None:
    """The store a process left when killed with these alerts claimed and unsent, in
    this order (key, event, rules), a few ms apart."""
    store = SqliteStore(path)
    await store.open()
    try:
        w = window()
        await store.create_window(w)
        for key, event, rules in claims:
            alert = Alert.for_window(w, event, rules=[rule(r) for r in rules])
            payload = dump_payload(alert, ["oncall"])
            assert await store.claim_alert(w.id, key, time.time(), None, payload)
            await asyncio.sleep(0.01)
    finally:
        await store.close()


async def recovered(path: Path, sink: JsonSink, metrics: Metrics) -> int:
    """A restarted agent past the lease, its recovery's sends run in the background as
    `run` runs them; how many it took over, once all were sent."""
    store = SqliteStore(path)
    await store.open()
    try:
        clock = lambda: time.time() + LEASE_S + 1  # noqa: E731
        notifier = make_notifier([sink.url()], metrics)
        alerts = WindowAlerts(store, notifier, clock=clock, lease_s=LEASE_S)
        tasks: list[asyncio.Task[Any]] = []
        taken = await alerts.recover(lambda work: tasks.append(asyncio.ensure_future(work)))
        await asyncio.gather(*tasks)
        assert await alerts.recover() == 0  # each once
        return taken
    finally:
        await store.close()


CASES: dict[str, list[tuple[str, AlertEvent, list[str]]]] = {
    "request before its outcome (failed)": [
        ("rollback_requested", "rollback_requested", ["error-rate"]),
        ("rollback_failed", "rollback_failed", []),
    ],
    "request before its outcome (delivered)": [
        ("rollback_requested", "rollback_requested", ["error-rate"]),
        ("rollback_delivered", "rollback_delivered", []),
    ],
    "breach, request, outcome": [
        (breach_key("error-rate"), "breach", ["error-rate"]),
        ("rollback_requested", "rollback_requested", ["error-rate"]),
        ("rollback_failed", "rollback_failed", []),
    ],
    "breach before its resolve": [
        (breach_key("error-rate"), "breach", ["error-rate"]),
        (resolved_key("error-rate"), "resolved", ["error-rate"]),
    ],
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_crashs_cut_off_alerts_reach_a_channel_in_the_order_they_were_raised(
    tmp_path: Path, metrics: Metrics, case: str
) -> None:
    claims = CASES[case]
    path = tmp_path / "alerts.db"
    await crashed_with(path, claims)
    sink = SlowOnTitles([TITLES[claims[0][1]]])
    await sink.start()
    try:
        assert await recovered(path, sink, metrics) == len(claims)
    finally:
        await sink.stop()
    titles = [n.title for n in sink.notifications]
    assert len(titles) == len(claims), titles
    for title, (_, event, _) in zip(titles, claims, strict=True):
        assert TITLES[event] in title, titles


def test_a_rollbacks_alerts_keep_their_order_when_the_clocks_disagree() -> None:
    """Claimed by two replicas (the request with the window's end, the outcome by the
    sender that settled it), the stamps may run backwards by a clock's offset, or tie:
    on-call still reads breach, request, outcome; a resolve after its breach, even one
    of a grouped breach; an alert of its own (a provider's) where its stamp puts it."""

    def claim(event: str, at: float, also: list[str] | None = None) -> tuple[UnsettledAlert, float]:
        w = window()
        alert = Alert.for_window(w, "breach")
        return UnsettledAlert(
            w.id, event, at, dump_payload(alert, [], also or []), frozenset()
        ), 0.0

    claims = [
        claim("rollback_failed", 1.0),
        claim("provider:prometheus", 1.5),
        claim("rollback_requested", 2.0),
        claim(resolved_key("b"), 2.0),
        claim(breach_key("a"), 3.0, [breach_key("b")]),
    ]
    order = [c.event for c, _ in raised_order(claims)]
    assert order == [
        "provider:prometheus",
        breach_key("a"),
        "rollback_requested",
        "rollback_failed",
        resolved_key("b"),
    ], order


async def test_a_cut_off_alert_left_waiting_past_its_lease_is_the_replica_s_that_took_it(
    tmp_path: Path, metrics: Metrics
) -> None:
    """Waiting its turn behind a slow send, the outcome's claim outlived the lease it was
    taken with and another replica took it over: that one sends it, this one does not
    (once, not twice); and this process's own next scan leaves a waiting claim alone."""
    path = tmp_path / "alerts.db"
    await crashed_with(path, CASES["request before its outcome (failed)"])
    sink = SlowOnTitles([TITLES["rollback_requested"]], delay=1.0)
    await sink.start()
    store = SqliteStore(path)
    await store.open()
    try:
        now = [time.time() + LEASE_S + 1]
        notifier = make_notifier([sink.url()], metrics)
        alerts = WindowAlerts(store, notifier, clock=lambda: now[0], lease_s=LEASE_S)
        tasks: list[asyncio.Task[Any]] = []
        assert await alerts.recover(lambda work: tasks.append(asyncio.ensure_future(work))) == 2
        await sink.wait_arrived(1)
        now[0] += LEASE_S + 1  # the request's send outlives the lease taken with both
        assert await alerts.recover(lambda work: tasks.append(asyncio.ensure_future(work))) == 0
        other = await store.take_alert(window().id, "rollback_failed", now[0], now[0] - LEASE_S)
        assert other is not None  # another replica's take-over
        await asyncio.gather(*tasks)
    finally:
        await store.close()
        await sink.stop()
    titles = [n.title for n in sink.notifications]
    assert len(titles) == 1 and TITLES["rollback_requested"] in titles[0], titles

"""An agent stopped (SIGSTOP, a frozen VM) while a slow channel has its alert sends it
once (contract §4): the 2xx the channel answered meanwhile counts on waking, and the
agent's own scans do not take its in-flight send for a dead sender's.

The stop is the sending loop's (a `time.sleep` run on it), the channel a sink on a
thread of its own that answers 200 while the loop cannot read it. Counted at the sink.
`tests/e2e/test_paused_alert.py` stops a real daemon with SIGSTOP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.metrics import Metrics
from agent.store.base import Store
from agent.store.postgres import PostgresStore
from agent.store.sqlite import SqliteStore
from agent.windows.alert_once import WindowAlerts
from alerting.events import Alert
from tests.alerting.test_window_alerts import make_notifier, retrying, services, window
from tests.receivers import JsonSink

TIMEOUT_S = 1.0
STOP_S = 2.5
"""The loop's stop: past the notifier's timeout and grace."""


class StallingSink:
    """A `json://` target on its own threads: the first request stops `loop` for
    `STOP_S` and is answered `first` 0.3 s into the stop; any other, 200 at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, first: int = 200) -> None:
        self.loop = loop
        self.first = first
        self.arrived = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.arrived += 1
                    first = sink.arrived == 1
                if first:
                    sink.loop.call_soon_threadsafe(time.sleep, STOP_S)
                    time.sleep(0.3)
                self.send_response(sink.first if first else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"


@contextmanager
def stalling_sink(first: int = 200) -> Iterator[StallingSink]:
    sink = StallingSink(asyncio.get_running_loop(), first)
    thread = threading.Thread(target=sink.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.server.shutdown()
        thread.join(10)


async def test_a_2xx_answered_while_the_sender_was_stopped_counts_as_sent(
    store: SqliteStore, metrics: Metrics
) -> None:
    """apprise's deadline ran first on waking and the send was reported failed, then
    retried: the channel got the alert twice."""
    with stalling_sink() as sink:
        notifier = make_notifier([sink.url()], metrics, timeout=TIMEOUT_S)
        alerts = WindowAlerts(store, notifier, retry_delays=(0.2,))
        w = window()
        await store.create_window(w)
        sent = await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"])
        await asyncio.sleep(0.5)  # a retry would be due by now
        await alerts.retry()
        await asyncio.sleep(0.5)
        assert sink.arrived == 1
        assert await store.alert_events(w.id) == {"passed": "sent"}
        assert sent is True


async def test_a_5xx_answered_while_the_sender_was_stopped_is_retried(
    store: SqliteStore, metrics: Metrics
) -> None:
    """The look on waking takes only what the channel accepted: a refusal heard then is
    a failure, retried as any other."""
    with stalling_sink(first=503) as sink:
        notifier = make_notifier([sink.url()], metrics, timeout=TIMEOUT_S)
        alerts = WindowAlerts(store, notifier, retry_delays=(0.2,))
        w = window()
        await store.create_window(w)
        assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
        await asyncio.sleep(0.5)
        assert await alerts.retry() == 1
        assert sink.arrived == 2
        assert await store.alert_events(w.id) == {"passed": "sent"}


async def test_replicas_on_postgresql_send_it_once_when_the_sender_was_stopped(
    pg_url: str, metrics: Metrics
) -> None:
    """Two agents on one PostgreSQL, each with its retry loop: the stopped sender's
    alert, answered 2xx meanwhile, was stored failed and retried by one of them."""
    stores: list[Store] = [PostgresStore(pg_url) for _ in range(2)]
    for each in stores:
        await each.open()
    w = window()
    await stores[0].create_window(w)
    try:
        with stalling_sink() as sink:
            replicas = [
                WindowAlerts(
                    each,
                    make_notifier([sink.url()], metrics, timeout=TIMEOUT_S),
                    retry_delays=(0.2,),
                )
                for each in stores
            ]
            loops = [
                retrying(r, services(st, r, metrics))
                for r, st in zip(replicas, stores, strict=True)
            ]
            async with loops[0], loops[1]:
                sent = await replicas[0].emit(w, Alert.for_window(w, "passed"), ["oncall"])
                await asyncio.sleep(1.0)  # five times the retry's delay
            assert sink.arrived == 1
            assert await stores[1].alert_events(w.id) == {"passed": "sent"}
            assert sent is True
    finally:
        for each in stores:
            await each.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_agents_own_scan_leaves_its_in_flight_send_alone(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """Stopped past the alert's lease mid-send: on waking, the agent's own scan took its
    claim for a dead sender's and sent the alert again, besides the send in flight."""
    json_sink.answer_after(0.5)
    clock = Clock()
    alerts = WindowAlerts(store, make_notifier([json_sink.url()], metrics), clock=clock)
    w = window()
    sending = asyncio.ensure_future(alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]))
    await json_sink.wait_arrived(1)
    clock.now += alerts.lease_s + 1  # the process was stopped past the lease
    assert await alerts.recover() == 0
    assert await sending is True
    await asyncio.sleep(0.6)
    assert json_sink.arrived == 1


async def test_the_agents_own_scan_leaves_its_in_flight_retry_alone(
    store: SqliteStore, json_sink: JsonSink, metrics: Metrics
) -> None:
    """The same for a retry: its lease lapsed while the agent was stopped mid-retry."""
    json_sink.script(500)
    json_sink.answer_after(0.5)
    clock = Clock()
    alerts = WindowAlerts(
        store, make_notifier([json_sink.url()], metrics), clock=clock, retry_delays=(1.0, 1.0)
    )
    w = window()
    await store.create_window(w)
    assert await alerts.emit(w, Alert.for_window(w, "passed"), ["oncall"]) is False
    clock.now += 1.0
    tasks: list[asyncio.Future[None]] = []
    assert await alerts.retry(lambda work: tasks.append(asyncio.ensure_future(work))) == 1
    await json_sink.wait_arrived(2)
    clock.now += alerts.lease_s + 1
    assert await alerts.retry() == 0
    await asyncio.gather(*tasks)
    await asyncio.sleep(0.6)
    assert json_sink.arrived == 2 and len(json_sink.notifications) == 1
    assert await store.alert_events(w.id) == {"passed": "sent"}

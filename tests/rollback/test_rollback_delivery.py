"""The rollback webhook, contract §3, against a real local receiver and a real SQLite store."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_parser import HttpResponseParser

from agent import __version__
from agent.api.models import deploy_model
from agent.cli.render import Style, details
from agent.metrics import Metrics
from agent.records import DeployWindow
from agent.rollback.contract import rollback_body, rollback_intent, sign, verify
from agent.rollback.delivery import RollbackDelivery, backoff_delay, takeover_wait_s
from agent.store.base import StoreError
from agent.store.sqlite import SqliteStore
from alerting.events import Alert
from alerting.templates import body, title
from common.retry_after import retry_after_seconds
from tests.ports import free_port
from tests.receivers import Reply, RollbackAttempt, RollbackReceiver, expected_signature
from tests.rollback.support import (
    BREACH,
    REQUESTED_AT,
    SECRET,
    FakeSleep,
    make_window,
    rollback_target,
    settings,
    stored_intent,
)
from tests.store.peek import deliveries, set_rollback


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def delivery(store: SqliteStore, metrics: Metrics, sleep: FakeSleep) -> Any:
    sender = RollbackDelivery(store, metrics, sleep=sleep, random=lambda: 0.5)
    yield sender
    await sender.aclose()


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# ------------------------------------------------------------------ the body


def test_body_is_the_contract_json_compact_and_in_order() -> None:
    body = rollback_body(make_window(), "probe-errors failed", [BREACH], REQUESTED_AT)
    assert body == (
        '{"event":"rollback","deploy":{"id":"dep_01JDTEST","environment":"production",'
        '"version":"v2.4.1","previous_version":"v2.4.0","commit":"9fceb02",'
        '"labels":{"pipeline":"run-1234"},"deployed_at":"2026-11-26T14:00:00Z"},'
        '"reason":"probe-errors failed","breaches":[{"rule":"probe-errors","source":"checks",'
        '"metric":"error_rate","observed":0.31,"baseline":0.0,"threshold":"max 0.05",'
        '"detail":"31 of 100 probes failed"}],"requested_at":"2026-11-26T14:01:30Z"}'
    )


def test_body_takes_api_rule_dicts_and_drops_non_json_numbers() -> None:
    rule = {
        "name": "p95",
        "source": "checks",
        "metric": "latency_p95",
        "outcome": "fail",
        "observed": float("nan"),
        "baseline": float("inf"),
        "threshold": "max 500ms",
        "detail": "slow",
        "evidence": {"p": 0.001},
    }
    breach = json.loads(rollback_body(make_window(), "r", [rule], REQUESTED_AT))["breaches"][0]
    assert list(breach) == [
        "rule", "source", "metric", "observed", "baseline", "threshold", "detail"
    ]  # fmt: skip
    assert breach["rule"] == "p95"
    assert breach["observed"] is None and breach["baseline"] is None


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"event":"rollback"}'
    signature = sign("key", 1795701690, body)
    assert signature == expected_signature("key", "1795701690", body)
    assert signature.startswith("sha256=") and signature == signature.lower()
    assert len(signature) == len("sha256=") + 64
    assert verify("key", "1795701690", body, signature)
    assert not verify("key", "1795701691", body, signature)
    assert not verify("other", "1795701690", body, signature)


def test_verify_takes_the_timestamp_header_as_written_and_any_signature_header() -> None:
    """The contract's MAC is over `"<timestamp>.<raw body>"`, the header's text: `verify`
    read the timestamp as an int and signed that, so `+1795701690`, ` 1795701690` or
    `1_795_701_690` verified a signature made over `1795701690.` (which no receiver
    following the contract accepts), and a non-ASCII signature header raised TypeError
    out of `compare_digest` instead of answering False."""
    body = b'{"event":"rollback"}'
    signature = sign("key", 1795701690, body)
    for written in (
        "+1795701690",
        " 1795701690",
        "1_795_701_690",
        "01795701690",
        "１７９５７０１６９０",
    ):
        assert not verify("key", written, body, signature), written
    assert verify("key", "1795701690", body, signature)
    assert not verify("key", "1795701690", body, "sha256=é")
    assert not verify("key", "", body, signature)


def test_dry_run_intent_is_skipped_and_never_pending() -> None:
    intent = rollback_intent(make_window(), "r", [BREACH], REQUESTED_AT, dry_run=True)
    assert intent.state == "skipped"
    assert json.loads(intent.body)["event"] == "rollback"


# -------------------------------------------------------------- backoff maths


def test_backoff_is_exponential_full_jitter_capped() -> None:
    conf = settings("http://127.0.0.1:1/rollback", backoff=1.0, max_backoff=10.0)
    assert [backoff_delay(n, conf, random=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [
        1.0, 2.0, 4.0, 8.0, 10.0
    ]  # fmt: skip
    assert backoff_delay(3, conf, random=lambda: 0.0) == 0.0
    assert backoff_delay(3, conf, random=lambda: 0.5) == 2.0
    assert backoff_delay(1, conf, retry_after=7.0) == 7.0
    assert backoff_delay(1, conf, retry_after=120.0) == 120.0  # asked: past max_backoff
    assert backoff_delay(1, conf, retry_after=3600.0) == 600.0  # RETRY_AFTER_MAX_S


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1795701690.0  # Thu, 26 Nov 2026 14:01:30 GMT
    assert retry_after_seconds("3", now) == 3.0
    assert retry_after_seconds("Thu, 26 Nov 2026 14:01:40 GMT", now) == 10.0
    assert retry_after_seconds("Thu, 26 Nov 2026 14:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_a_retry_after_not_in_the_rfcs_forms_is_unreadable_not_now() -> None:
    """`Retry-After` is delay-seconds (digits) or an HTTP-date (RFC 9110 §10.2.3).
    `-1` was read as 0 s, so a receiver answering `503` with it got every remaining
    attempt at once, with no backoff (live audit: 4 attempts within 10 ms); `1e3` was
    a thousand seconds. Unreadable, our own backoff applies, as for `soon`."""
    now = 1795701690.0
    for value in ("-1", "-0", "+3", "1e3", "inf", "nan", "0x10", "3 s", "1_0"):
        assert retry_after_seconds(value, now) is None, value
    assert retry_after_seconds(" 3 ", now) == 3.0
    assert retry_after_seconds("0", now) == 0.0
    assert retry_after_seconds("2.5", now) == 2.5  # not the RFC's, but plainly meant


async def test_a_negative_retry_after_leaves_the_backoff_as_it_is(
    store: SqliteStore, delivery: RollbackDelivery, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("503:retry-after=-1", "503:retry-after=-1", 200)
    )
    done = await delivery.deliver(await stored_intent(store), settings(receiver.url), "prod")
    assert done.state == "delivered" and len(receiver.attempts) == 3
    assert sleep.waits == [0.5, 1.0]  # full jitter (random 0.5) of 1s, then 2s


# ------------------------------------------------------------------ delivery


async def test_delivered_first_time_with_the_contract_headers(
    store: SqliteStore, delivery: RollbackDelivery, metrics: Metrics, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)

    done = await delivery.deliver(intent, settings(receiver.url), "production")

    assert done.state == "delivered" and done.attempts == 1 and done.last_status == 200
    [attempt] = receiver.attempts
    assert attempt.signature_ok
    headers = attempt.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"postflight/{__version__}"
    assert headers["Idempotency-Key"] == "dep_01JDTEST"
    assert headers["X-Postflight-Event"] == "rollback"
    assert headers["X-Postflight-Timestamp"].isdigit()
    assert attempt.body == intent.body
    assert receiver.delivered == {"dep_01JDTEST": intent.body}
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.state == "delivered" and stored.finished_at
    [row] = await deliveries(store, "dep_01JDTEST")
    assert (row.attempt, row.status, row.error) == (1, 200, None)
    assert counter(metrics, "postflight_rollbacks_total", environment="production",
                   result="delivered") == 1  # fmt: skip
    assert counter(metrics, "postflight_rollback_attempts_total", environment="production",
                   result="delivered") == 1  # fmt: skip


async def test_a_2xx_is_recorded_on_its_status_line_without_waiting_for_the_body(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """The receiver acted once it said 2xx: the record of it must not wait for the body
    (a crash in that wait sends the rollback again; a body that never ends would time the
    attempt out and send it again even without a crash)."""
    arrivals: list[bytes] = []
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        arrivals.append(await request.read())
        response = web.StreamResponse(status=200)
        await response.prepare(request)  # the status line and headers go out...
        await release.wait()  # ...the body only once the delivery was recorded
        await response.write_eof()
        return response

    async with rollback_target(handle, "/rollback") as url:
        try:
            intent = await stored_intent(store)
            conf = settings(f"{url}/rollback", timeout=2.0)
            done = await asyncio.wait_for(delivery.deliver(intent, conf, "production"), 10)
            stored = await store.get_rollback("dep_01JDTEST")
        finally:
            release.set()

    assert done.state == "delivered" and done.attempts == 1 and done.last_status == 200
    assert stored is not None and stored.state == "delivered"
    assert arrivals == [intent.body.encode()]


async def test_a_2xx_with_a_long_header_line_is_delivered_once(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """Any 2xx is delivered (contract §3), whatever headers come with it: a receiver
    behind a gateway that adds a long Content-Security-Policy or Set-Cookie line (12 KB)
    had its 204 read as no answer (aiohttp's 8190-byte line limit), was sent the rollback
    again up to max_attempts and paged ROLLBACK FAILED for a rollback it had taken."""
    posts: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        posts.append(await request.read())
        policy = "default-src 'self'; " + "; ".join(
            f"img-src cdn{i}.example.com" for i in range(500)
        )
        return web.Response(status=204, headers={"Content-Security-Policy": policy})

    async with rollback_target(handle, "/rollback") as url:
        intent = await stored_intent(store)
        done = await delivery.deliver(intent, settings(f"{url}/rollback", max_attempts=3), "prod")

    assert (done.state, done.attempts, done.last_status) == ("delivered", 1, 204)
    assert posts == [intent.body.encode()]


async def test_an_answer_that_is_not_http_is_said_so_not_as_a_400(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """A receiver port that answers something else (an SMTP banner, a TLS-only proxy's
    bytes) is retried as no answer, and its error says the answer was not readable HTTP, where it
    read `ClientResponseError: 400, message="Bad status line: …"`: an HTTP 400 to
    on-call, which the contract says fails at once, though the rollback was retried."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"220 mail.example.com ESMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        done = await delivery.deliver(
            await stored_intent(store),
            settings(f"http://127.0.0.1:{port}/rollback", max_attempts=2),
            "production",
        )
    finally:
        server.close()

    assert (done.state, done.attempts, done.last_status) == ("failed", 2, None)
    assert done.last_error is not None
    assert done.last_error.startswith("the answer is not readable HTTP: "), done.last_error
    assert "400" not in done.last_error and "ClientResponseError" not in done.last_error
    assert "220 mail.example.com" in done.last_error  # what came instead


async def _answering(
    store: SqliteStore,
    delivery: RollbackDelivery,
    answers: list[bytes],
    max_attempts: int = 3,
    window_id: str = "dep_01JDTEST",
) -> tuple[Any, int]:
    """`delivery` of the stored intent to a receiver that writes `answers`, one per POST,
    as raw bytes and closes: the rollback and the POSTs it got."""
    posts = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal posts
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(answers[min(posts, len(answers) - 1)])
        posts += 1
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        done = await delivery.deliver(
            await stored_intent(store, window_id),
            settings(f"http://127.0.0.1:{port}/rollback", max_attempts=max_attempts),
            "production",
        )
    finally:
        server.close()
    return done, posts


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


NOT_GZIP = b"Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\nnot gzip!!"


async def test_an_answer_whose_body_cannot_be_decoded_is_classed_by_its_status(
    store: SqliteStore, delivery: RollbackDelivery, sleep: FakeSleep
) -> None:
    """The status line and headers are the answer (contract §3: other 4xx fail at once; a
    503's `Retry-After` is honoured), whatever its body: a 404 whose body said gzip and was
    not (a proxy's error page) was an unanswered attempt, retried to `max_attempts`, with
    `last_status` None and `ClientPayloadError: 400, message: Can not decode
    content-encoding: gzip` on two lines as its error, an HTTP 400 the receiver never
    sent."""
    refused = b"HTTP/1.1 404 Not Found\r\n" + NOT_GZIP
    done, posts = await _answering(store, delivery, [refused])
    assert (done.state, done.attempts, done.last_status, posts) == ("failed", 1, 404, 1)
    assert done.last_error is not None and done.last_error.startswith("HTTP 404")
    assert "\n" not in done.last_error and "400" not in done.last_error, done.last_error
    assert sleep.waits == []
    busy = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n" + NOT_GZIP
    await delivery.aclose()
    again = RollbackDelivery(store, Metrics(), sleep=sleep, random=lambda: 0.5)
    try:
        done, posts = await _answering(store, again, [busy, OK], window_id="dep_01JDTEST2")
    finally:
        await again.aclose()
    assert (done.state, done.attempts, posts) == ("delivered", 2, 2)
    assert sleep.waits == [7.0]


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>\r\n\r\n"],
    ids=["100", "103"],
)
async def test_an_interim_1xx_before_the_2xx_is_delivered_once(
    store: SqliteStore, delivery: RollbackDelivery, interim: bytes
) -> None:
    """Any 2xx is delivered (contract §3), also when an interim answer comes first (RFC
    9110 §15.2: a CDN's 103 Early Hints, a 100 Continue not asked for): the final answer
    counts, one request. Read as the answer itself, it would be refused at once as
    neither 2xx nor retried, and page ROLLBACK FAILED for a rollback the receiver took."""
    done, posts = await _answering(store, delivery, [interim + OK])
    assert (done.state, done.attempts, done.last_status, posts) == ("delivered", 1, 200, 1)


@pytest.mark.parametrize("status", [600, 799, 999])
async def test_a_status_outside_http_s_range_is_retried_as_a_5xx(
    store: SqliteStore, delivery: RollbackDelivery, status: int
) -> None:
    """RFC 9110 §15: a status outside 100–599 is invalid, to be processed as a 5xx; the
    contract retries 5xx. It failed at once, as if the receiver had refused the rollback."""
    odd = f"HTTP/1.1 {status} Odd\r\nContent-Length: 4\r\n\r\nbusy".encode()
    done, posts = await _answering(store, delivery, [odd, OK])

    assert (done.state, done.attempts, done.last_status, posts) == ("delivered", 2, 200, 2)
    (first, _) = await deliveries(store, "dep_01JDTEST")
    assert first.status == status
    assert first.error == f"HTTP {status}: busy (not an HTTP status: retried as a 5xx)"


async def test_an_answer_cut_off_in_its_head_after_a_2xx_status_line_is_retried(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """A 2xx is delivered once its head (status line and headers) is read: one cut off
    before its headers end is incomplete (RFC 9112 §8: the client may repeat the
    request), retried with the same Idempotency-Key, its error saying what came."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Ty"
    done, posts = await _answering(store, delivery, [cut, OK])

    assert (done.state, done.attempts, done.last_status, posts) == ("delivered", 2, 200, 2)
    (first, _) = await deliveries(store, "dep_01JDTEST")
    assert first.status is None
    assert first.error is not None
    if HttpResponseParser.__module__ == "aiohttp._http_parser":  # its C parser: what came
        assert first.error == (
            "the receiver closed the connection in its answer's head, after its status line"
            " HTTP 200 (incomplete: retried as no answer)"
        )
    else:  # the pure-Python parser (AIOHTTP_NO_EXTENSIONS) keeps none of it
        assert first.error == "the receiver closed the connection without answering"


async def test_the_webhook_is_posted_to_rollback_url_exactly_as_written(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """A pre-signed webhook URL (a SAS or trigger token in its query) is checked byte for
    byte by its receiver: aiohttp re-quoted `%2F` in a query to `/`, which such a receiver
    refuses, 4xx, so the rollback failed at once."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=204)

    written = "/hooks/roll%2Fback?sig=Ab%2Fc%2Bd%3D&sv=2026-01-01&name=%C3%A9t%C3%A9+x"
    async with rollback_target(handle, "/{tail:.*}") as url:
        intent = await stored_intent(store)
        done = await delivery.deliver(intent, settings(f"{url}{written}"), "production")

    assert done.state == "delivered"
    assert seen == [written]


async def test_503_twice_then_200_retries_with_the_same_body_and_key(
    store: SqliteStore,
    delivery: RollbackDelivery,
    sleep: FakeSleep,
    metrics: Metrics,
    rollback_receiver: Any,
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 503, 200))
    intent = await stored_intent(store)

    done = await delivery.deliver(intent, settings(receiver.url), "production")

    assert done.state == "delivered" and done.attempts == 3
    assert [a.status for a in receiver.attempts] == [503, 503, 200]
    assert {a.body for a in receiver.attempts} == {intent.body}
    assert {a.idempotency_key for a in receiver.attempts} == {"dep_01JDTEST"}
    assert all(a.signature_ok for a in receiver.attempts)
    assert sleep.waits == [0.5, 1.0]  # full jitter with random()=0.5: 0.5·1s, 0.5·2s
    rows = await deliveries(store, "dep_01JDTEST")
    assert [(r.attempt, r.status) for r in rows] == [(1, 503), (2, 503), (3, 200)]
    assert counter(metrics, "postflight_rollback_attempts_total", environment="production",
                   result="retryable") == 2  # fmt: skip


async def test_retry_after_is_honoured_past_max_backoff_and_capped_at_ten_minutes(
    store: SqliteStore, delivery: RollbackDelivery, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("429:retry-after=7", "503:retry-after=120", "503:retry-after=3600", 200)
    )
    intent = await stored_intent(store)

    done = await delivery.deliver(intent, settings(receiver.url, max_backoff=30.0), "production")

    assert done.state == "delivered"
    assert sleep.waits == [7.0, 120.0, 600.0]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_408_429_and_5xx_are_retried_without_a_retry_after(
    store: SqliteStore,
    delivery: RollbackDelivery,
    sleep: FakeSleep,
    rollback_receiver: Any,
    status: int,
) -> None:
    """Contract §3: 408, 429 and 5xx are retried (408 had no test: a change reading it
    as the other 4xx would fail a rollback a proxy's request timeout cut). With no
    `Retry-After`, our own backoff: full jitter of `backoff` (random 0.5 of 1 s)."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(status, 200))
    done = await delivery.deliver(await stored_intent(store), settings(receiver.url), "prod")
    assert done.state == "delivered" and done.attempts == 2
    assert [a.status for a in receiver.attempts] == [status, 200]
    assert sleep.waits == [0.5]


@pytest.mark.parametrize("status", [401, 403, 404, 405, 409, 410, 413, 422])
async def test_any_other_4xx_fails_at_once(
    store: SqliteStore,
    delivery: RollbackDelivery,
    sleep: FakeSleep,
    rollback_receiver: Any,
    status: int,
) -> None:
    """Contract §3: other 4xx fail at once: one request, no wait, `failed` with the
    status (a webhook's 409 too: only the Vercel and GitHub targets are asked whether
    a conflict means the rollback already took effect)."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(status,))
    done = await delivery.deliver(await stored_intent(store), settings(receiver.url), "prod")
    assert done.state == "failed" and done.attempts == 1 and done.last_status == status
    assert len(receiver.attempts) == 1 and sleep.waits == []


async def test_each_attempt_is_signed_afresh_over_its_own_timestamp(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Contract §3: every attempt carries the same body and key, and a fresh timestamp
    and signature: a receiver that refuses a timestamp older than a few minutes (replay
    protection) takes an attempt sent after a 10-minute `Retry-After`. The clock moves
    with each wait, as the daemon's does; every signature verifies over its own
    timestamp and the body as received."""
    now = [REQUESTED_AT]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    sender = RollbackDelivery(store, metrics, sleep=sleep, clock=lambda: now[0])
    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("503:retry-after=120", "429:retry-after=600", 200)
    )
    intent = await stored_intent(store)
    try:
        done = await sender.deliver(intent, settings(receiver.url), "production")
    finally:
        await sender.aclose()
    assert done.state == "delivered" and done.attempts == 3
    stamps = [int(a.timestamp or 0) for a in receiver.attempts]
    assert stamps == [int(REQUESTED_AT), int(REQUESTED_AT) + 120, int(REQUESTED_AT) + 720]
    assert all(a.signature_ok for a in receiver.attempts)
    assert len({a.signature for a in receiver.attempts}) == 3
    assert {a.body for a in receiver.attempts} == {intent.body}
    assert {a.idempotency_key for a in receiver.attempts} == {"dep_01JDTEST"}


async def test_a_retry_after_given_as_an_http_date_is_waited_out(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    """Contract §3 honours `Retry-After` in either of its forms (RFC 9110 §10.2.3): an
    HTTP-date 40 s ahead of the sender's clock is a 40 s wait, as the delivery reads it
    (only the parsing had a test)."""
    sender = RollbackDelivery(store, metrics, sleep=sleep, clock=lambda: REQUESTED_AT)
    ahead = Reply(status=503, headers={"Retry-After": "Thu, 26 Nov 2026 14:02:10 GMT"})
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(ahead, 200))
    try:
        done = await sender.deliver(await stored_intent(store), settings(receiver.url), "prod")
    finally:
        await sender.aclose()
    assert done.state == "delivered" and len(receiver.attempts) == 2
    assert sleep.waits == [40.0]


async def test_400_fails_at_once(
    store: SqliteStore, delivery: RollbackDelivery, metrics: Metrics, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(400,))
    intent = await stored_intent(store)

    done = await delivery.deliver(intent, settings(receiver.url), "production")

    assert done.state == "failed" and done.attempts == 1 and done.last_status == 400
    assert len(receiver.attempts) == 1
    assert counter(metrics, "postflight_rollbacks_total", environment="production",
                   result="failed") == 1  # fmt: skip


async def test_redirect_is_not_followed_and_fails(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=("302:location=http://127.0.0.1:1/elsewhere",)
    )
    done = await delivery.deliver(await stored_intent(store), settings(receiver.url), "prod")
    assert done.state == "failed" and len(receiver.attempts) == 1
    assert done.last_error is not None and "redirect" in done.last_error


async def test_gives_up_after_max_attempts(
    store: SqliteStore, delivery: RollbackDelivery, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    receiver.script(*[503] * 10)

    done = await delivery.deliver(
        await stored_intent(store), settings(receiver.url, max_attempts=3), "production"
    )

    assert done.state == "failed" and done.attempts == 3 and done.last_status == 503
    assert len(receiver.attempts) == 3 and len(sleep.waits) == 2
    assert receiver.delivered == {}


async def test_a_hung_webhook_times_out_and_is_retried(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    """The first attempt hangs past the 0.2 s timeout; the receiver answers every later one
    at once, yet a loaded machine may read that answer past 0.2 s too (a second answer
    0.3 s late failed `attempts == 2`): each such attempt is one more timeout, retried, and
    the rollback is delivered by the attempt whose 200 came in time."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("hang", 200))

    done = await delivery.deliver(
        await stored_intent(store), settings(receiver.url, timeout=0.2), "production"
    )

    assert done.state == "delivered" and done.attempts >= 2
    first, *late, answered = rows = await deliveries(store, "dep_01JDTEST")
    assert first.status is None and first.error is not None and "timed out" in first.error
    assert all(r.status is None and r.error and "timed out" in r.error for r in late), late
    assert answered.status == 200
    assert len(receiver.attempts) == len(rows) == done.attempts


async def test_connection_refused_is_retried_then_fails_without_raising(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    port = free_port()  # a port nobody listens on
    url = f"http://127.0.0.1:{port}/rollback"

    done = await delivery.deliver(
        await stored_intent(store), settings(url, max_attempts=2), "production"
    )

    assert done.state == "failed" and done.attempts == 2 and done.last_status is None
    rows = await deliveries(store, "dep_01JDTEST")
    # said as on-call acts on it, not aiohttp's "Cannot connect to host … ssl:default […]"
    # of a plain-http URL
    refused = f"cannot connect to 127.0.0.1:{port} (Connection refused)"
    assert [r.error for r in rows] == [refused, refused] and done.last_error == refused
    # the deploy object says it (an extension beside last_status), and `status` shows it
    window = await store.get_window("dep_01JDTEST")
    assert window is not None
    window.id = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"  # the API's id pattern (this one is short)
    deploy = deploy_model(window, done)
    assert deploy.model_dump(mode="json", by_alias=True)["rollback"]["last_error"] == refused
    assert f"last attempt: {refused}" in details(deploy, Style(color=False))


async def test_a_host_that_does_not_resolve_is_said_so_and_retried(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """A typo in rollback.url's host (or a DNS outage) read as aiohttp words it,
    `ClientConnectorDNSError: Cannot connect to host hooks.example.invalid:80 ssl:default
    [Name or service not known]`, TLS settings of a plain-http URL included: said as a
    refused connection is since aiohttp's DNS error became a class of its own."""
    url = "http://hooks.example.invalid/rollback"  # RFC 6761: never resolves

    done = await delivery.deliver(
        await stored_intent(store), settings(url, max_attempts=2, timeout=5.0), "production"
    )

    assert done.state == "failed" and done.attempts == 2 and done.last_status is None
    assert done.last_error is not None
    assert done.last_error.startswith("cannot resolve hooks.example.invalid ("), done.last_error
    assert "ssl:default" not in done.last_error and "ClientConnector" not in done.last_error


@pytest.mark.usefixtures("heap_set_aside")
async def test_refused_attempts_leave_no_exceptions_for_the_collector(
    store: SqliteStore, delivery: RollbackDelivery
) -> None:
    """A refused attempt's exceptions are freed with it, without a collection: aiohttp and
    aiohappyeyeballs keep each in a frame its own traceback holds (`common.tracebacks`),
    ~90 objects an attempt, and the daemon collects rarely (`agent.windows.heap`): a
    receiver down left them behind at every retry."""
    port = free_port()  # a port nobody listens on
    url = f"http://127.0.0.1:{port}/rollback"
    warm = await stored_intent(store, "dep_01JDWARM")  # what stays for good: the session…
    await delivery.deliver(warm, settings(url, max_attempts=1), "production")
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, BaseException))
        done = await delivery.deliver(
            await stored_intent(store), settings(url, max_attempts=3), "production"
        )
        alive = sum(1 for o in gc.get_objects() if isinstance(o, BaseException)) - before
    finally:
        gc.enable()
    assert done.state == "failed" and done.attempts == 3
    assert alive == 0


async def test_each_attempt_is_stored_before_it_is_sent(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    seen: list[tuple[int, int]] = []

    async def look(attempt: RollbackAttempt) -> None:
        stored = await store.get_rollback("dep_01JDTEST")
        assert stored is not None
        seen.append((attempt.n, stored.attempts))

    receiver: RollbackReceiver = await rollback_receiver(
        SECRET, script=(503, 500, 200), on_attempt=look
    )
    await delivery.deliver(await stored_intent(store), settings(receiver.url), "production")

    assert seen == [(1, 1), (2, 2), (3, 3)]


async def test_resumes_after_a_crash_at_attempt_3(
    tmp_path: Path, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    path = tmp_path / "crash.db"
    before = SqliteStore(path)
    await before.open()
    intent = await stored_intent(before)
    intent.attempts = 2  # two attempts went out, then the process died
    intent.last_status = 503
    await set_rollback(before, intent)
    await before.close()

    after = SqliteStore(path)  # the restarted process
    await after.open()
    try:
        [pending] = await after.pending_rollbacks()
        sender = RollbackDelivery(after, metrics, sleep=sleep)
        done = await sender.deliver(pending, settings(receiver.url, max_attempts=3), "production")
        await sender.aclose()

        assert done.state == "delivered" and done.attempts == 3
        assert len(receiver.attempts) == 1
        [row] = await deliveries(after, "dep_01JDTEST")
        assert row.attempt == 3
        assert await after.pending_rollbacks() == []
    finally:
        await after.close()


async def test_a_last_attempt_whose_answer_was_lost_is_sent_once_more(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    """Killed during its last allowed attempt, the sender never learnt the answer: it was
    reported `failed` ("roll back by hand") although the receiver had accepted it."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    intent.attempts, intent.last_status = 3, 503  # the third went out, then the kill
    await set_rollback(store, intent)

    done = await delivery.deliver(intent, settings(receiver.url, max_attempts=3), "production")

    assert done.state == "delivered" and done.attempts == 4 and done.last_status == 200
    (resent,) = receiver.attempts
    assert resent.headers["Idempotency-Key"] == intent.window_id  # the same request again


async def test_a_resend_whose_answer_was_lost_too_fails_without_sending(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    intent.attempts = 4
    await set_rollback(store, intent)

    done = await delivery.deliver(intent, settings(receiver.url, max_attempts=3), "production")

    assert done.state == "failed" and receiver.attempts == []
    assert done.last_error is not None and "unknown" in done.last_error


async def test_a_resumed_delivery_waits_out_its_stored_backoff(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    intent.attempts = 1
    intent.next_attempt_at = 1_000_012.0
    await set_rollback(store, intent)

    sender = RollbackDelivery(store, metrics, sleep=sleep, clock=lambda: 1_000_000.0)
    done = await sender.deliver(intent, settings(receiver.url), "production")
    await sender.aclose()

    assert done.state == "delivered" and done.attempts == 2
    assert sleep.waits == [12.0]


async def test_cancelled_mid_delivery_stays_pending_then_resumes(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("hang",))
    intent = await stored_intent(store)
    conf = settings(receiver.url)

    task = asyncio.create_task(delivery.deliver(intent, conf, "production"))
    await receiver.wait_for_attempts(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.state == "pending" and stored.attempts == 1
    done = await delivery.deliver(stored, conf, "production")
    assert done.state == "delivered" and done.attempts == 2
    assert len(receiver.delivered) == 1


async def test_a_delivered_rollback_is_never_sent_again(
    store: SqliteStore, delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    conf = settings(receiver.url)

    first, second = await asyncio.gather(
        delivery.deliver(intent, conf, "production"),
        delivery.deliver(intent, conf, "production"),
    )
    third = await delivery.deliver(intent, conf, "production")

    assert first.state == second.state == third.state == "delivered"
    assert len(receiver.attempts) == 1


def the_fix() -> DeployWindow:
    """v2.4.2, registered and deployed 20 s after v2.4.1's rollback was requested."""
    return make_window(
        "dep_01JDNEWER", version="v2.4.2", deployed_at=REQUESTED_AT + 20,
        ends_at=REQUESTED_AT + 620, created_at=REQUESTED_AT + 20,
    )  # fmt: skip


class NewerDeployDuringBackoff(FakeSleep):
    """The pipeline ships v2.4.2 while the rollback of v2.4.1 waits out its backoff."""

    def __init__(self, store: SqliteStore, newer: DeployWindow) -> None:
        super().__init__()
        self.store, self.newer = store, newer

    async def __call__(self, seconds: float) -> None:
        if not self.waits:
            await self.store.create_window(self.newer)
        await super().__call__(seconds)


async def test_a_rollback_still_owed_when_a_newer_deploy_takes_effect_is_not_sent(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Rolling v2.4.1 back to v2.4.0 after v2.4.2 went out would undo v2.4.2: the
    receiver is never asked again, and the rollback fails saying why."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    newer = the_fix()
    sleep = NewerDeployDuringBackoff(store, newer)
    sender = RollbackDelivery(
        store, metrics, sleep=sleep, random=lambda: 0.5, clock=lambda: REQUESTED_AT + 30
    )

    done = await sender.deliver(await stored_intent(store), settings(receiver.url), "production")
    await sender.aclose()

    assert len(receiver.attempts) == 1 and receiver.delivered == {}
    assert done.state == "failed" and done.attempts == 1
    assert done.last_error is not None and "v2.4.2" in done.last_error
    assert "dep_01JDNEWER" in done.last_error
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.state == "failed"
    assert counter(metrics, "postflight_rollbacks_total", environment="production",
                   result="failed") == 1  # fmt: skip


async def test_a_rollback_given_up_after_an_unanswered_attempt_says_it_may_have_been_acted_on(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Its one attempt went out and the receiver, stalled past the timeout, never
    answered; v2.4.2 went out meanwhile. "NOT SENT" was untrue: the deploy object and the
    alert say an attempt went out, its answer never came, and the receiver may have acted
    on it (so v2.4.2 may have been rolled back)."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=("hang", 200))
    sender = RollbackDelivery(
        store, metrics, sleep=NewerDeployDuringBackoff(store, the_fix()), random=lambda: 0.5,
        clock=lambda: REQUESTED_AT + 30,
    )  # fmt: skip

    done = await sender.deliver(
        await stored_intent(store), settings(receiver.url, timeout=0.2), "production"
    )
    await sender.aclose()

    assert len(receiver.attempts) == 1 and receiver.delivered == {}
    assert done.state == "failed" and done.replaced_by is not None
    sent = "1 attempt sent, its answer never came; the receiver may have acted on it"
    assert done.last_error is not None and done.last_error.endswith(f"; given up after {sent}")
    alert = Alert.for_window(
        make_window(), "rollback_failed", replaced_by=done.replaced_by,
        sent_before=done.sent_before,
    )  # fmt: skip
    assert title(alert) == (
        f"[postflight] production v2.4.1: ROLLBACK GIVEN UP, v2.4.2 deployed since: {sent}"
    )
    assert body(alert).startswith(
        "**Rollback given up: v2.4.2 (dep_01JDNEWER) was deployed since.** 1 attempt sent, its"
        " answer never came; the receiver may have acted on it: if so, v2.4.2 may have been"
        " rolled back too, so check that v2.4.2 is what serves"
    )


class RegisteredAsTheAttemptBegins:
    """The pipeline's registration of v2.4.2 commits after the sender's look for a newer
    deploy and before the store records its next attempt: the instant a look before the
    send cannot see (a real SQLite store under it)."""

    def __init__(self, inner: SqliteStore, newer: DeployWindow) -> None:
        self._inner, self.newer, self.begun = inner, newer, 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._inner, name)  # type: ignore[no-any-return]

    async def begin_attempt(self, *args: Any) -> int | None:
        self.begun += 1
        if self.begun == 2:
            await self._inner.create_window(self.newer)
        return await self._inner.begin_attempt(*args)


async def test_a_newer_deploy_registered_as_the_attempt_begins_stops_it(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    """v2.4.2 registered between the look and the attempt's record: that attempt is not
    sent (the receiver took the rollback of v2.4.1, undoing v2.4.2), and the rollback
    fails naming v2.4.2 with the one attempt made before it."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    newer = the_fix()
    racing = RegisteredAsTheAttemptBegins(store, newer)
    sender = RollbackDelivery(
        racing,  # type: ignore[arg-type]
        metrics, sleep=sleep, random=lambda: 0.5, clock=lambda: REQUESTED_AT + 30,
    )  # fmt: skip

    done = await sender.deliver(await stored_intent(store), settings(receiver.url), "production")
    await sender.aclose()

    assert racing.begun == 2
    assert len(receiver.attempts) == 1 and receiver.delivered == {}
    assert done.state == "failed" and done.attempts == 1
    assert done.last_error is not None and "v2.4.2 (dep_01JDNEWER)" in done.last_error
    stored = await store.get_rollback("dep_01JDTEST")
    assert stored is not None and stored.state == "failed" and stored.attempts == 1
    assert [a.status for a in await store.deliveries("dep_01JDTEST")] == [503]


@pytest.mark.parametrize(
    "newer",
    [
        # registered, but not yet deployed (a scheduled window)
        {"created_at": REQUESTED_AT + 20, "deployed_at": REQUESTED_AT + 600},
        # scheduled, then cancelled before its time: it never went out
        {
            "created_at": REQUESTED_AT + 20,
            "deployed_at": REQUESTED_AT + 60,
            "state": "cancelled",
            "ended_at": REQUESTED_AT + 25,
        },
        # an older deploy, reported late
        {
            "created_at": REQUESTED_AT + 20,
            "deployed_at": REQUESTED_AT - 3600,
            "state": "inconclusive",
            "ended_at": REQUESTED_AT + 20,
        },
        # v2.4.0 redeployed: the rollback landing (its 2xx lost), not a new release
        {"created_at": REQUESTED_AT + 20, "deployed_at": REQUESTED_AT + 20, "version": "v2.4.0"},
    ],
    ids=[
        "scheduled",
        "cancelled-before-its-time",
        "older-reported-late",
        "the-previous-version",
    ],
)
async def test_a_window_that_did_not_replace_the_deploy_does_not_stop_its_rollback(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any, newer: dict[str, Any]
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    window = make_window("dep_01JDNEWER", **{"version": "v2.4.2", **newer})
    window.ends_at = window.deployed_at + 600
    sleep = NewerDeployDuringBackoff(store, window)
    sender = RollbackDelivery(
        store, metrics, sleep=sleep, random=lambda: 0.5, clock=lambda: REQUESTED_AT + 30
    )

    done = await sender.deliver(await stored_intent(store), settings(receiver.url), "production")
    await sender.aclose()

    assert done.state == "delivered" and len(receiver.delivered) == 1


async def test_a_rollback_asked_for_by_hand_after_a_newer_deploy_is_sent(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """v2.4.2 registered, then v2.4.1's rollback asked for by hand (in the store's order of
    registrations and requests, whatever their stamps): the operator's choice stands."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 200))
    bad = make_window()
    await store.create_window(bad)
    assert await store.finish_window(bad.id, "failed", None, REQUESTED_AT - 10)
    at = REQUESTED_AT - 5
    fix = make_window("dep_01JDNEWER", version="v2.4.2", created_at=at, deployed_at=at)
    await store.create_window(fix)
    intent = rollback_intent(bad, "asked by hand", [BREACH], REQUESTED_AT)
    assert await store.add_rollback(intent, REQUESTED_AT)
    sender = RollbackDelivery(
        store, metrics, sleep=FakeSleep(), random=lambda: 0.5, clock=lambda: REQUESTED_AT + 30
    )

    done = await sender.deliver(intent, settings(receiver.url), "production")
    await sender.aclose()

    assert done.state == "delivered" and len(receiver.delivered) == 1


async def test_an_intent_missing_from_the_store_is_not_sent(
    delivery: RollbackDelivery, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = rollback_intent(make_window("dep_unstored"), "r", [BREACH], REQUESTED_AT)

    done = await delivery.deliver(intent, settings(receiver.url), "production")

    assert done.state == "pending" and receiver.attempts == []


class BrokenStore:
    """A store that cannot be written: `deliver` must not send what it cannot record."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._inner, name)  # type: ignore[no-any-return]

    async def begin_attempt(self, *args: Any) -> int | None:
        raise RuntimeError("disk I/O error")


async def test_nothing_is_sent_when_the_attempt_cannot_be_stored(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    sender = RollbackDelivery(BrokenStore(store), metrics, sleep=sleep)  # type: ignore[arg-type]

    done = await sender.deliver(intent, settings(receiver.url), "production")
    await sender.aclose()

    assert done.state == "pending" and receiver.attempts == []


class AwayAfterTheAnswer:
    """The store stops answering as the receiver accepts (a PostgreSQL restart): its
    first `away` tries to store the outcome fail as an outage does."""

    def __init__(self, inner: SqliteStore, away: int) -> None:
        self._inner = inner
        self.away = away

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return getattr(self._inner, name)  # type: ignore[no-any-return]

    async def settle_rollback(self, *args: Any) -> bool:
        if self.away:
            self.away -= 1
            raise StoreError("cannot reach PostgreSQL store at db:5432/postflight: refused")
        return await self._inner.settle_rollback(*args)


async def test_a_2xx_the_store_could_not_take_at_once_is_stored_when_it_answers_not_resent(
    store: SqliteStore,
    metrics: Metrics,
    sleep: FakeSleep,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found restarting PostgreSQL as the receiver answered 200: the delivery was left
    pending and, once the store was back, sent again (2 requests at the receiver, one
    key) though nothing had crashed."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    away = AwayAfterTheAnswer(store, away=3)
    now = [REQUESTED_AT]
    sender = RollbackDelivery(away, metrics, sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]
    conf = settings(receiver.url)

    with caplog.at_level(logging.WARNING, "postflight.rollback"):
        done = await sender.deliver(intent, conf, "production")
    # a lease later, what resumes a rollback left pending finds it settled
    now[0] += 2 * sender.lease_s + conf.timeout
    again = await sender.deliver(intent, conf, "production")
    await sender.aclose()

    assert len(receiver.attempts) == 1
    assert done.state == again.state == "delivered"
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None and stored.state == "delivered" and stored.attempts == 1
    said = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(said) == 1 and "not sending it again" in said[0]


class AwayBetweenAttempts(AwayAfterTheAnswer):
    """The store stops answering as a failed attempt's outcome is stored (its next
    attempt's time with it), and for the first try to take the rollback on."""

    async def take_rollback(self, *args: Any) -> Any:
        if self.away and self.took:
            self.away -= 1
            raise StoreError("cannot reach PostgreSQL store at db:5432/postflight: refused")
        self.took = True
        return await self._inner.take_rollback(*args)

    took = False


async def test_a_store_gone_between_attempts_holds_the_delivery_until_it_answers(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    """The delivery ended 'interrupted, left pending' and waited for its lease to lapse
    (30 s by default) before a sweep resumed it: a PostgreSQL restart of 3 s in the middle
    of a rollback's retries held it back by a lease."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503,))
    intent = await stored_intent(store)
    away = AwayBetweenAttempts(store, away=2)
    sender = RollbackDelivery(away, metrics, sleep=sleep, random=lambda: 0.5)  # type: ignore[arg-type]

    done = await sender.deliver(intent, settings(receiver.url), "production")
    await sender.aclose()

    assert done.state == "delivered" and done.attempts == 2
    assert [a.status for a in receiver.attempts] == [503, 200]
    assert len(receiver.delivered) == 1


class AwayUntil(AwayAfterTheAnswer):
    """The store, as one replica sees it through an outage: it stores no outcome until
    `back` is set."""

    def __init__(self, inner: SqliteStore, back: asyncio.Event) -> None:
        super().__init__(inner, away=0)
        self.back = back
        self.refused = asyncio.Event()

    async def settle_rollback(self, *args: Any) -> bool:
        if not self.back.is_set():
            self.refused.set()
            raise StoreError("cannot reach PostgreSQL store at db:5432/postflight: refused")
        return await self._inner.settle_rollback(*args)


async def test_a_replica_taking_over_after_a_long_outage_lets_the_live_sender_record_its_2xx(
    store: SqliteStore, metrics: Metrics, rollback_receiver: Any
) -> None:
    """Replica A's 2xx is held through an outage longer than its lease; replica B's sweep
    takes the lapsed rollback the moment the store is back, before A's next try to record
    it: B sent it at once, a second rollback at the receiver though nothing had crashed."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    conf = settings(receiver.url)
    now = [REQUESTED_AT]
    back = asyncio.Event()
    seen_by_a = AwayUntil(store, back)

    async def a_retries_once_the_store_is_back(_: float) -> None:
        await back.wait()

    a = RollbackDelivery(
        seen_by_a,  # type: ignore[arg-type]
        metrics,
        owner="replica-a",
        clock=lambda: now[0],
        sleep=a_retries_once_the_store_is_back,
    )
    sending = asyncio.create_task(a.deliver(intent, conf, "production"))
    await receiver.wait_for_attempts(1)
    await seen_by_a.refused.wait()  # A holds its 2xx, the store away
    now[0] += a.lease_s + conf.timeout + 1.0  # the outage outlasts A's lease

    b_waits: list[float] = []

    async def b_waits_while_a_is_alive(seconds: float) -> None:
        b_waits.append(seconds)
        back.set()  # A's next try comes within the grace: it records its 2xx
        await asyncio.wait({sending})

    b = RollbackDelivery(
        store, metrics, owner="replica-b", clock=lambda: now[0], sleep=b_waits_while_a_is_alive
    )
    [swept] = await store.pending_rollbacks()
    assert swept.lease_owner == "replica-a" and (swept.lease_until or 0.0) < now[0]
    by_b = await b.deliver(swept, conf, "production")
    back.set()
    by_a = await sending
    await a.aclose()
    await b.aclose()

    assert len(receiver.attempts) == 1
    assert b_waits == [takeover_wait_s(conf)]
    assert by_a.state == by_b.state == "delivered"
    stored = await store.get_rollback(intent.window_id)
    assert stored is not None and stored.state == "delivered" and stored.attempts == 1


async def test_a_rollback_whose_sender_died_mid_attempt_is_sent_again_after_the_grace(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    """The other half: a sender killed with its request out never records it, so the
    replica that takes over sends it again (same key and body) once the grace is out."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    now = REQUESTED_AT
    taken = await store.take_rollback(intent.window_id, "replica-a", now, now + 30.0)
    assert taken is not None
    assert await store.begin_attempt(intent.window_id, taken.fence, now, now + 30.0) == 1
    later = now + 31.0  # replica-a died with its attempt out; its lease lapsed
    [swept] = await store.pending_rollbacks()

    b = RollbackDelivery(store, metrics, owner="replica-b", clock=lambda: later, sleep=sleep)
    conf = settings(receiver.url)
    done = await b.deliver(swept, conf, "production")
    await b.aclose()

    assert sleep.waits == [takeover_wait_s(conf)]
    assert done.state == "delivered" and done.attempts == 2
    (resent,) = receiver.attempts
    assert resent.headers["Idempotency-Key"] == intent.window_id


async def test_a_takeover_whose_wait_cannot_be_stored_sends_nothing_and_stays_pending(
    store: SqliteStore, metrics: Metrics, sleep: FakeSleep, rollback_receiver: Any
) -> None:
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    intent = await stored_intent(store)
    taken = await store.take_rollback(intent.window_id, "replica-a", REQUESTED_AT, REQUESTED_AT)
    assert taken is not None
    assert await store.begin_attempt(intent.window_id, taken.fence, REQUESTED_AT, REQUESTED_AT)
    [swept] = await store.pending_rollbacks()
    away = AwayUntil(store, asyncio.Event())  # the store flaps as B takes it over

    b = RollbackDelivery(
        away,  # type: ignore[arg-type]
        metrics,
        owner="replica-b",
        clock=lambda: REQUESTED_AT + 31.0,
        sleep=sleep,
    )
    done = await b.deliver(swept, settings(receiver.url), "production")
    await b.aclose()

    assert done.state == "pending" and receiver.attempts == []


async def test_the_secret_never_reaches_logs_or_stored_errors(
    store: SqliteStore,
    delivery: RollbackDelivery,
    rollback_receiver: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver: RollbackReceiver = await rollback_receiver(SECRET, script=(503, 401))
    intent = await stored_intent(store)
    await delivery.deliver(intent, settings(receiver.url), "production")

    rows = await deliveries(store, "dep_01JDTEST")
    assert len(rows) == 2
    assert SECRET not in caplog.text
    assert all(SECRET not in (r.error or "") for r in rows)
    assert all(SECRET not in json.dumps(a.headers) for a in receiver.attempts)


async def test_receiver_refuses_a_bad_signature(rollback_receiver: Any) -> None:
    """The receiver really checks: a request signed with another secret gets 401."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    body = b'{"event":"rollback"}'
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            receiver.url,
            data=body,
            headers={
                "Idempotency-Key": "dep_x",
                "X-Postflight-Timestamp": "1",
                "X-Postflight-Signature": sign("wrong", 1, body),
            },
        ) as response,
    ):
        assert response.status == 401
    assert receiver.attempts[0].signature_ok is False and receiver.delivered == {}


def test_reply_script_parses() -> None:
    assert Reply.parse("503:retry-after=1") == Reply(503, {"Retry-After": "1"})
    assert Reply.parse("hang").hang
    assert Reply.parse("200:delay=0.5").delay == 0.5

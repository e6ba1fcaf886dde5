"""Contract §3's `rollback.max_attempts` across §1's stop with state kept: a rollback the
webhook answers 503 every time is tried up to `max_attempts` in all, however many of them
came before a stop (SIGTERM) and how many after the next start, each with the same body
and `Idempotency-Key`, and raises one "rollback requested" and one "ROLLBACK FAILED"
alert. Counted at the receiver and the apprise `json://` channel, the daemon a
`postflight run` of its own, stopped and started again on its SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import SECRET
from tests.e2e.test_replicas import Daemon
from tests.e2e.test_stop_in_rollback_wait import (
    HEADERS,
    daemon_config_of,
    rollback_of,
    stopped_in_its_wait,
)
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAX_ATTEMPTS = 4


async def test_max_attempts_counts_the_attempts_made_before_a_restart(
    tmp_path: Path, json_sink: JsonSink
) -> None:
    receiver = RollbackReceiver(SECRET, [503] * (2 * MAX_ATTEMPTS))  # a 200 after: never met
    await receiver.start()
    rollback = (
        f"rollback: {{url: {receiver.url}, secret: {SECRET}, max_attempts: {MAX_ATTEMPTS},"
        " backoff: 1s, max_backoff: 1s}\nalerts: {tags: [oncall]}"
    )
    text = (
        daemon_config_of(tmp_path, {"production": rollback})
        + f"alerting:\n  channels:\n    - {{url: '{json_sink.url()}', tags: [oncall]}}\n"
    )
    first = Daemon(tmp_path, "first", text, None)
    again: Daemon | None = None
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            deploy_id = await stopped_in_its_wait(http, first, receiver)  # its backoff: 1 s
            before = len(receiver.attempts)
            assert 1 <= before < MAX_ATTEMPTS, receiver.attempts
            again = Daemon(tmp_path, "first", text, None)
            await again.ready(http)
            for _ in range(300):
                settled = await rollback_of(http, again, deploy_id)
                if settled["state"] != "pending":
                    break
                await asyncio.sleep(0.1)
            assert (settled["state"], settled["attempts"]) == ("failed", MAX_ATTEMPTS), settled
            await alert_titled(json_sink, "ROLLBACK FAILED", within=30)
            await asyncio.sleep(1.5)  # a further attempt would be due by now: none comes
    finally:
        first.kill()
        if again is not None:
            again.kill()
        await receiver.stop()
    attempts = receiver.attempts
    assert [a.status for a in attempts] == [503] * MAX_ATTEMPTS, attempts
    assert {a.idempotency_key for a in attempts} == {deploy_id}, attempts
    assert len({a.body for a in attempts}) == 1 and all(a.signature_ok for a in attempts)
    prefix = "[postflight] production v2: "
    titles = [n.title for n in titled(json_sink, prefix)]
    assert len([t for t in titles if "rollback requested" in t]) == 1, titles
    assert len([t for t in titles if "ROLLBACK FAILED" in t]) == 1, titles

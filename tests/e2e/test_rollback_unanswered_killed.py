"""A sender killed -9 while its rollback waits to retry after an attempt that got no
answer (a timeout): the next agent, under another replica id on the same store, gives
the rollback up within seconds of the fix's registration, as for an answered attempt,
where it read `pending` (no alert) until the killed sender's lease lapsed, its wait (up
to `max_backoff`) and `store.lease` after the kill. Real processes: the agents, and the
receiver that counts the POSTs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agent.windows.supervisor import UNWATCHED_S
from tests.e2e import crash

pytestmark = pytest.mark.e2e

GIVEN_UP_WITHIN_S = UNWATCHED_S + 5.0
"""How soon after the fix registers the old rollback reads failed: the take-over's
`UNWATCHED_S` and a few sweeps; the killed sender's lease lasted its wait (up to ten
minutes here) and 30 s more."""

ROLLBACK = """\
url: {url}
secret: {secret}
timeout: 1s
backoff: 10m
max_backoff: 10m
"""
"""The first attempt times out (the receiver answers after 2 s); the next is due up to
ten minutes later (full jitter: the kill lands in that wait unless the draw is under a
fraction of a second, one in thousands)."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'postflight.db'}"


def _rollback_row(store_url: str, workdir: Path, deploy_id: str) -> tuple[Any, ...]:
    """(attempts, next_attempt_at) of the deploy's rollback, read on the test's own
    connection: what the trial waits on before its kill."""
    sql = "SELECT attempts, next_attempt_at FROM rollbacks WHERE window_id = {}"
    if store_url.startswith("sqlite"):
        rows = crash.store_rows(workdir, sql.format("?"), deploy_id)
        return rows[0] if rows else (0, None)

    async def read() -> tuple[Any, ...]:
        conn = await asyncpg.connect(store_url)
        try:
            row = await conn.fetchrow(sql.format("$1"), deploy_id)
        finally:
            await conn.close()
        return tuple(row) if row is not None else (0, None)

    return asyncio.run(read())


def start_replica(config: Path, port: int, log: Path, replica: str) -> subprocess.Popen[bytes]:
    """`postflight run` as `replica` (POSTFLIGHT_REPLICA_ID, read from this environment)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POSTFLIGHT_REPLICA_ID", replica)
        return crash.start_agent(config, port, log)


def settled_after_the_fix(api: str, deploy_id: str, version: str) -> tuple[dict[str, Any], float]:
    """The fix `version` registered through `api`; the deploy's rollback once no longer
    `pending` (within `GIVEN_UP_WITHIN_S`): the fix, and how long that took."""
    fix: dict[str, Any] = crash.request_json(
        "POST", api, {"environment": "production", "version": version}
    )
    registered = time.monotonic()

    def pending() -> bool:
        rollback = crash.request_json("GET", f"{api}/{deploy_id}")["rollback"]
        return bool(rollback["state"] == "pending")

    crash.until(lambda: not pending(), within=GIVEN_UP_WITHIN_S)
    return fix, time.monotonic() - registered


@pytest.mark.timeout(180)
def test_a_killed_senders_rollback_after_an_unanswered_attempt_is_given_up_by_the_next(
    tmp_path: Path, store_url: str
) -> None:
    log = tmp_path / "receiver.jsonl"
    receiver, url = crash.start_rollback_receiver(log, "200:delay=2")
    agent: subprocess.Popen[bytes] | None = None
    try:
        port = crash.free_port()
        rollback = ROLLBACK.format(url=url, secret=crash.SECRET)
        config = tmp_path / "postflight.yaml"
        config.write_text(
            f"server:\n  listen: 127.0.0.1:{port}\n  api_tokens: [{crash.TOKEN}]\n"
            f"store:\n  url: {store_url}\n" + crash.bad_environment(rollback)
        )
        agent = start_replica(config, port, tmp_path / "a.log", "replica-a")
        api = f"http://127.0.0.1:{port}/v1/deploys"
        bad = crash.request_json("POST", api, {"environment": "production", "version": "v2.4.1"})
        deadline = time.monotonic() + 60
        while _rollback_row(store_url, tmp_path, bad["id"])[1] is None:
            assert time.monotonic() < deadline, "the first attempt's wait was never stored"
            time.sleep(0.02)
        agent.send_signal(signal.SIGKILL)  # in the wait after the attempt that timed out
        agent.wait()
        attempts, next_at = _rollback_row(store_url, tmp_path, bad["id"])
        assert attempts == 1 and next_at > time.time(), (attempts, next_at)

        agent = start_replica(config, port, tmp_path / "b.log", "replica-b")
        fix, took = settled_after_the_fix(api, bad["id"], "v2.4.2")
        time.sleep(2.5)  # the receiver logs the attempt that timed out (answered at 2 s)
        final = crash.request_json("GET", f"{api}/{bad['id']}")["rollback"]
        sent = [a for a in crash.read_attempts(log) if a["idempotency_key"] == bad["id"]]
    finally:
        crash.end_all(agent, receiver)
    assert len(sent) == 1 and not sent[0]["accepted"], sent
    assert final["state"] == "failed" and fix["id"] in final["last_error"], (took, final)

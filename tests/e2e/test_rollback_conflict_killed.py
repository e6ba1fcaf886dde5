"""A sender killed -9 while its Vercel rollback, answered 409, waits to look again whether
it took effect (Vercel's project read answering 503: it cannot tell): the next agent, under
another replica id on the same store, gives the rollback up within seconds of the fix's
registration, where it read `pending` until the killed sender's lease lapsed (its look's
wait and `store.lease` after the kill). Real processes: the agents, and the fake Vercel
that counts the rollback calls."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import crash
from tests.e2e.crash_vercel import NEW, OLD, VERCEL_TOKEN, _fake, write_config
from tests.e2e.test_rollback_unanswered_killed import settled_after_the_fix, start_replica

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(180)
def test_a_killed_senders_rollback_after_a_409_is_given_up_by_the_next(tmp_path: Path) -> None:
    fake, url = crash.start_fake("tests.fakes.vercel", VERCEL_TOKEN)
    agent: subprocess.Popen[bytes] | None = None
    try:
        _fake(url, "/_fake/fail", {"kind": "409", "match": "/rollback/"})
        _fake(url, "/_fake/fail", {"kind": "503", "match": "/v9/projects/"})  # cannot tell
        port = crash.free_port()
        config = write_config(tmp_path, port, url, backoff="20s", max_backoff="10m")
        agent = start_replica(config, port, tmp_path / "a.log", "replica-a")
        api = f"http://127.0.0.1:{port}/v1/deploys"
        labels = {"vercel.deployment": NEW, "vercel.previous": OLD}
        bad = crash.request_json(
            "POST", api, {"environment": "production", "version": "v-bad", "labels": labels}
        )
        sql = "SELECT attempts, next_attempt_at FROM rollbacks WHERE window_id = ?"

        def row() -> tuple[Any, ...]:
            rows = crash.store_rows(tmp_path, sql, bad["id"])
            return rows[0] if rows else (0, None)

        crash.until(lambda: row()[1] is not None, within=60)  # the 409 stored, a look's wait
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        attempts, next_at = row()
        assert attempts == 1 and next_at > time.time(), (attempts, next_at)

        agent = start_replica(config, port, tmp_path / "b.log", "replica-b")
        # within UNWATCHED_S and a few sweeps; the killed sender's look waited 20 s and more
        fix, took = settled_after_the_fix(api, bad["id"], "v-fix")
        final = crash.request_json("GET", f"{api}/{bad['id']}")["rollback"]
        sent = [r for r in _fake(url, "/_fake/requests") if "/rollback/" in r["path"]]
    finally:
        crash.end_all(agent, fake)
    assert len(sent) == 1, sent
    assert final["state"] == "failed" and fix["id"] in final["last_error"], (took, final)

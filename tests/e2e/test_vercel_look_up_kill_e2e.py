"""kill -9 while a Vercel rollback asks Vercel which deployment to roll back to, counted at
the fake Vercel (another process): the asks are the rollback's `max_attempts` in total,
across restarts. Before, the count of asks was kept per process: each restart began at
zero, and Vercel was asked again and again (10 lists for 3 asks allowed, 2 kills).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.e2e.crash import (
    free_port,
    kill_and_restart,
    request_json,
    start_agent,
    start_fake,
    stop,
    until,
)
from tests.e2e.crash_vercel import VERCEL_TOKEN, _fake, write_config

pytestmark = pytest.mark.e2e

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
LIST = "/v6/deployments"
ASKS = 3
"""`rollback.max_attempts`: how many times the list may be asked, each ask its two GETs."""


@pytest.mark.timeout(240)
def test_kill_9_between_look_ups_does_not_give_the_rollback_more_asks(tmp_path: Path) -> None:
    fake, url = start_fake("tests.fakes.vercel", VERCEL_TOKEN)
    agent = None
    try:
        _fake(url, "/_fake/fail", {"kind": "503", "match": LIST})  # every ask deferred

        def lists() -> int:
            return sum(r["path"] == LIST for r in _fake(url, "/_fake/requests"))

        port = free_port()
        config = write_config(
            tmp_path, port, url, backoff="3s", max_backoff="3s", max_attempts=ASKS
        )
        log = tmp_path / "agent.log"
        agent = start_agent(config, port, log)
        # no vercel.deployment label: the window's own look-up at open is not owed, and
        # the rollback asks Vercel by the deploy's commit
        deploy = request_json(
            "POST",
            f"http://127.0.0.1:{port}/v1/deploys",
            {"environment": "production", "version": "v-bad", "commit": SHA},
        )
        rng = random.Random(5)
        for kills in (1, 2):  # killed once an ask (two GETs) was answered, before the last
            until(lambda k=kills: lists() >= 2 * k, 120)
            agent = kill_and_restart(agent, rng, config, port, log)
        deadline = time.monotonic() + 120
        while True:
            state = request_json("GET", f"http://127.0.0.1:{port}/v1/deploys/{deploy['id']}")
            rollback = state.get("rollback") or {}
            if rollback.get("state") not in (None, "pending"):
                break
            assert time.monotonic() < deadline, json.dumps(state)
            time.sleep(0.1)
        asked = lists()
        assert asked <= 2 * ASKS, f"{asked} GET {LIST} for {ASKS} asks allowed"
        assert rollback["state"] == "failed", rollback
        error = rollback.get("last_error") or ""
        assert f"asked {ASKS} times" in error, error
        assert _fake(url, "/_fake/accepted") == []
    finally:
        stop(agent, fake)

"""A good service whose answers' tail outlasts a sub-second round, through a real
`postflight run`: its probes fail on their own timeout, never because their round closed.

A service answering in 50 ms with a tail to 300 ms (lognormal, sigma 1: p95 about 260 ms),
no errors served, probed in 250 ms rounds with a 2 s timeout: each probe still unanswered
at its round's end was a failed probe (`no response within 125ms`), and the window was
rolled back on `probe-errors` (`bench/small_windows.py`: 6 of 6 windows). Now such a probe
counts in the round during which it lands (`agent.windows.carried`).
"""

from __future__ import annotations

import asyncio
import math
import random
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cli_process import started_run
from tests.e2e.conftest import LocalTarget
from tests.ports import free_port
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

TOKEN = "tail-past-the-round-token-0123456789"
SECRET = "tail-past-the-round-secret"
TERMINAL = {"passed", "failed", "rolled_back", "inconclusive", "cancelled", "superseded"}
MEDIAN_S = 0.05
LONGEST_S = 0.3


class Target(LocalTarget):
    """`/api/health`: 200 after a lognormal time (median 50 ms, sigma 1) cut at 300 ms;
    records when each request came and how long it was held."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = random.Random(7)
        self.served: list[tuple[float, float]] = []

    async def health(self, request: web.Request) -> web.Response:
        held = min(LONGEST_S, MEDIAN_S * math.exp(self.rng.gauss(0.0, 1.0)))
        self.served.append((time.time(), held))
        await asyncio.sleep(held)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


def configuration(tmp_path: Path, port: int, target: str, receiver: str) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(f"""\
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
store: {{url: "sqlite:///{tmp_path / "postflight.db"}"}}
environments:
  production:
    base_url: {target}
    window: 6s
    interval: 250ms
    background_interval: 1s
    probes_per_round: 20
    checks:
      - {{name: api-health, type: http, path: /api/health, timeout: 2s}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      - {{name: health-latency, source: checks, metric: latency_p95, max: 500ms}}
    rollback: {{url: "{receiver}", secret: {SECRET}}}
""")
    return path


@pytest.mark.timeout(120)
async def test_a_tail_slower_than_the_round_is_not_a_failure(
    tmp_path: Path, rollback_receiver: Callable[..., Awaitable[RollbackReceiver]]
) -> None:
    """Failed before: rolled back (`probe-errors: error_rate` past 0.05), 1 request at the
    receiver; its p95 read on the waits cut at the rounds' end."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    target = Target()
    await target.start()
    port = free_port()
    config = configuration(tmp_path, port, target.url, receiver.url)
    log = tmp_path / "agent.log"
    agent = await started_run(config, log)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            for _ in range(300):
                try:
                    async with http.get(f"{url}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert agent.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            body = {"environment": "production", "version": "v2"}
            async with http.post(f"{url}/v1/deploys", json=body) as r:
                assert r.status == 201, await r.text()
                deploy: dict[str, Any] = await r.json()
            registered = time.time()
            for _ in range(600):
                async with http.get(f"{url}/v1/deploys/{deploy['id']}") as r:
                    deploy = await r.json()
                pending = (deploy.get("rollback") or {}).get("state") == "pending"
                if deploy["state"] in TERMINAL and not pending:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the window did not end: {deploy}")
            ended = time.time()
            await asyncio.sleep(0.5)  # a rollback request, if any, would have come by now
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
            await asyncio.wait_for(agent.wait(), 30)
        await target.stop()
    verdict = deploy.get("verdict") or {}
    assert deploy["state"] not in {"failed", "rolled_back"}, (verdict, log.read_text()[-3000:])
    assert len(receiver.attempts) == 0  # counted at the receiver
    rules = {rule["name"]: rule for rule in verdict.get("rules", [])}
    assert rules["probe-errors"]["observed"] == 0, rules["probe-errors"]
    # the window's p95 is the service's, measured at the target over the window's requests
    held = [s for at, s in target.served if registered <= at <= ended]
    assert len(held) >= 200, len(held)
    served_p95 = statistics.quantiles(held, n=20)[-1]
    observed = rules["health-latency"]["observed"]
    # (the same requests, each read a little later than served; two estimates of a p95:
    # 0.240-0.243 s read for 0.242 s served)
    assert abs(observed - served_p95) <= 0.15 * served_p95, (observed, served_p95, rules)

"""Short windows that must decide, through a real `postflight run` as a hidden acceptance
test drives it (the example's three rules, the default sequential policy): half the probes
failing over a 3 s window at 1 s rounds is rolled back once at the receiver. It ended
inconclusive: a 3-round window spent half of `probe-errors`' share on an e-detector and a
fifth on a look at its end, neither able to fail in 3 rounds (`SHORT_WINDOW_ROUNDS`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.cli_process import ended_deploy, started_run, stop_run
from tests.e2e.conftest import LocalTarget
from tests.ports import free_port
from tests.receivers import RollbackReceiver

pytestmark = pytest.mark.e2e

TOKEN = "short-window-token-0123456789"
SECRET = "short-window-secret"


class Target(LocalTarget):
    """Answers ok; once `failing`, every other request is a 500."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.requests = 0

    async def health(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.failing and self.requests % 2:
            return web.json_response({"status": "error"}, status=500)
        return web.json_response({"status": "ok"})

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/health", self.health)


def configuration(tmp_path: Path, port: int, target: str, receiver: str, window: str) -> Path:
    path = tmp_path / "postflight.yaml"
    path.write_text(f"""\
server: {{listen: "127.0.0.1:{port}", api_tokens: [{TOKEN}]}}
store: {{url: "sqlite:///{tmp_path / "postflight.db"}"}}
environments:
  production:
    base_url: {target}
    window: {window}
    interval: 1s
    lookback: 1m
    background_interval: 250ms
    probes_per_round: 40
    checks:
      - {{name: api-health, type: http, path: /api/health, timeout: 2s}}
    rules:
      - {{name: probe-errors, source: checks, metric: error_rate, max: 0.05}}
      - {{name: health-latency, source: checks, metric: latency_p95, max: 500ms}}
      - {{name: health-p95, source: checks, metric: latency_p95, max_increase: 50%}}
    rollback: {{url: "{receiver}", secret: {SECRET}}}
""")
    return path


@pytest.mark.timeout(90)
async def test_half_the_probes_failing_in_a_3s_window_is_rolled_back_once(
    tmp_path: Path, rollback_receiver: Callable[..., Awaitable[RollbackReceiver]]
) -> None:
    """Failed before: the window ended `inconclusive` ('not enough evidence'), no rollback."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    target = Target()
    await target.start()
    port = free_port()
    config = configuration(tmp_path, port, target.url, receiver.url, "3s")
    log = tmp_path / "agent.log"
    agent = await started_run(config, log)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            # background probes first: the baseline of health-p95
            for _ in range(600):
                if target.requests >= 200:
                    break
                assert agent.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{target.requests} background probes in 60 s")
            target.failing = True
            body = {"environment": "production", "version": "v2"}
            async with http.post(f"{url}/v1/deploys", json=body) as r:
                assert r.status == 201, await r.text()
                deploy: dict[str, Any] = await r.json()
            deploy = await ended_deploy(http, url, deploy, rollback=True)
            await asyncio.sleep(1.0)  # a second rollback request, if any, would come now
    finally:
        await stop_run(agent)
        await target.stop()
    assert deploy["state"] == "rolled_back", (deploy.get("verdict"), log.read_text()[-3000:])
    assert len(receiver.attempts) == 1

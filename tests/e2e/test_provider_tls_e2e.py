"""A TLS certificate that cannot be verified, in the daemon's form. A provider's: its
fetches fail at once, each one connection (no retry verifies a certificate), and the
window ends as for any provider down: inconclusive, one alert saying which TLS problem,
no rollback. A target's: its probes say which TLS problem, in the same words."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import SECRET, AgentFactory, LocalTarget, environment
from tests.e2e.providers_support import alerting_yaml, providers_yaml
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled
from tests.self_signed import self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs `openssl`")


class Healthy(LocalTarget):
    """The checks' target, all well: the window's only trouble is its provider."""

    def routes(self, app: web.Application) -> None:
        async def health(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app.router.add_get("/api/health", health)


@pytest.fixture
async def healthy() -> AsyncIterator[Healthy]:
    target = Healthy()
    await target.start()
    yield target
    await target.stop()


class Accepts(asyncio.Protocol):
    """A connection to the TLS server as it is accepted, before its handshake: counted."""

    def __init__(self, accepted: list[int]) -> None:
        accepted.append(1)


@pytest.fixture
async def self_signed_server(tmp_path: Path) -> AsyncIterator[tuple[int, list[int]]]:
    """An https server on 127.0.0.1 behind a self-signed certificate: its port, and the
    connections it accepted (each handshake fails)."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    accepted: list[int] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: Accepts(accepted), "127.0.0.1", 0, ssl=context
    )
    yield server.sockets[0].getsockname()[1], accepted
    server.close()
    await server.wait_closed()


async def test_a_provider_certificate_not_verified_is_one_connection_a_fetch_and_one_alert(
    start_agent: AgentFactory,
    self_signed_server: tuple[int, list[int]],
    rollback_receiver: Any,
    json_sink: JsonSink,
    healthy: Healthy,
) -> None:
    """Before, each fetch was sent `max_attempts` (3) times to fail alike, the alert
    saying '(after 3 attempts)'."""
    port, accepted = self_signed_server
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production",
        healthy.url,
        rules=["{name: up, source: prometheus, query: 'up', max: 2}"],
        extra=f"rollback: {{url: {receiver.url}, secret: {SECRET}}}",
    )
    providers = providers_yaml(
        prometheus_url=f"https://127.0.0.1:{port}", timeout="2s", max_attempts=3
    )
    agent = await start_agent(env, alerting_yaml(json_sink.url()), providers)
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "inconclusive" and final["rollback"] is None, final
    assert receiver.attempts == []
    (alert,) = titled(json_sink, "provider prometheus ")
    assert "TLS failed: its certificate was not verified (self-signed certificate)" in (
        alert.message
    ), alert.message
    assert "attempts" not in alert.message, alert.message
    await alert_titled(json_sink, "inconclusive")
    assert len(titled(json_sink, "provider prometheus ")) == 1
    fetches = agent.metric(
        "postflight_provider_requests_total", provider="prometheus", result="error"
    )
    assert fetches >= 1 and len(accepted) == fetches, (fetches, len(accepted))


async def test_a_targets_certificate_not_verified_is_said_in_the_verdict(
    start_agent: AgentFactory, self_signed_server: tuple[int, list[int]]
) -> None:
    """The checks' own TLS failure, as the window's verdict gives it: the same words as a
    provider's (`common.tls_words`), where it quoted aiohttp's 'Cannot connect to host
    127.0.0.1:PORT ssl:True [SSLCertVerificationError: (1, ...)]'. The target's failure
    fails the deploy: its probes fail, as a user's would."""
    port, _ = self_signed_server
    agent = await start_agent(environment("production", f"https://127.0.0.1:{port}"))
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"], within=20)
    (rule,) = final["verdict"]["rules"]
    assert rule["detail"].endswith(
        "api-health: GET /api/health: TLS failed: its certificate was not verified"
        " (self-signed certificate); $SSL_CERT_FILE names the CA bundle to verify it with"
    ), rule["detail"]

"""A TLS certificate that cannot be verified, in the daemon's form. A provider's: its
fetches fail at once, each one connection (no retry verifies a certificate), and the
window ends as for any provider down: inconclusive, one alert saying which TLS problem,
no rollback. A target's: its probes say which TLS problem, in the same words."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, FlipTarget, environment
from tests.e2e.providers_support import alerting_yaml, providers_yaml
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled
from tests.self_signed import counting_tls_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs `openssl`")


@pytest.fixture
async def self_signed_server(tmp_path: Path) -> AsyncIterator[tuple[int, list[int]]]:
    """An https server behind a self-signed certificate: its port, and the connections it
    accepted (each handshake fails)."""
    async with counting_tls_server(tmp_path) as server:
        yield server


async def test_a_provider_certificate_not_verified_is_one_connection_a_fetch_and_one_alert(
    start_agent: AgentFactory,
    self_signed_server: tuple[int, list[int]],
    rollback_receiver: Any,
    json_sink: JsonSink,
    flip_target: FlipTarget,
) -> None:
    """Before, each fetch was sent `max_attempts` (3) times to fail alike, the alert
    saying '(after 3 attempts)'."""
    port, accepted = self_signed_server
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    env = environment(
        "production",
        flip_target.url,  # healthy (never flipped): the window's only trouble is its provider
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

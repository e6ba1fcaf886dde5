"""A provider whose TLS fails says which TLS problem, as `postflight --url` does for the
agent (`common.tls_words`): each read "could not reach Prometheus (connection to
127.0.0.1:PORT failed)", a network outage to look for where the fix is a CA bundle, a
host name or an `http://`."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import PrometheusSettings
from common.tls_words import tls_reason
from tests.fakes.prometheus import FakePrometheus, free_port
from tests.providers.support import AFTER, FAST, rule, scope
from tests.self_signed import counting_tls_server, self_signed, server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs `openssl`")


@pytest.fixture
async def self_signed_prometheus(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """An https server on 127.0.0.1 behind a self-signed certificate (its port, its cert):
    the handshake fails before any route is read."""
    cert, key = self_signed(tmp_path)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(cert, key)).start()
    yield port, cert
    await runner.cleanup()


async def error_of(url: str, metrics: Metrics) -> str:
    provider = PrometheusProvider(
        PrometheusSettings.model_validate({"url": url, **FAST}), metrics=metrics
    )
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", max=2), scope(), AFTER, None
        )
    finally:
        await provider.aclose()
    assert obs.value is None and obs.error is not None
    assert not obs.answered  # fails soft: an outage's inconclusive, never a rollback
    return obs.error


def failed_requests(metrics: Metrics) -> float | None:
    """The requests sent to Prometheus that failed, each attempt of a fetch one."""
    return metrics.registry.get_sample_value(
        "postflight_provider_http_requests_total", {"provider": "prometheus", "result": "error"}
    )


async def test_a_self_signed_certificate_is_said_as_such(
    self_signed_prometheus: tuple[int, Path], metrics: Metrics
) -> None:
    port, _ = self_signed_prometheus
    error = await error_of(f"https://127.0.0.1:{port}", metrics)
    assert error.startswith(
        f"could not reach Prometheus (127.0.0.1:{port}: TLS failed: its certificate was not"
        " verified (self-signed certificate); $SSL_CERT_FILE names the CA bundle to verify"
        " it with)"
    ), error


async def test_https_to_a_plain_http_server_is_said_as_such(
    prometheus_fake: FakePrometheus, metrics: Metrics
) -> None:
    https = prometheus_fake.url.replace("http://", "https://")
    error = await error_of(https, metrics)
    assert "TLS failed: it did not answer in TLS (does it serve http://, not https://?)" in (
        error
    ), error
    # nor does a retry make it answer in TLS: asked once (`tls_lasting`)
    attempts = failed_requests(metrics)
    assert attempts == 1 and "attempts" not in error, (attempts, error)


async def test_a_certificate_for_another_host_is_said_as_such(
    self_signed_prometheus: tuple[int, Path],
) -> None:
    """Trusted, but asked for by a name it is not for (`localhost` for 127.0.0.1's): the
    CA bundle advice would not help there."""
    port, cert = self_signed_prometheus
    context = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        writer.close()
    assert tls_reason(caught.value) == (
        "TLS failed: its certificate is for another host (Hostname mismatch, certificate is"
        " not valid for 'localhost'.): use a name the certificate is for"
    )


async def test_a_certificate_failure_is_not_retried_a_lost_connection_is(
    tmp_path: Path, metrics: Metrics
) -> None:
    """No retry verifies a certificate: each was sent `max_attempts` (3) times, to fail
    alike, the fetch's budget spent on backoffs. A connection refused, an outage that may
    pass, is still retried. Both fail soft: no data, never a rollback (`error_of`)."""
    async with counting_tls_server(tmp_path) as (port, accepted):
        error = await error_of(f"https://127.0.0.1:{port}", metrics)
    assert "its certificate was not verified" in error and "attempts" not in error, error
    assert len(accepted) == 1
    attempts = failed_requests(metrics)
    assert attempts == 1

    refused = await error_of(f"http://127.0.0.1:{free_port()}", metrics)
    assert refused.endswith("failed) (after 3 attempts)"), refused

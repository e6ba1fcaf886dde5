"""`postflight run` verifies an https target against the CA bundle `$SSL_CERT_FILE` names,
and probes one with `verify_tls: false` without: the daemon imports aiohttp without its
default TLS contexts reading the bundle and reads it into the verified one before its loop
runs when its configuration names an https URL, else at its first TLS handshake (a
redirect to https), never into the unverified one, which verifies nothing
(`agent.deferred_ca`)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.crash import end_all, free_port, request_json, server_and_store, start_agent
from tests.self_signed import self_signed, server_context

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs `openssl`"),
]


@pytest.fixture
async def https_target(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[int]]]:
    """A healthy https target behind a self-signed certificate: its URL, the certificate,
    and a list growing by one a request it answered."""
    cert, key = self_signed(tmp_path)
    answered: list[int] = []

    async def health(_: web.Request) -> web.Response:
        answered.append(1)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context(cert, key)).start()
    yield f"https://127.0.0.1:{port}", cert, answered
    await runner.cleanup()


def _environment(name: str, url: str, check: str) -> str:
    return (
        f"  {name}:\n    base_url: {url}\n    window: 2s\n    interval: 300ms\n"
        f"    checks:\n      - {{name: health, type: http, path: /health, timeout: 2s{check}}}\n"
        "    analysis: {policy: threshold, failure_limit: 2}\n"
        "    rules:\n"
        "      - {name: probe-errors, source: checks, metric: error_rate, max: 0.05}\n"
    )


async def _ended(base: str, deploy_id: str, within: float = 60.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        deploy = await asyncio.to_thread(request_json, "GET", f"{base}/v1/deploys/{deploy_id}")
        if deploy["state"] not in ("scheduled", "watching"):
            return deploy
        assert loop.time() < deadline, deploy
        await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
async def test_a_run_verifies_against_ssl_cert_file_and_skips_it_with_verify_tls_false(
    https_target: tuple[str, Path, list[int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, cert, answered = https_target
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the agent's process inherits it
    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        server_and_store(tmp_path, port)
        + "environments:\n"
        + _environment("trusted", url, "")
        + _environment("unverified", url, ", verify_tls: false")
    )
    agent = await asyncio.to_thread(start_agent, config, port, tmp_path / "agent.log")
    try:
        base = f"http://127.0.0.1:{port}"
        for env in ("trusted", "unverified"):
            deploy = await asyncio.to_thread(
                request_json, "POST", f"{base}/v1/deploys", {"environment": env, "version": "v2"}
            )
            final = await _ended(base, deploy["id"])
            assert final["state"] == "passed", final
    finally:
        end_all(agent)
    assert answered  # counted at the target


@pytest.mark.timeout(180)
async def test_a_run_that_names_no_https_url_verifies_a_redirect_to_https(
    https_target: tuple[str, Path, list[int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its start read no CA bundle: the redirect's handshake reads it. Failed without that
    read (`read_at_first_handshake` left out): the window failed, every probe refused by
    the verification (`certificate verify failed`)."""
    url, cert, answered = https_target
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{url}/health")

    app = web.Application()
    app.router.add_get("/health", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    plain = free_port()
    await web.TCPSite(runner, "127.0.0.1", plain).start()
    port = free_port()
    config = tmp_path / "postflight.yaml"
    config.write_text(
        server_and_store(tmp_path, port)
        + "environments:\n"
        + _environment("redirected", f"http://127.0.0.1:{plain}", "")
    )
    agent = await asyncio.to_thread(start_agent, config, port, tmp_path / "agent.log")
    try:
        base = f"http://127.0.0.1:{port}"
        deploy = await asyncio.to_thread(
            request_json,
            "POST",
            f"{base}/v1/deploys",
            {"environment": "redirected", "version": "v2"},
        )
        final = await _ended(base, deploy["id"])
        assert final["state"] == "passed", final
    finally:
        end_all(agent)
        await runner.cleanup()
    assert answered  # the redirect reached the https target, counted there

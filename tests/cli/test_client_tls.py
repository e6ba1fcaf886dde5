"""`register`, `status` and `rollback` against an https `--url` whose TLS fails, run as a
pipeline runs them: each said `cannot reach the agent at https://…: Operation not
permitted` (`os.strerror` of the SSL error's code 1, no errno), for the two a new user
meets first: an agent serving plain http, and one behind a self-signed certificate."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.fakes.prometheus import free_port
from tests.self_signed import self_signed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs `openssl`")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tls-test-token-0123456789"


async def _serve(ssl_context: object = None) -> tuple[web.AppRunner, int]:
    """A stand-in agent: `GET /v1/deploys` answers an empty list (the handshake fails
    before any route is read)."""

    async def deploys(_: web.Request) -> web.Response:
        return web.json_response({"items": [], "next": None})

    app = web.Application()
    app.router.add_get("/v1/deploys", deploys)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()  # type: ignore[arg-type]
    return runner, port


@pytest.fixture
async def plain_http() -> AsyncIterator[int]:
    runner, port = await _serve()
    yield port
    await runner.cleanup()


@pytest.fixture
async def self_signed_https(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    import ssl

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner, port = await _serve(context)
    yield port, cert
    await runner.cleanup()


async def status(url: str, **env: str) -> tuple[int, str, str]:
    """`postflight status --url URL` in a process of its own (this loop serves the agent)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "status",
        "--url",
        url,
        "--token",
        TOKEN,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode().strip()


async def test_https_to_an_agent_serving_plain_http_says_so(plain_http: int) -> None:
    code, _, said = await status(f"https://127.0.0.1:{plain_http}")
    assert code == 2, said
    assert "Operation not permitted" not in said, said
    assert said == (
        f"postflight status: error: cannot reach the agent at https://127.0.0.1:{plain_http}:"
        " TLS failed: it did not answer in TLS (does it serve http://, not https://?) (exit 2)"
    ), said


async def test_https_to_a_self_signed_agent_names_the_certificate_and_the_way_to_trust_it(
    self_signed_https: tuple[int, Path],
) -> None:
    port, cert = self_signed_https
    code, _, said = await status(f"https://127.0.0.1:{port}")
    assert code == 2, said
    assert said == (
        f"postflight status: error: cannot reach the agent at https://127.0.0.1:{port}: TLS"
        " failed: its certificate was not verified (self-signed certificate); $SSL_CERT_FILE"
        " names the CA bundle to verify it with (exit 2)"
    ), said
    code, out, err = await status(f"https://127.0.0.1:{port}", SSL_CERT_FILE=str(cert))
    assert (code, out.strip()) == (0, "no deploy windows yet"), err  # the way named works


async def test_a_redirect_from_http_to_https_is_followed_with_the_ca_bundle_read(
    self_signed_https: tuple[int, Path],
) -> None:
    """The client commands read the CA bundle at their first https request, not as aiohttp
    is imported (agent.deferred_ca): a plain http `--url` that a proxy redirects to https
    still verifies the agent's certificate against `$SSL_CERT_FILE`."""
    port, cert = self_signed_https

    async def to_https(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"https://127.0.0.1:{port}{request.path_qs}")

    app = web.Application()
    app.router.add_get("/v1/deploys", to_https)
    runner = web.AppRunner(app)
    await runner.setup()
    http_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    try:
        code, out, err = await status(f"http://127.0.0.1:{http_port}", SSL_CERT_FILE=str(cert))
        assert (code, out.strip()) == (0, "no deploy windows yet"), err
        code, _, said = await status(f"http://127.0.0.1:{http_port}")  # the system's bundle
        assert code == 2, said
        assert "its certificate was not verified (self-signed certificate)" in said, said
    finally:
        await runner.cleanup()

"""Quiet, safe edges of the daemon's HTTP server, as `postflight run` serves it.

A request the HTTP parser refuses is one WARNING line without a traceback, and is
counted; no response names the Python or aiohttp version in `Server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agent.app import serve
from agent.metrics import Metrics
from tests.api.harness import make_settings
from tests.e2e.crash import free_port

MALFORMED = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",  # NUL in a header
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",  # space in a name
    b"GET /he\x01lthz HTTP/1.1\r\nHost: x\r\n\r\n",  # control byte in the target
    b"BR@KEN / HTTP/1.1\r\nHost: x\r\n\r\n",  # a bad method (aiohttp logs it at DEBUG)
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32) + b"\r\n\r\n",  # TLS
]


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[int, Metrics]]:
    port = free_port()
    settings = make_settings()
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"listen": f"127.0.0.1:{port}"}),
            "store": settings.store.model_copy(update={"url": f"sqlite:///{tmp_path}/e.db"}),
        }
    )
    metrics = Metrics()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, metrics=metrics, background_probing=False))
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        break
            await asyncio.sleep(0.05)
    yield port, metrics
    stop.set()
    await asyncio.wait_for(task, 15)


@pytest.mark.parametrize(
    "data",
    MALFORMED,
    ids=["nul-in-header", "space-in-name", "ctl-in-path", "bad-method", "tls-hello"],
)
async def test_a_malformed_request_is_a_counted_warning_without_traceback(
    daemon: tuple[int, Metrics], caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    port, metrics = daemon
    caplog.set_level(logging.DEBUG)
    answer = await raw(port, data)
    assert answer.split(b"\r\n")[0].split()[1] == b"400", answer
    server_records = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert [r.levelname for r in server_records] == ["WARNING"], server_records
    [record] = server_records
    assert record.exc_info is None and "Traceback" not in caplog.text
    assert record.getMessage().startswith("malformed HTTP request from 127.0.0.1")
    assert metrics.registry.get_sample_value("postflight_malformed_requests_total") == 1


async def test_no_response_names_the_server_software_version(
    daemon: tuple[int, Metrics],
) -> None:
    port, _ = daemon
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/v1/deploys", "/nowhere", "/metrics"):
            async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                assert response.headers["Server"] == "postflight", path
    answer = await raw(port, MALFORMED[0])
    headers = answer.split(b"\r\n\r\n")[0].lower()
    assert b"\r\nserver: postflight\r\n" in headers + b"\r\n", answer
    assert b"python" not in headers and b"aiohttp" not in headers

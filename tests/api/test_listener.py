"""The daemon's socket (`agent.api.listener`) on port 0: bound before anything is built on
its port (links, the start log), refusing connections until served, and on one port for
every address of its host, as the links name one."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from agent.api.listener import Listener

pytestmark = pytest.mark.timeout(30)


async def answer(host: str, port: int) -> bytes:
    """The status line `host:port` answers a request with; b"" when it refuses."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return b""
    try:
        writer.write(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return (await reader.readline()).rstrip()
    finally:
        writer.close()


async def test_port_0_binds_every_address_on_the_one_port_it_says_and_serves_it() -> None:
    """Host None is every interface, 0.0.0.0 and ::, each of which the kernel gave a port
    of its own (`[('::', 39775), ('0.0.0.0', 42229)]`): the port said answered on one."""
    listener = Listener(None, 0)
    port = await listener.bind()
    runner = web.AppRunner(web.Application())
    await runner.setup()
    hosts = ["127.0.0.1", "::1"] if socket.has_ipv6 else ["127.0.0.1"]
    try:
        assert port != 0
        assert [await answer(host, port) for host in hosts] == [b""] * len(hosts)  # not yet
        await listener.serve(runner)
        said = [await answer(host, port) for host in hosts]
        assert said == [b"HTTP/1.1 404 Not Found"] * len(hosts), said
    finally:
        listener.close()
        await runner.cleanup()

"""The daemon's listening socket, which one runner hands to another without closing it.

`postflight run` listens before its application has started when the store does not
answer at start (`agent.api.starting` answers meanwhile); once the store answers, the
agent's application takes the socket over. Two sockets one after the other would leave a
moment the port refuses connections (a probe failing, a scrape lost), so the socket
stays bound and its protocol factory (this object) makes each new connection with the
server of the runner current when it opens. A connection already open stays with the
server that accepted it; that runner's `cleanup` ends it. aiohttp's `TCPSite` binds a
runner's server for good, so the socket is opened here with asyncio's `create_server`,
as `TCPSite.start` does (the same host, port, backlog and `reuse_address`). It is bound
before the application is built, accepting only once served: the port `listen: host:0`
takes is then known to everything built on it (links, the start log).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

SAME_PORT_TRIES = 5
"""How many times port 0 on a host of several addresses, each given a port of its own, is
bound again on one port for all before `CannotListen`."""


class CannotListen(OSError):
    """The socket could not be bound (a port in use, an address not this host's): `run`
    says so, exit 2; any other OSError out of the daemon is not that."""


class Listener:
    """`host:port`, served by the runner last given to `serve`."""

    def __init__(self, host: str | None, port: int) -> None:
        self._host = host
        self._port = port
        self._server: web.Server | None = None
        self._sockets: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    def __call__(self) -> web.RequestHandler:
        """A new connection, served by the current runner's server."""
        assert self._server is not None  # listening only once a runner was given
        return self._server()

    async def bind(self) -> int:
        """Bind the socket, accepting nothing yet (a connection is refused until `serve`):
        the port bound, the one the kernel took for port 0, before anything is built on
        it (the links, the start log). For port 0 every address of the host (`localhost`:
        127.0.0.1 and ::1) is bound on one port, as the links name one."""
        if self._sockets is None:
            self._sockets = await self._on_one_port()
        port: int = self._sockets.sockets[0].getsockname()[1]
        return port

    async def _on_one_port(self) -> asyncio.Server:
        sockets = await self._bound(self._port)
        tries = 0
        while len(set(ports := [sock.getsockname()[1] for sock in sockets.sockets])) > 1:
            sockets.close()  # port 0: each address was given a port of its own
            tries += 1
            if tries > SAME_PORT_TRIES:
                raise CannotListen(f"no port free on every address of {self._host}")
            try:
                sockets = await self._bound(ports[0])
            except CannotListen:  # taken on another address meanwhile: another port
                sockets = await self._bound(0)
        return sockets

    async def _bound(self, port: int) -> asyncio.Server:
        try:
            return await asyncio.get_running_loop().create_server(
                self, self._host, port, reuse_address=True, backlog=128, start_serving=False
            )
        except OSError as exc:
            raise CannotListen(*exc.args) from exc

    async def serve(self, runner: web.BaseRunner) -> None:
        """Serve new connections with `runner` (set up), binding the socket when `bind` did
        not and accepting on it the first time; the runner served before is its owner's
        to clean up."""
        if runner.server is None:
            raise RuntimeError("set the runner up before serving with it")
        await self.bind()
        assert self._sockets is not None
        started = self._server is not None
        self._server = runner.server
        if not started:
            try:
                await self._sockets.start_serving()
            except OSError as exc:  # another socket listens on the port meanwhile
                raise CannotListen(*exc.args) from exc

    def close(self) -> None:
        """No new connections; those open are their runner's `cleanup` to end."""
        if self._sockets is not None:
            self._sockets.close()

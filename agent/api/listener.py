"""The daemon's listening socket, which one runner hands to another without closing it.

`postflight run` listens before its application has started when the store does not
answer at start (`agent.api.starting` answers meanwhile); once the store answers, the
agent's application takes the socket over. Two sockets one after the other would leave a
moment the port refuses connections (a probe failing, a scrape lost), so the socket
stays bound and its protocol factory (this object) makes each new connection with the
server of the runner current when it opens. A connection already open stays with the
server that accepted it; that runner's `cleanup` ends it. aiohttp's `TCPSite` binds a
runner's server for good, so the socket is opened here with asyncio's `create_server`,
as `TCPSite.start` does (the same host, port, backlog and `reuse_address`).
"""

from __future__ import annotations

import asyncio

from aiohttp import web


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
        return self._sockets is not None

    def __call__(self) -> web.RequestHandler:
        """A new connection, served by the current runner's server."""
        assert self._server is not None  # listening only once a runner was given
        return self._server()

    async def serve(self, runner: web.BaseRunner) -> None:
        """Serve new connections with `runner` (set up), binding the socket the first time;
        the runner served before is its owner's to clean up."""
        if runner.server is None:
            raise RuntimeError("set the runner up before serving with it")
        self._server = runner.server
        if self._sockets is None:
            try:
                self._sockets = await asyncio.get_running_loop().create_server(
                    self, self._host, self._port, reuse_address=True, backlog=128
                )
            except OSError as exc:
                raise CannotListen(*exc.args) from exc

    def close(self) -> None:
        """No new connections; those open are their runner's `cleanup` to end."""
        if self._sockets is not None:
            self._sockets.close()

"""A TCP forwarder in front of the test PostgreSQL, so a test can make the server vanish
(`stop`) or the server miss a client's end (`keeps_server_side`)."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


def with_netloc(url: str, netloc: str) -> str:
    return urlunsplit(urlsplit(url)._replace(netloc=netloc))


class Proxy:
    """Forwards 127.0.0.1:`port` to the server's `target` port. `keeps_server_side`: a
    client's end (a kill -9 closing its socket) does not reach the server, whose session
    lives on as behind a lost FIN, until `stop`."""

    def __init__(self, target: int, *, keeps_server_side: bool = False) -> None:
        self.target = target
        self.keeps_server_side = keeps_server_side
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.piping: set[asyncio.Task[object]] = set()

    def url(self, url: str) -> str:
        """`url` (the server's) through this proxy."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        at = f"{netloc[0]}@" if len(netloc) == 2 else ""
        return with_netloc(url, f"{at}127.0.0.1:{self.port}")

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """The server is gone: new connections are refused and open ones are cut."""
        assert self.server is not None
        self.server.close()
        for writer in self.links:
            writer.transport.abort()
        self.links.clear()
        await self.server.wait_closed()
        if self.piping:  # each pipe ends on its aborted socket
            await asyncio.wait(self.piping, timeout=5)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}
        task = asyncio.current_task()
        assert task is not None
        self.piping.add(task)
        task.add_done_callback(self.piping.discard)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            if not (self.keeps_server_side and dst is up_writer):
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

"""A reverse proxy that serves the agent under a path prefix, as nginx's
`location /postflight/ { proxy_pass http://agent/; }` does: it strips the prefix,
forwards the rest, streams the answer (the event stream too) and leaves `Location`
alone; anything outside the prefix is its own 404, never the agent's."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.e2e.conftest import LocalTarget

_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


class PrefixProxy(LocalTarget):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.upstream = ""  # the agent's URL, set once it runs (its public_url names us)
        self.outside: list[str] = []
        """Paths asked for outside the prefix: each a link the page got wrong."""
        self._http: aiohttp.ClientSession | None = None

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.forward)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if not path.startswith(self.prefix + "/"):
            self.outside.append(path)
            return web.Response(status=404, text="not under the prefix")
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        rest = path[len(self.prefix) :]
        query = f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else ""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._http.request(
            request.method,
            f"{self.upstream}{rest}{query}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        await super().stop()

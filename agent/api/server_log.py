"""What the HTTP server logs about requests it cannot parse, and the `Server` header.

`ServerLog` is the runner's server logger (aiohttp's `aiohttp.server`): a request the
parser refused is one line without a traceback (WARNING; DEBUG for bytes that are not
HTTP at all, such as TLS or a port scanner's), counted in
`postflight_malformed_requests_total`; `agent.api.runner` answers it and calls
`malformed`. Every other server error is logged as aiohttp logs it.
`hide_server_version` keeps the Python and aiohttp versions out of the `Server`
header. No I/O beyond logging.
"""

from __future__ import annotations

import logging

from aiohttp import web, web_response

from agent.metrics import Metrics

SERVER = "postflight"
"""The `Server` header: the product, never its version or its stack's."""


class ServerLog(logging.Logger):
    """The `logger` of the daemon's runner (aiohttp's `aiohttp.server`, with malformed
    requests quiet and counted)."""

    def __init__(self, metrics: Metrics | None) -> None:
        super().__init__("aiohttp.server")
        self.parent = logging.getLogger("aiohttp")
        self.metrics = metrics

    def malformed(self, remote: str | None, status: int, detail: str, *, noise: bool) -> None:
        """One request the parser refused, answered `status`. `detail` is the answer's
        own (it never quotes the request, so no secret reaches the log)."""
        if self.metrics is not None:
            self.metrics.malformed_requests_total.inc()
        level = logging.DEBUG if noise else logging.WARNING
        self.log(level, "malformed HTTP request from %s: %d %s", remote or "?", status, detail)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


def hide_server_version(app: web.Application) -> None:
    """`Server: postflight` on every response. The routed ones through the documented
    `on_response_prepare` signal; the answers to requests the parser refused
    (`agent.api.runner`) never reach an application, and aiohttp offers no setting for
    them, so its default is replaced too (pinned by tests/api/test_edges.py)."""
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
    app.on_response_prepare.append(_server_header)

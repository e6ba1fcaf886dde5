"""What the HTTP server says about requests it cannot parse, and the `Server` header.

aiohttp logs a malformed request (a NUL byte in a header, a bad request line) at
ERROR with a full traceback, so anyone who can reach the port can flood the log.
`ServerLog` is the runner's server logger instead: such a request is one WARNING
line, without a traceback, counted in `postflight_malformed_requests_total`; every
other server error is logged as aiohttp logs it. `hide_server_version` keeps the
Python and aiohttp versions out of the `Server` header. No I/O beyond logging.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import http_exceptions, web, web_response

from agent.metrics import Metrics

SERVER = "postflight"
"""The `Server` header: the product, never its version or its stack's."""


class ServerLog(logging.Logger):
    """The `logger` of `web.AppRunner` (aiohttp's `aiohttp.server`, with malformed
    requests quiet and counted)."""

    def __init__(self, metrics: Metrics | None) -> None:
        super().__init__("aiohttp.server")
        self.parent = logging.getLogger("aiohttp")
        self.metrics = metrics

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, http_exceptions.HttpProcessingError):
            self._malformed(exc_info, args)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """aiohttp logs a bad method in a connection's first request line (TLS or other
        non-HTTP bytes sent to the port) at DEBUG, apart from the other malformed
        requests: it is one too, counted and logged as they are."""
        exc_info = kwargs.get("exc_info")
        if isinstance(exc_info, http_exceptions.HttpProcessingError):
            self._malformed(exc_info, args)
            return
        super().debug(msg, *args, **kwargs)

    def _malformed(
        self, exc: http_exceptions.HttpProcessingError, args: tuple[object, ...]
    ) -> None:
        if self.metrics is not None:
            self.metrics.malformed_requests_total.inc()
        remote = args[0] if args else "?"
        reason = exc.message or type(exc).__name__
        self.warning("malformed HTTP request from %s: %s", remote, reason.splitlines()[0])


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER


def hide_server_version(app: web.Application) -> None:
    """`Server: postflight` on every response. The routed ones through the documented
    `on_response_prepare` signal; the parser's own 400s never reach an application,
    and aiohttp offers no setting for them, so its default is replaced too (pinned by
    tests/api/test_edges.py)."""
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
    app.on_response_prepare.append(_server_header)

"""`GET /metrics` rendered off the event loop, one rendering shared by concurrent scrapes.

At thousands of environments one exposition is over 10^5 lines (5,000 windows: 14 MB,
1.5 s of CPU): rendered on the loop, as `prometheus_client.aiohttp` does, every round
due meanwhile waited for it. In a worker thread the loop gets the interpreter back every
switch interval (5 ms). Must not touch the metrics' values: it only reads them, as the
library's own exposition does (a parent's children are copied under its lock).
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


class Exposition:
    """Renders a registry in a worker thread; scrapes that arrive while one rendering of
    the same format and names is under way get its bytes instead of a second one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._pending: dict[tuple[str, tuple[str, ...]], asyncio.Future[bytes]] = {}

    async def render(self, accept: str, names: tuple[str, ...] = ()) -> tuple[bytes, str]:
        """(body, content type) for an `Accept` header and optional `name[]` filters."""
        encoder, content_type = choose_encoder(accept)
        key = (content_type, names)
        pending = self._pending.get(key)
        if pending is None:
            registry = self._registry.restricted_registry(names) if names else self._registry
            pending = asyncio.ensure_future(asyncio.to_thread(encoder, registry))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # shielded: a scraper that hangs up does not cancel the others' rendering
        return await asyncio.shield(pending), content_type

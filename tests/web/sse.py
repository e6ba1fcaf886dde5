"""A small Server-Sent Events reader for tests (the wire format, parsed by hand)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from tests.e2e.conftest import RunningAgent


@dataclass
class Event:
    name: str
    data: Any
    id: str | None = None


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """Each event of the stream, until the server ends it."""
    name, data = "message", list[str]()
    last_id: str | None = None
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)), last_id)
            name, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("id:"):
            last_id = line[3:].strip()  # kept for the events after it, as EventSource does
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())


def drop_connections(agent: RunningAgent) -> None:
    """Cut every connection the agent's server holds, a page's live stream among them, as
    a network drop does: the page must reconnect on its own."""
    assert agent.runner is not None and agent.runner.server is not None
    for connection in agent.runner.server.connections:
        if connection.transport is not None:
            connection.transport.abort()

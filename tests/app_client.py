"""The type of aiohttp's test client of an agent app, spelled once for every test."""

from __future__ import annotations

from typing import TypeAlias

from aiohttp import web
from aiohttp.test_utils import TestClient

AppClient: TypeAlias = TestClient[web.Request, web.Application]
"""What `aiohttp_client(app)` and `TestClient(TestServer(app))` give: a bare `TestClient`
is generic, which mypy --strict refuses."""

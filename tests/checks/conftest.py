"""Fixtures for the check tests: a real local target server and shared client sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpServer
from yarl import URL

from checks.base import CheckContext
from checks.sessions import TargetSessions
from tests.checks.check_target import MakeContext, target_app
from tests.self_signed import self_signed

ON_BOTH_LOOPS = {"test_checks_wire.py", "test_checks_http.py"}
"""Modules whose tests run on asyncio's loop and on uvloop's (the Docker image's loop: its
transports are not asyncio's classes, and the lean client must work on both)."""


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook: the loops a test runs on (one unless its module is listed)."""
    loops: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if item.path.name in ON_BOTH_LOOPS:
        import uvloop  # a dev dependency

        loops["uvloop"] = uvloop.new_event_loop
    return loops


@pytest.fixture
async def sessions() -> AsyncIterator[TargetSessions]:
    async with TargetSessions() as s:
        yield s


@pytest.fixture
async def target(aiohttp_server: AiohttpServer) -> URL:
    """Base URL of a running target (see `target_app`)."""
    server = await aiohttp_server(target_app())
    return server.make_url("")


@pytest.fixture
def make_ctx(sessions: TargetSessions) -> MakeContext:
    def make(base_url: URL | str, *, verify_tls: bool = True, **kw: object) -> CheckContext:
        base = str(base_url)
        return CheckContext(
            base_url=base,
            session=sessions.get(base, verify_tls),
            environment="test",
            **kw,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 that expires in 5 days (cert, key)."""
    return self_signed(tmp_path_factory.mktemp("tls"))

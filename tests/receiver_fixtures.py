"""The receivers of `tests.receivers` as pytest fixtures, each started for a test and
stopped after it (a plugin of the suite: `tests/conftest.py`'s `pytest_plugins`).

Apart from `tests.receivers` so that a receiver run as its own process (`python -m
tests.receivers`: the kill -9, chaos and replica tests' rollback receivers and targets)
does not import pytest, which it never uses: 0.1-0.2 s of CPU a start."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from tests.receivers import HangingServer, JsonSink, Reply, RollbackReceiver, SmtpSink


@pytest.fixture
async def rollback_receiver() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await rollback_receiver(secret, script=(503, 200))` → a started
    `RollbackReceiver`, stopped after the test."""
    started: list[RollbackReceiver] = []

    async def make(
        secret: str = "test-secret", script: Iterable[Reply | int | str] = (), **kw: Any
    ) -> RollbackReceiver:
        receiver = RollbackReceiver(secret, script, **kw)
        await receiver.start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def json_sink() -> AsyncIterator[JsonSink]:
    sink = JsonSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    await sink.start()
    yield sink
    await sink.stop()


@pytest.fixture
async def hanging_server() -> AsyncIterator[HangingServer]:
    server = HangingServer()
    await server.start()
    yield server
    await server.stop()

"""One expensive process a worker's tests share (a real Prometheus, a Chromium), started for
the first test that asks for it and stopped after the last: kept to the worker's end, it ran
beside every later test of the worker (a Prometheus' scrapes every 500 ms; a browser's
helper processes), and one a module paid a start and a stop a module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import pytest

T = TypeVar("T")


class SharedUntilLastUser(Generic[T]):
    """The process of the tests of xdist group `group` or of those asking for `fixture`:
    `get` starts it once, `after` (from a `pytest_runtest_teardown` wrapper, after the test's
    own fixtures) stops it when the next test is neither, `stop` at the session's end."""

    def __init__(self, group: str, fixture: str, stop: Callable[[T], None]) -> None:
        self.group, self.fixture, self._stop = group, fixture, stop
        self._running: list[T] = []

    def get(self, start: Callable[[], T]) -> T:
        if not self._running:
            self._running.append(start())
        return self._running[0]

    def needed_by(self, item: pytest.Item) -> bool:
        in_group = any(m.args[:1] == (self.group,) for m in item.iter_markers("xdist_group"))
        return in_group or self.fixture in getattr(item, "fixturenames", ())

    def after(self, nextitem: pytest.Item | None) -> None:
        if self._running and (nextitem is None or not self.needed_by(nextitem)):
            self.stop()

    def stop(self) -> None:
        while self._running:
            self._stop(self._running.pop())

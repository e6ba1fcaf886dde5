"""The shared Prometheus (`tests/prometheus.py`) stops after the last test that uses it,
not at the session's end: left running, its scrapes every 500 ms ran beside every later
test of its worker, and its loop's connection task was one under way in the worker that
none of those tests had started (the soak census counted it, as `start`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.prometheus import prometheus_binary

ROOT = Path(__file__).resolve().parents[1]

SESSION = [
    *("-p", "tests.prometheus", "-p", "no:cacheprovider"),
    *("-p", "no:schemathesis", "-p", "no:anyio", "-p", "no:xdist"),
    *("-o", "asyncio_default_fixture_loop_scope=function"),
]

TESTS = """
import threading


def _stack_threads():
    return [t for t in threading.enumerate() if t.name == "prometheus-stack"]


FIRST = []


def test_a_query(prometheus_stack):
    FIRST.append(prometheus_stack)
    assert prometheus_stack.scrapes > 0 and _stack_threads()


def test_another_query(prometheus_stack):
    assert prometheus_stack is FIRST[0]  # the same stack: one 5 s start for both


def test_one_that_needs_none():
    assert _stack_threads() == []
"""


@pytest.mark.skipif(prometheus_binary() is None, reason="needs the prometheus binary")
@pytest.mark.timeout(120)
def test_the_stack_stops_after_the_last_test_that_uses_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_stack=TESTS)
    pytester.runpytest_subprocess(*SESSION).assert_outcomes(passed=3)

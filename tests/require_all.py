"""A pytest plugin: with POSTFLIGHT_REQUIRE_ALL=1 (CI), any test that did not run is a failure.

CI installs every system binary the tests need, so a skip there means something is
missing and must not pass silently. That covers every way a test can avoid running:
a skip or `skipif` at set-up or in the test, a module-level `pytest.importorskip`
or `pytest.skip(allow_module_level=True)` (a collection-time skip), and xfail
(strict or not, expected failures and unexpected passes alike: CI wants neither).
The variable is read when each report is made, so the plugin's own tests can set it.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

VARIABLE = "POSTFLIGHT_REQUIRE_ALL"


def required() -> bool:
    return os.environ.get(VARIABLE) == "1"


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not required():
        return
    xfail = getattr(report, "wasxfail", None)
    if xfail is not None:
        what = "xfailed" if report.skipped else "xpassed"
        report.outcome = "failed"
        report.longrepr = f"{what} while {VARIABLE}=1 (xfail is not allowed in CI): {xfail}"
        del report.wasxfail
    elif report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped while {VARIABLE}=1: {_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if required() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"collection skipped while {VARIABLE}=1: {_reason(report)}"

"""Deploy-page tests: a real agent (the e2e harness) and a real headless Chromium.

The browser is the system's Debian `chromium`, one process for them all
(`tests.web.chromium`, `chromium_process`) on the one worker the browser tests share
(`ONE_CHROMIUM`), driven through Playwright's Python API over the DevTools protocol
(`playwright install` is never run); each test gets fresh browser contexts. Without it
the browser tests skip and say why; with POSTFLIGHT_REQUIRE_ALL=1 (CI) such a skip is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory, RunningAgent, flip_target, start_agent
from tests.receivers import JsonSink
from tests.web.chromium import ChromiumProcess
from tests.web.target import JourneyTarget, journey_environment
from tests.worker_shared import SharedUntilLastUser

__all__ = ["flip_target", "start_agent"]

ALERTING = """
alerting:
  channels:
    - url: {url}
      tags: [oncall]
"""

CHROMIUM = os.environ.get("POSTFLIGHT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Playwright's launch added these; started without it, the browser needs them said:
    # a page in a second context must not have its timers or rendering slowed
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
]
HAVE_CHROMIUM = Path(CHROMIUM).exists()
ONE_CHROMIUM = pytest.mark.xdist_group("chromium")
"""The browser tests run on one pytest-xdist worker (`--dist loadgroup`), which starts the
one Chromium they share (`chromium_process`); spread over the workers, as they were, two
or three workers each started their own (a start, 5-8 s at load 5, and its stop)."""
SCREENS = os.environ.get("POSTFLIGHT_SCREENS")
"""When set (manual runs), screenshots are also copied into this directory."""


BrowserFactory = Callable[..., Awaitable[Any]]
JourneyAgent = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
async def journey() -> AsyncIterator[JourneyTarget]:
    target = JourneyTarget()
    await target.start()
    yield target
    await target.stop()


@pytest.fixture
def journey_agent(
    start_agent: AgentFactory, journey: JourneyTarget, rollback_receiver: Any, json_sink: JsonSink
) -> JourneyAgent:
    """Factory: `await journey_agent(server="", **environment)` → an agent watching the
    journey target (`journey_environment`'s keywords), alerting to `json_sink`, rolling
    back to a real receiver."""

    async def start(server: str = "", **environment: str) -> RunningAgent:
        receiver = await rollback_receiver(SECRET)
        return await start_agent(
            journey_environment(journey, receiver.url, SECRET, **environment),
            ALERTING.format(url=json_sink.url()),
            server=server,
        )

    return start


_SHARED: SharedUntilLastUser[ChromiumProcess] = SharedUntilLastUser(
    "chromium", "chromium_process", ChromiumProcess.stop
)
"""This worker's Chromium while its browser tests run (one at most)."""


@pytest.fixture
def chromium_process() -> ChromiumProcess:
    """This worker's Chromium (each test opens its own contexts in it): started for the
    first test that asks for it, kept while the next test is of `ONE_CHROMIUM`'s group or
    asks for it too, stopped after the last such (`pytest_runtest_teardown`). One a module,
    as it was, the six browser modules each paid a start and a stop (2-4 s at load 25)."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"no chromium at {CHROMIUM} (Debian package `chromium`)")
    return _SHARED.get(lambda: ChromiumProcess(CHROMIUM, CHROMIUM_ARGS).start())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Stop Chromium once the tests that share it are done (after the test's own fixtures,
    which close its contexts), not at the worker's end: as `tests.prometheus` does, so no
    later test of the worker runs beside an idle browser and its helper processes."""
    yield
    _SHARED.after(nextitem)


def pytest_sessionfinish() -> None:
    _SHARED.stop()  # a run cut short


@pytest.fixture
async def chromium(chromium_process: ChromiumProcess) -> AsyncIterator[BrowserFactory]:
    """Factory: `await chromium(javascript=True)` → a fresh browser context (no cookies,
    storage or cache shared with any other) in the module's Chromium; all are closed after
    the test."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as pw:
        browser = await pw.chromium.connect_over_cdp(chromium_process.endpoint)
        contexts: list[Any] = []

        async def open_context(*, javascript: bool = True) -> Any:
            context = await browser.new_context(
                viewport={"width": 1000, "height": 900}, java_script_enabled=javascript
            )
            contexts.append(context)
            return context

        try:
            yield open_context
        finally:
            for context in contexts:
                await context.close()
            await browser.close()  # over CDP: disconnects, and leaves the process running


@pytest.fixture
async def browser(chromium: BrowserFactory) -> Any:
    """A Chromium context with JavaScript on."""
    return await chromium()


async def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """A full-page PNG as a test artifact (and a copy under $POSTFLIGHT_SCREENS)."""
    path = tmp_path / f"{name}.png"
    png = await page.screenshot(path=str(path), full_page=True)
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    if SCREENS:
        await asyncio.to_thread(_keep, path, Path(SCREENS))
    return path


def _keep(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / path.name)

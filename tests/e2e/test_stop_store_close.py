"""Contract §1's stop, when the SQLite store's close is still running late in the stop: the
store's threads (aiosqlite's, one per connection) end only with its close, and the process
waits for them at its exit all the same, so the stop waits for the close to its end, never
cancels it; the hard bound (`server.shutdown_timeout`) still ends the process.

Before, the stop cut the close like any other step's work (cancelled at its grace's end,
1/16 of the budget before it): the cancelled call's work went on in the thread, which,
done, told the loop `run` had closed meanwhile (aiosqlite's `call_soon_threadsafe`), and
`RuntimeError: Event loop is closed` was printed with its traceback in the daemon's log;
the connections were never closed (seen once under two CPU hogs, a provider's close
hanging, which leaves the store the budget's last part)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.e2e.crash import free_port, request_json
from tests.e2e.plugin_agent import records, start, state_after_restart
from tests.e2e.test_stop_stuck_parts import PLUGIN, SHUTDOWN_TIMEOUT_S, config
from tests.plugin_site import install_distribution

pytestmark = pytest.mark.e2e

SLOW_CLOSE = '''

import logging
import time as _time

from agent.store.sqlite import SqliteStore

_close = SqliteStore._close


async def _slow_close(self):
    """The writer's thread busy for 0.75 s as the close begins (a checkpoint on a loaded
    disk): the close, begun some 1 s before the budget's end (8 s less 1/16), runs past
    the old code's cut of it (0.5 s before that end)."""
    if self._db is not None:
        await self._db._execute(_time.sleep, 0.75)
    await _close(self)
    logging.getLogger("postflight").info("test: the store closed")


SqliteStore._close = _slow_close
'''


@pytest.mark.timeout(90)
def test_a_store_close_running_at_the_budgets_end_is_waited_for_not_left_to_a_closed_loop(
    tmp_path: Path,
) -> None:
    """A provider whose close hangs takes the stop's budget but the store's share; the
    store's close then runs 0.75 s on its thread (`shutdown_timeout: 8s`, the default).
    The daemon exits 0 within the bound, the store closed, with no traceback in its log
    (the old code's: `Event loop is closed`), and the next start has the window."""
    site = tmp_path / "site"
    install_distribution(
        site,
        "postflight-slow-store",
        "[postflight.providers]\nhangclose = slow_store:HangingCloseProvider\n",
    )
    (site / "slow_store.py").write_text(PLUGIN + SLOW_CLOSE)
    port = free_port()
    started = tmp_path / "started"
    path = config(tmp_path, port, "provider", started)
    text = path.read_text()
    path.write_text(
        text.replace(f"shutdown_timeout: {SHUTDOWN_TIMEOUT_S}s", "shutdown_timeout: 8s")
    )
    assert "shutdown_timeout: 8s" in path.read_text()
    log = tmp_path / "agent.log"
    agent = start(path, log, site)
    try:
        url = f"http://127.0.0.1:{port}/v1/deploys"
        deploy = request_json("POST", url, {"environment": "production", "version": "v2"})
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=8.0 + 1.0) == 0, log.read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    text = log.read_text()
    assert "Traceback" not in text and "Event loop is closed" not in text, text
    said = [r["msg"] for r in records(log)]
    assert [m for m in said if m.startswith("stopping: closing provider hangclose")], said
    assert "test: the store closed" in said, [m for m in said if "stop" in m]

    assert state_after_restart(path, log, site, f"{url}/{deploy['id']}") == "watching"

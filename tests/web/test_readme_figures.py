"""The figures the README's deploy page section gives are the code's: the behaviours are
tested against the constants (`tests/web/test_event_snapshot.py`, the browser tests), so a
constant changed without the README, or the README without the code, fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.web import access, events, reader
from tests.readme import section

ROOT = Path(__file__).resolve().parents[2]


def test_the_deploy_page_sections_figures_are_the_codes() -> None:
    said = section("The deploy page")
    assert f"A `: keep-alive` comment follows {events.HEARTBEAT_S:g} s without an event" in said
    assert events.CLIENT_CHECK_S == 1.0
    assert "a client gone ends its stream within a second" in said
    assert f"one that reads nothing for {events.WRITE_TIMEOUT_S:g} s is dropped" in said
    low, high = (ms / 1000 for ms in events.RETRY_MS)
    assert f"`retry:` {low:g}-{high:g} s, drawn per stream" in said
    assert f"every {reader.RECHECK_S:g} s without news" in said
    assert f"for {access.SESSION_TTL_S / 3600:g} hours or until that API token" in said


def test_the_page_scripts_retry_is_the_readmes() -> None:
    """ "an agent not ready yet (`503`) is retried, waiting 1 s, doubling to 30 s"."""
    said = section("The deploy page")
    script = (ROOT / "agent" / "web" / "static" / "page.js").read_text()
    first = int(re.search(r"wait = (\d+);", script)[1])  # type: ignore[index]
    most = int(re.search(r"wait = Math\.min\(wait \* 2, (\d+)\)", script)[1])  # type: ignore[index]
    assert f"is retried, waiting {first / 1000:g} s, doubling to {most / 1000:g} s" in said


def test_the_live_parts_refetch_is_the_readmes() -> None:
    """ "A fetch of the live part refused likewise (`503`) or unanswered … waiting its
    `Retry-After`, doubling to 30 s"."""
    said = section("The deploy page")
    script = (ROOT / "agent" / "web" / "static" / "page.js").read_text()
    most = int(re.search(r"refetch = Math\.min\(refetch \* 2, (\d+)\)", script)[1])  # type: ignore[index]
    assert 'r.headers.get("Retry-After")' in script
    assert f"waiting its `Retry-After`, doubling to {most / 1000:g} s" in said


def test_an_alert_still_sent_is_fetched_again_doubling_for_5_minutes_at_most() -> None:
    """ "fetched again until it is sent or failed (1 s, doubling to 30 s, 5 minutes at
    most)": page.js's own `unsettled`, run in Node with an alert that stays `sending` and
    each wait fired at once. Its budget was checked before each wait, not with it: the
    last wait ended 301 s in."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node (Debian package nodejs) is not installed")
    said = section("The deploy page")
    assert "(1 s, doubling to 30 s, 5 minutes at most)" in said
    script = (ROOT / "agent" / "web" / "static" / "page.js").read_text()
    start = script.index("  function unsettled() {")
    unsettled = script[start : script.index("\n  }\n", start) + 4]
    harness = (
        "var done = true, pause = null, settle = 1000, settling = 0, queue = [], waits = [];\n"
        "var live = {querySelector: function () { return {}; }};  // an alert still sending\n"
        "function setTimeout(f, ms) { waits.push(ms); queue.push(f); return waits.length; }\n"
        "function refresh() { unsettled(); }  // the fetch: the alert is still sending\n"
        f"{unsettled}\n"
        "unsettled();\n"
        "while (queue.length && waits.length < 100) queue.shift()();\n"
        "console.log(JSON.stringify(waits));\n"
    )
    ran = subprocess.run([node, "-e", harness], capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    waits = json.loads(ran.stdout)
    assert waits[:6] == [1000, 2000, 4000, 8000, 16000, 30000], waits
    assert set(waits[5:-1]) == {30000}, waits
    assert sum(waits) == 300_000, (sum(waits), waits)  # fetched again for 5 minutes, no more

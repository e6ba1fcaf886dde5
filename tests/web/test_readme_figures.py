"""The figures the README's deploy page section gives are the code's: the behaviours are
tested against the constants (`tests/web/test_event_snapshot.py`, the browser tests), so a
constant changed without the README, or the README without the code, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from agent.web import access, events, reader

ROOT = Path(__file__).resolve().parents[2]


def section(title: str) -> str:
    """The README's section, its lines joined, as a reader reads it."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())


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

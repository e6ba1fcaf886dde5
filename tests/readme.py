"""The README as the tests that hold it to the code read it: one section at a time, its
lines joined, so a sentence re-wrapped in the README still matches its test."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    """The section under `## {title}`, up to the next `## ` heading, its whitespace runs
    (line breaks among them) made single spaces, as a reader reads it."""
    text = README.read_text()
    heading = f"\n## {title}\n"
    assert heading in text, f"the README has no section {title!r}"
    body = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())

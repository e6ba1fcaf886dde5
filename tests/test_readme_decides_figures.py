"""The figures the README's "How Postflight decides" gives are the code's: the behaviour
tests read the constants, so a constant changed without the README (or the README without
the code) fails here."""

from __future__ import annotations

from pathlib import Path

from agent.analysis.describe import change_floor
from agent.settings import AnalysisSettings
from agent.windows.checkpoint import STATE_EVERY
from agent.windows.evidence import RAW_VALUES

ROOT = Path(__file__).resolve().parents[1]


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return " ".join(body.split())


def test_how_postflight_decides_figures_are_the_codes() -> None:
    said = section("How Postflight decides")
    assert f"it is stored every {STATE_EVERY} rounds" in said
    assert f"replays at most the {STATE_EVERY - 1} rounds stored after it" in said
    assert f"Stored rounds keep at most {RAW_VALUES} raw values per rule" in said
    defaults = AnalysisSettings()
    assert f"(`analysis.confidence`, default {defaults.confidence:g}," in said
    assert f"consecutive rounds, default {defaults.failure_limit}, fails the window" in (
        " ".join((ROOT / "README.md").read_text().split())
    )  # the configuration walkthrough's words
    assert change_floor("error_rate") == 0.001 and change_floor("latency_p95") == 0.001
    assert "(floor 0.001 for rates, 1 ms for latencies)" in said

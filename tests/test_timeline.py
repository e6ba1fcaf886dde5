"""The opt-in timeline (`tests/timeline.py`) records each test's span and sums them up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_require_all import PLUGIN
from tests.timeline import TIMELINE_ENV, summary

MODULE = """
import subprocess
import sys
import time

import pytest

@pytest.mark.xdist_group("pair")
def test_first():
    end = time.process_time() + 0.2
    while time.process_time() < end:  # CPU of the worker's own
        pass

def test_second():
    burn = "import time\\nend = time.process_time() + 0.2\\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # CPU of a process it waits for
"""


def test_each_test_is_a_span_in_its_workers_file_and_the_summary_counts_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "timeline"
    monkeypatch.setenv(TIMELINE_ENV, str(out))
    pytester.makepyfile(test_two=MODULE)
    pytester.runpytest(*PLUGIN, "-p", "tests.timeline").assert_outcomes(passed=2)
    records = [json.loads(line) for line in (out / "controller.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["sessionstart", "test", "test", "sessionfinish"]
    first, second = records[1], records[2]
    assert (first["nodeid"], first["group"]) == ("test_two.py::test_first", "pair")
    assert (second["nodeid"], second["group"]) == ("test_two.py::test_second", None)
    assert first["start"] <= first["end"] <= second["start"] <= second["end"]
    assert first["cpu"] >= 0.2 and first["child_cpu"] < 0.1, first
    assert second["child_cpu"] >= 0.2, second
    text = summary(out)
    assert text.startswith("2 tests, the last ended at "), text
    assert "test_two.py::test_second" in text and "  pair " in text, text
    assert "tests that took the most CPU" in text, text


def test_without_the_variable_nothing_is_written(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TIMELINE_ENV, raising=False)
    pytester.makepyfile(test_two=MODULE)
    pytester.runpytest(*PLUGIN, "-p", "tests.timeline").assert_outcomes(passed=2)
    assert not list(pytester.path.rglob("*.jsonl"))

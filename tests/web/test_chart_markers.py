"""A chart of more rounds than its plot can mark one by one (a 12 h window at 60 s: 720
rounds on 560 px) draws its line, and marks only the rounds past the bound and the
latest: every round's circle and tooltip, drawn on top of each other, made a page of 50
rules 11 MB (`bench/page_size.py`), fetched again by every open page on each round."""

from __future__ import annotations

import re

import pytest

from agent.web.charts import evidence_chart, rounds_chart
from agent.web.pages import _templates


def drawn(chart: object) -> str:
    macro = _templates().from_string('{% from "chart.html" import chart %}{{ chart(c, "x") }}')
    return macro.render(c=chart)


def test_a_long_window_s_chart_marks_its_bad_rounds_and_its_latest_only() -> None:
    observed = [(n, 0.2 if n in (300, 301) else 0.01) for n in range(1, 721)]
    past = [v > 0.05 for _, v in observed]
    chart = rounds_chart(
        "errors", observed, fmt=str, baseline=0.01, bounds=[("max", 0.05)], breach=past
    )
    svg = drawn(chart)
    assert svg.count("<circle") == 1 and "round 720: 0.01" in svg  # the latest
    assert len(re.findall(r'<rect class="point point-breach"', svg)) == 2  # squares, as said
    assert "round 300: 0.2 (past the bound)" in svg
    line = re.search(r'<polyline[^>]*points="([^"]+)"', svg)
    assert line is not None and len(line.group(1).split()) == 720  # the series, whole
    assert len(svg) < 20_000, len(svg)

    evidence = drawn(evidence_chart("errors", [(n, 1.0 + n / 100) for n in range(1, 721)], 100.0))
    assert evidence.count("<circle") == 1 and "round 720: e-value 8.2" in evidence


@pytest.mark.parametrize(("rounds", "circles"), [(60, 60), (93, 93), (94, 1)])
def test_a_window_of_rounds_the_plot_has_room_for_marks_each_one(rounds: int, circles: int) -> None:
    """The README's 'past 93 rounds' (560 px of plot, 6 px a marker)."""
    observed = [(n, 0.01) for n in range(1, rounds + 1)]
    chart = rounds_chart("errors", observed, fmt=str, baseline=None, bounds=[("max", 0.05)])
    svg = drawn(chart)
    assert svg.count("<circle") == circles and f"round {rounds}: 0.01" in svg

"""Where a chart's reference lines are labelled: each label readable, none on another."""

from __future__ import annotations

import itertools

import pytest

from agent.web.charts import LABEL_HEIGHT, Chart, evidence_chart, rounds_chart


def label_rows(chart: Chart) -> list[float]:
    return sorted(line.label_y for line in chart.lines if line.kind != "zero")


@pytest.mark.parametrize(
    ("baseline", "bounds"),
    [
        (0.0989, [("max", 0.1)]),  # a failed window's page: "baseline 9.89%" on "max 10%"
        (0.1, [("max", 0.1)]),
        (0.05, [("min", 0.049), ("max", 0.051)]),
        (0.0, [("max", 0.001)]),  # both at the bottom of the plot
    ],
)
def test_labels_of_lines_close_together_do_not_overlap(
    baseline: float, bounds: list[tuple[str, float]]
) -> None:
    """Each label sat 4 px above its own line, so a baseline within a few pixels of a
    bound wrote its label over the bound's (`baselinem9.89%`, seen on a failed window)."""
    chart = rounds_chart("errors", [(1, 1.0), (2, 1.0)], fmt=str, baseline=baseline, bounds=bounds)
    rows = label_rows(chart)
    assert len(rows) == len(bounds) + 1
    assert all(b - a >= LABEL_HEIGHT for a, b in itertools.pairwise(rows)), rows
    _, top, _, bottom = chart.plot
    assert all(top + LABEL_HEIGHT - 4 <= y <= bottom - 2 for y in rows), (rows, top, bottom)


def test_a_label_with_room_stays_just_above_its_line() -> None:
    chart = rounds_chart("errors", [(1, 0.5)], fmt=str, baseline=0.0, bounds=[("max", 0.5)])
    assert [line.label_y for line in chart.lines] == [line.y - 4 for line in chart.lines]
    evidence = evidence_chart("evidence", [(1, 2.0)], needed=200.0)
    assert [line.label_y for line in evidence.lines] == [line.y - 4 for line in evidence.lines]

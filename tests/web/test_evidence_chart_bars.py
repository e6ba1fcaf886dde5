"""The evidence chart of a rule whose bar changed within the window (a README walk-through:
the page showed "1.5e+03 needed" at round 1, the verdict "45,000 needed" at round 14): each
round's point is the more advanced of the rule's two runs, the run from the deploy (1 /
alpha) or its e-detector (rounds / alpha), so each is read against its own round's bar, and
the chart says the bar changed and why, not one line drawn as if every point needed it."""

from __future__ import annotations

from agent.analysis.types import Rule
from agent.web.charts import evidence_chart
from tests.web.views import page_view, rounds, window


def test_points_read_against_their_own_rounds_bar_and_the_change_is_said() -> None:
    ratios = [(1, 1.5), (2, 1_200.0), (3, 40.0), (4, 30_000.0)]
    needs = {1: 1_500.0, 2: 1_500.0, 3: 45_000.0, 4: 45_000.0}
    chart = evidence_chart("probe-errors: evidence toward failing", ratios, 45_000.0, needs=needs)
    labels = [p[2] for p in chart.series[0]]
    assert labels[1] == "round 2: e-value 1,200 of 1,500 needed", labels
    assert labels[3] == "round 4: e-value 30,000 of 45,000 needed", labels
    said = chart.description
    assert "the rule fails when it reaches 45,000" in said, said
    assert "rounds 1-2 needed 1,500" in said, said
    assert "e-detector" in said and "any round" in said, said


def test_a_point_past_its_own_bar_is_marked_past_it() -> None:
    """Round 2's 2,000 was past its 1,500 (the run from the deploy failed there): a line
    at the latest 45,000 read it as short of it."""
    ratios = [(1, 1.5), (2, 2_000.0)]
    chart = evidence_chart("e", ratios, 45_000.0, needs={1: 1_500.0, 2: 1_500.0})
    assert [p[3] for p in chart.series[0]] == [False, True]


def test_one_bar_all_window_reads_as_before() -> None:
    chart = evidence_chart("e", [(1, 2.0), (2, 3.0)], 200.0, needs={1: 200.0, 2: 200.0})
    assert chart.description.endswith("the rule fails when it reaches 200."), chart.description
    assert [p[2] for p in chart.series[0]] == ["round 1: e-value 2", "round 2: e-value 3"]


def test_the_deploy_page_reads_each_stored_rounds_bar() -> None:
    """The page (`deploy_view`) from stored rounds as the daemon stores them (each round's
    `likelihood_ratio` and `likelihood_ratio_needed`), the verdict's bar the detector's."""
    rule = Rule(name="errors", source="checks", metric="error_rate", max=0.05)
    stored = rounds()
    for record, (lr, need) in zip(stored, ((1_200.0, 1_500.0), (50_000.0, 45_000.0)), strict=True):
        record.summary["rules"]["errors"] |= {
            "likelihood_ratio": lr,
            "likelihood_ratio_needed": need,
        }
    verdict = {
        "outcome": "fail",
        "reason": "errors failed",
        "rules": [
            {
                "name": "errors",
                "source": "checks",
                "metric": "error_rate",
                "outcome": "fail",
                "observed": 0.2,
                "baseline": 0.96,
                "threshold": "max 0.05",
                "evidence": {
                    "policy": "sequential",
                    "likelihood_ratio": 50_000.0,
                    "likelihood_ratio_needed": 45_000.0,
                },
            },
        ],
    }
    view = page_view(window(verdict=verdict), stored, [rule])
    chart = next(c for c in view.rules[0].charts if c.kind == "evidence")
    assert "the rule fails when it reaches 45,000" in chart.description, chart.description
    assert "round 1 needed 1,500" in chart.description, chart.description
    assert chart.series[0][0][2] == "round 1: e-value 1,200 of 1,500 needed"


def test_the_bar_reads_as_the_verdict_says_it() -> None:
    """The example's bar, 1 / 0.001 (999.9999999999989 in floating point), read "threshold
    1e+03" and "the rule fails when it reaches 1e+03" on a new user's page, beside the
    verdict's "1,000 needed" and "2,344 to 1": the chart writes its figures as the verdict
    does."""
    chart = evidence_chart("probe-errors: evidence toward failing", [(1, 2343.7)], 1 / 0.001)
    labels = [line.label for line in chart.lines]
    assert "threshold 1,000" in labels, labels  # was "threshold 1e+03"
    assert chart.description.endswith("the rule fails when it reaches 1,000."), chart.description
    assert chart.series[0][0][2] == "round 1: e-value 2,344", chart.series[0][0][2]

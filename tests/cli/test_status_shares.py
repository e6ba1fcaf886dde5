"""The `status` table writes a rate as an alert does: the live run's new user read a
baseline of `0.0187` in the table where the breach alert said `1.875%` of the same figure."""

from __future__ import annotations

from agent.api.models import RuleOutcome, RuleResult
from agent.cli.render import Style, _bounds, rules_table
from common.units import format_value


def row(metric: str, outcome: RuleOutcome, figures: tuple[float, float], threshold: str) -> str:
    """The table's row of one rule, `figures` its observed and baseline values."""
    observed, baseline = figures
    rule = RuleResult(
        name="rule",
        source="checks",
        metric=metric,
        outcome=outcome,
        observed=observed,
        baseline=baseline,
        threshold=threshold,
    )
    return rules_table([rule], Style(color=False)).splitlines()[1]


def test_a_rates_figures_read_in_the_table_as_in_its_alert() -> None:
    shown = row("error_rate", "fail", (0.0525, 0.01875), "max 0.05")
    # the alert's own words for these figures (alerting.templates, as the deploy page's)
    assert "1.875%" in shown and format_value("error_rate", 0.01875) == "1.875%"
    assert "5.25%" in shown
    # the bound in % as the deploy page labels it: `max 0.05` beside `5.25%` made on-call
    # do the sum; the round lines of `register --wait` write it so too
    assert "max 5%" in shown and "max 0.05" not in shown
    assert "0.0187" not in shown


def test_a_rates_bound_reads_in_percent_in_the_round_line() -> None:
    rule = RuleResult(
        name="probe-errors",
        source="checks",
        metric="error_rate",
        outcome="inconclusive",
        observed=0.125,
        baseline=0.01983,
        threshold="max 0.05",
    )
    assert _bounds(rule) == "max 5%"


def test_a_latencys_figures_stay_durations() -> None:
    shown = row("latency_p95", "pass", (0.102, 0.0811), "max_increase 50%")
    assert "102ms" in shown and "81ms" in shown and "max_increase 50%" in shown

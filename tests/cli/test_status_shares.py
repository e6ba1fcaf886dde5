"""The `status` table writes a rate as an alert does: the live run's new user read a
baseline of `0.0187` in the table where the breach alert said `1.875%` of the same figure."""

from __future__ import annotations

from agent.api.models import RuleResult
from agent.cli.render import Style, rules_table
from alerting.templates import format_value


def test_a_rates_figures_read_in_the_table_as_in_its_alert() -> None:
    rule = RuleResult(
        name="probe-errors",
        source="checks",
        metric="error_rate",
        outcome="fail",
        observed=0.0525,
        baseline=0.01875,
        threshold="max 0.05",
    )
    drawn = rules_table([rule], Style(color=False))
    row = drawn.splitlines()[1]
    # the alert's own words for these figures (alerting.templates, as the deploy page's)
    assert "1.875%" in row and format_value("error_rate", 0.01875) == "1.875%"
    assert "5.25%" in row
    assert "max 0.05" in row  # the bound as configured, as the round line writes it
    assert "0.0187" not in row


def test_a_latencys_figures_stay_durations() -> None:
    rule = RuleResult(
        name="latency",
        source="checks",
        metric="latency_p95",
        outcome="pass",
        observed=0.102,
        baseline=0.0811,
        threshold="max_increase 50%",
    )
    row = rules_table([rule], Style(color=False)).splitlines()[1]
    assert "102ms" in row and "81ms" in row and "max_increase 50%" in row

"""What a chart says to a screen reader (its description) counts in words that read."""

from __future__ import annotations

from agent.web.charts import distribution_chart, rounds_chart


def test_one_round_and_one_sample_are_said_in_the_singular() -> None:
    """The first round of a window read `1 rounds with data ... 1 rounds past the bound`,
    and a distribution of one latency `(1 samples)`."""
    chart = rounds_chart(
        "error rate", [(1, 0.5)], fmt=str, baseline=None, bounds=[("max", 0.05)], breach=[True]
    )
    assert "error rate: 1 round with data (" in chart.description, chart.description
    assert " 1 round past the bound." in chart.description, chart.description
    chart = rounds_chart("error rate", [(1, 0.5), (2, 0.6)], fmt=str, baseline=None, bounds=[])
    assert "error rate: 2 rounds with data (" in chart.description, chart.description
    latencies = distribution_chart("latency", [0.1], [0.1, 0.2], fmt=str)
    assert "new (1 sample) p50" in latencies.description, latencies.description
    assert "baseline (2 samples) p50" in latencies.description, latencies.description

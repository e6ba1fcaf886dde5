"""The deploy page's p95 of a round (its rounds table, the per-round chart: the judge's
observation) and the latency distribution chart's p95 for the same round are one figure:
the chart read its quantiles by nearest rank over 40 steps where the judge interpolates
between ranks (`stats.percentile`, numpy's linear), so a one-round window showed 26 ms
beside 27 ms (h4's new-user hour, session 47), and 28 ms beside 29 ms here."""

from __future__ import annotations

import math

import numpy as np

from agent.analysis.observe import observe
from agent.analysis.stats import percentile, percentiles
from agent.analysis.types import Rule
from common.samples import Sample
from tests.web.views import LATENCY_BASELINE, one_latency_round, page_view, window

RULE = Rule(name="latency", source="checks", metric="latency_p95", max=0.5)
LATENCIES_MS = [*range(10, 29), 46]
"""20 probes: the 19th fastest is 28 ms, the slowest 46 ms; p95 interpolated is 28.9 ms."""


def test_a_rounds_p95_reads_the_same_in_the_table_and_the_distribution_chart() -> None:
    samples = [Sample("api", True, ms / 1000) for ms in LATENCIES_MS]
    obs = observe(RULE, samples, 30.0)
    stored = one_latency_round({"value": obs.value, "values": list(obs.values)})
    view = page_view(window(rounds=1, baseline=LATENCY_BASELINE), stored, [RULE])
    (rule,) = view.rules
    in_table = rule.per_round[1]
    (chart,) = [c for c in rule.charts if c.kind == "distribution"]
    assert f"new (20 samples) p50 20ms, p95 {in_table};" in chart.description, (
        in_table,
        chart.description,
    )
    new_p95 = next(p[2] for p in chart.series[0] if p[2].startswith("new p95:"))
    assert new_p95 == f"new p95: {in_table}"


def test_the_charts_quantiles_are_the_judges_percentile() -> None:
    """`stats.percentiles` (the chart's, one sort) is `stats.percentile` (the judge's) at
    every share, on a round's few samples and on the chart's 5,000, non-finite left out."""
    rng = np.random.default_rng(7)
    shares = [i / 40 for i in range(41)]
    for n in (1, 2, 20, 5000):
        values = [float(v) for v in rng.lognormal(-3.0, 0.6, n)]
        assert percentiles([*values, math.inf, math.nan], shares) == [
            percentile(values, q) for q in shares
        ]
    assert percentiles([math.nan], shares) == []

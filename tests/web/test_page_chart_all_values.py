"""The latency distribution chart draws every latency of a round, not the first
`RAW_VALUES` a stored round keeps raw: a round of 200 probes stored its first 50 values
and a histogram of all 200, and the chart drew the 50 (here the fast ones: p95 10 ms
where the round's was 100 ms)."""

from __future__ import annotations

from agent.analysis.observe import observe
from agent.analysis.types import Rule
from agent.web.view import as_drawn
from agent.windows.evidence import RAW_VALUES, bounded_observation_dict
from common.samples import Sample
from tests.web.views import LATENCY_BASELINE, one_latency_round, page_view, window

RULE = Rule(name="latency", source="checks", metric="latency_p95", max=0.5)


def test_the_distribution_chart_draws_every_latency_of_a_round_stored_cut_to_its_raw_values() -> (
    None
):
    latencies = [0.010] * RAW_VALUES + [0.100] * 150  # the first 50 fast, the rest slow
    obs = observe(RULE, [Sample("api", True, s) for s in latencies], 30.0)
    stored = one_latency_round(bounded_observation_dict(obs))
    for rounds in (stored, as_drawn(stored, {})):
        view = page_view(window(rounds=1, baseline=LATENCY_BASELINE), rounds, [RULE])
        (rule,) = view.rules
        (chart,) = [c for c in rule.charts if c.kind == "distribution"]
        assert "new (200 samples) p50 100ms, p95 100ms;" in chart.description, chart.description

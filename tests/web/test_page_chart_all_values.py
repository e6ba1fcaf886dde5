"""The latency distribution chart draws every latency of a round, not the first
`RAW_VALUES` a stored round keeps raw: a round of 200 probes stored its first 50 values
and a histogram of all 200, and the chart drew the 50 (here the fast ones: p95 10 ms
where the round's was 100 ms)."""

from __future__ import annotations

from agent.analysis.observe import observe
from agent.analysis.types import Rule
from agent.records import RoundRecord
from agent.web.view import as_drawn, deploy_view
from agent.windows.evidence import RAW_VALUES, bounded_observation_dict
from common.samples import Sample
from tests.web.test_links_and_view import ID, NOW, window

RULE = Rule(name="latency", source="checks", metric="latency_p95", max=0.5)


def test_the_distribution_chart_draws_every_latency_of_a_round_stored_cut_to_its_raw_values() -> (
    None
):
    latencies = [0.010] * RAW_VALUES + [0.100] * 150  # the first 50 fast, the rest slow
    obs = observe(RULE, [Sample("api", True, s) for s in latencies], 30.0)
    stored = [
        RoundRecord(
            ID,
            1,
            NOW - 29,
            {
                "observations": {"latency": bounded_observation_dict(obs)},
                "rules": {"latency": {"outcome": "pass"}},
                "checks": {},
                "decision": "continue",
            },
        )
    ]
    baseline = {"latency": {"value": 0.02, "values": [ms / 1000 for ms in range(10, 30)]}}
    for rounds in (stored, as_drawn(stored, {})):
        view = deploy_view(
            window(rounds=1, baseline=baseline),
            rounds,
            rules=[RULE],
            rollback=None,
            attempts=[],
            alerts={},
            now=NOW,
        )
        (rule,) = view.rules
        (chart,) = [c for c in rule.charts if c.kind == "distribution"]
        assert "new (200 samples) p50 100ms, p95 100ms;" in chart.description, chart.description

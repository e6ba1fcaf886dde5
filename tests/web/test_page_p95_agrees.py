"""The deploy page's p95 of a round (its rounds table, the per-round chart: the judge's
observation) and the latency distribution chart's p95 for the same round are one figure:
the chart read its quantiles by nearest rank over 40 steps where the judge interpolates
between ranks (`stats.percentile`, numpy's linear), so a one-round window showed 26 ms
beside 27 ms (h4's new-user hour, session 47), and 28 ms beside 29 ms here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agent.analysis.judge import judge
from agent.analysis.observe import observe
from agent.analysis.stats import percentile, percentiles
from agent.analysis.types import Policy, Rule
from agent.records import RollbackIntent, RoundRecord
from agent.web.view import DeployView, deploy_view
from agent.windows.evidence import rule_to_dict
from common.durations import format_duration
from common.samples import Sample
from tests.web.test_links_and_view import ID, NOW, window

RULE = Rule(name="latency", source="checks", metric="latency_p95", max=0.5)
LATENCIES_MS = [*range(10, 29), 46]
"""20 probes: the 19th fastest is 28 ms, the slowest 46 ms; p95 interpolated is 28.9 ms."""


def test_a_rounds_p95_reads_the_same_in_the_table_and_the_distribution_chart() -> None:
    samples = [Sample("api", True, ms / 1000) for ms in LATENCIES_MS]
    obs = observe(RULE, samples, 30.0)
    stored = [
        RoundRecord(
            ID,
            1,
            NOW - 29,
            {
                "observations": {"latency": {"value": obs.value, "values": list(obs.values)}},
                "rules": {"latency": {"outcome": "pass"}},
                "checks": {},
                "decision": "continue",
            },
        )
    ]
    baseline = {"latency": {"value": 0.02, "values": [ms / 1000 for ms in range(10, 30)]}}
    view = deploy_view(
        window(rounds=1, baseline=baseline),
        stored,
        rules=[RULE],
        rollback=None,
        attempts=[],
        alerts={},
        now=NOW,
    )
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


def _judged_page(seed: int, slower: float, *, cut: bool = False) -> tuple[DeployView, float]:
    """Six rounds of 40 probes judged by the real judge (its figure of the window read from
    its sketch), stored as the daemon stores them, then drawn; with the window's p95 of
    every sample. `cut`: its first round stored cut short, as a round of more samples than
    a stored round keeps is."""
    rule = Rule(name="latency", source="checks", metric="latency_p95", max_increase=0.5)
    rng = np.random.default_rng(seed)
    base = observe(rule, [Sample("api", True, v) for v in _lognormal(rng, 0.08, 200)], 300.0)
    rounds, stored, every = [], [], []
    for n in range(1, 7):
        values = _lognormal(rng, 0.08 * slower, 40)
        every += values
        obs = observe(rule, [Sample("api", True, v) for v in values], 30.0)
        rounds.append({"latency": obs})
        kept = {"value": obs.value, "values": list(values)}
        if cut and n == 1:
            kept |= {"values": values[:20], "samples": len(values)}
        summary = {"observations": {"latency": kept}}
        stored.append(RoundRecord(ID, n, NOW - 29 + n, summary | {"decision": "continue"}))
    verdict = judge([rule], {"latency": base}, rounds, Policy(), final=False, horizon=10)
    shown = {
        "outcome": "fail" if verdict.decision == "fail" else "pending",
        "reason": verdict.reason,
        "rules": [rule_to_dict(r) for r in verdict.rules],
    }
    baseline = {"latency": {"value": base.value, "values": list(base.values)}}
    body = json.dumps({"event": "rollback", "reason": verdict.reason})
    failed = verdict.decision == "fail"
    page = deploy_view(
        window(rounds=6, verdict=shown, baseline=baseline),
        stored,
        rules=[rule],
        rollback=RollbackIntent(ID, "delivered", body, NOW) if failed else None,
        attempts=[],
        alerts={},
        now=NOW,
    )
    return page, percentile(every, 0.95)


def _lognormal(rng: np.random.Generator, median: float, n: int) -> list[float]:
    return [round(float(v), 6) for v in rng.lognormal(math.log(median), 0.15, n)]


@pytest.mark.parametrize(("seed", "slower", "judges"), [(16, 2.0, "199ms"), (9, 2.0, "203ms")])
def test_the_windows_p95_reads_as_one_figure_across_the_page(
    seed: int, slower: float, judges: str
) -> None:
    """The judge's figure of the window (its sketch: 203ms) stood beside the distribution
    chart's p95 of the same samples (201ms), in the rule's facts, its detail and the
    verdict's reason; the page now says the chart's figure, the judge's percentile of every
    sample, in each."""
    page, p95 = _judged_page(seed, slower)
    exact = format_duration(p95)
    assert exact != judges  # the case: the sketch's figure is not the samples' p95
    (rule,) = page.rules
    (chart,) = [c for c in rule.charts if c.kind == "distribution"]
    assert "new (240 samples) p50 " in chart.description
    assert f", p95 {exact};" in chart.description
    assert rule.observed == exact
    assert f"latency_p95 {exact}" in rule.detail and judges not in rule.detail
    if page.verdict_outcome == "fail":
        assert f"latency: latency_p95 {exact} >" in page.reason, page.reason
        # the rollback's reason, written from the same verdict, says the same figure
        assert page.rollback_reason is not None
        assert f"latency: latency_p95 {exact} >" in page.rollback_reason
    assert judges not in page.reason


def test_a_window_whose_rounds_were_cut_short_keeps_the_judges_figure() -> None:
    """Without every sample (a round stored cut short) the page has no better figure than
    the judge's: it shows that one, as the alerts and the CLI do."""
    page, _ = _judged_page(9, 2.0, cut=True)
    (rule,) = page.rules
    assert rule.observed == "203ms"
    assert "latency: latency_p95 203ms >" in page.reason

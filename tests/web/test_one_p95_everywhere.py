"""A window's p95 is one figure in every place that shows it: the alert, the rollback
webhook's reason, `postflight status` / `register --wait`, and the deploy page (the rule's
facts, its detail, the verdict's reason, the rollback's reason, the distribution chart).

The judge read its window figure from its quantile sketch (1% buckets) and the page read
its own from the stored rounds' samples: the alert and the webhook said `latency_p95
203ms` where the page said 201ms. The judge now keeps the window's top values
(`agent.analysis.top_values`) and reads the exact p95 from them; past what they can give
it falls back to the sketch, and the page shows the judge's figure, not its own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from agent.analysis.judge import judge
from agent.analysis.observe import observe
from agent.analysis.stats import percentile
from agent.analysis.types import Policy, Rule, Verdict
from agent.api.models import deploy_model
from agent.cli.render import Style, details
from agent.records import RoundRecord
from agent.rollback.contract import rollback_intent
from agent.web.view import DeployView
from agent.windows.evidence import bounded_observation_dict, verdict_to_dict
from alerting.events import Alert
from alerting.templates import render
from common.durations import format_duration
from common.samples import Sample
from tests.web.views import ID, NOW, page_view, window

RULE = Rule(name="latency", source="checks", metric="latency_p95", max_increase=0.5)


@dataclass
class Shown:
    """What each place says of one judged window."""

    verdict: Verdict
    exact: float
    """The p95 of every sample of the window."""
    webhook: dict[str, Any]
    alert: str
    cli: str
    page: DeployView


def _shown(seed: int, rounds: int, per_round: int) -> Shown:
    """`rounds` rounds of `per_round` probes twice as slow as the baseline, judged by the
    real judge, stored as the daemon stores them (`bounded_observation_dict`: a round of
    more than 50 keeps 50 raw values and a histogram), then said by each place."""
    rng = np.random.default_rng(seed)
    base = observe(RULE, [Sample("api", True, v) for v in _lognormal(rng, 0.08, 200)], 300.0)
    observed, stored, every = [], [], []
    for n in range(1, rounds + 1):
        values = _lognormal(rng, 0.16, per_round)
        every += values
        obs = observe(RULE, [Sample("api", True, v) for v in values], 30.0)
        observed.append({"latency": obs})
        summary = {"observations": {"latency": bounded_observation_dict(obs)}}
        stored.append(RoundRecord(ID, n, NOW - 600 + n, summary | {"decision": "continue"}))
    verdict = judge([RULE], {"latency": base}, observed, Policy(), final=True, horizon=rounds)
    assert verdict.decision == "fail", verdict.reason
    shown = verdict_to_dict(verdict, decided_at=NOW)
    baseline = {"latency": {"value": base.value, "values": list(base.values)}}
    ended = window(rounds=rounds, verdict=shown, baseline=baseline, state="rolled_back")
    breaches = [r for r in shown["rules"] if r["outcome"] == "fail"]
    intent = rollback_intent(ended, verdict.reason, breaches, NOW)
    alert = Alert(
        event="rollback_requested",
        environment="production",
        version="v2",
        deploy_id=ID,
        reason=verdict.reason,
        rules=breaches,
    )
    page = page_view(ended, stored, [RULE], rollback=intent)
    return Shown(
        verdict=verdict,
        exact=percentile(every, 0.95),
        webhook=json.loads(intent.body),
        alert="\n".join(render(alert)),
        cli=details(deploy_model(ended, intent), Style()),
        page=page,
    )


def _lognormal(rng: np.random.Generator, median: float, n: int) -> list[float]:
    return [round(float(v), 6) for v in rng.lognormal(math.log(median), 0.15, n)]


@pytest.mark.parametrize(
    ("seed", "rounds", "per_round"),
    [(9, 6, 40), (16, 6, 40), (9, 6, 60)],
    ids=["240-samples", "240-samples-again", "rounds-cut-short"],
)
def test_the_alert_webhook_cli_and_page_say_the_exact_p95(
    seed: int, rounds: int, per_round: int
) -> None:
    """Failed before: the alert, the webhook's reason and the CLI said the sketch's 203ms
    (seed 9) and 199ms (seed 16) where the page's facts said the samples' 201ms and 198ms;
    with rounds of 60 (stored cut short) all said the sketch's 207ms, the samples' 205ms."""
    shown = _shown(seed, rounds, per_round)
    said = f"latency_p95 {format_duration(shown.exact)}"
    (rule,) = shown.verdict.rules
    assert rule.observed == shown.exact
    _one_figure(shown, said)


def test_past_the_kept_values_every_place_says_the_judges_figure() -> None:
    """A window of 3,500 samples: its p95 reads more top values than the judge keeps, so
    the judge's figure is its sketch's, and the page says that one too. Failed before: the
    page said the samples' 206ms beside the alert's and the webhook's 207ms."""
    shown = _shown(5, 70, 50)
    (rule,) = shown.verdict.rules
    assert rule.observed is not None
    assert format_duration(rule.observed) != format_duration(shown.exact)  # the case
    _one_figure(shown, f"latency_p95 {format_duration(rule.observed)}")


def _one_figure(shown: Shown, said: str) -> None:
    figure = said.split()[-1]
    assert said in shown.verdict.reason
    assert said in str(shown.webhook["reason"])
    (breach,) = shown.webhook["breaches"]
    assert said in breach["detail"]
    assert f"latency: {said}" in shown.alert, shown.alert
    assert f"observed **{figure}**" in shown.alert, shown.alert
    assert said in shown.cli, shown.cli
    page = shown.page
    (rule,) = page.rules
    assert rule.observed == figure
    assert said in rule.detail
    assert said in page.reason
    assert page.rollback_reason is not None and said in page.rollback_reason
    (chart,) = [c for c in rule.charts if c.kind == "distribution"]
    assert f", p95 {figure};" in chart.description, chart.description
    assert any(p[2] == f"new p95: {figure}" for p in chart.series[0])

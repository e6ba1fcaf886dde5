"""The threshold policy passes what did not fail, but a pass rests on a round within the
bound: a rule whose only round with data was past its bound (too few rounds to fail, its
provider answering nothing usable at the others) ends the window `inconclusive`, saying
so, where it passed on that one breaching round. Driven through the daemon's API with a
Prometheus that answers one round's fetch with a 5xx ratio of 50% (max 5%) and 503 to
every other, the truth counted at that Prometheus; and a rule no round of which had its
`min_samples`, judged in none, against a target answering 503 to two requests in five."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget, environment
from tests.e2e.scripted_prometheus import ScriptedPrometheus, judged_with

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_a_threshold_rule_whose_only_round_with_data_breached_is_not_passed(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    prometheus = ScriptedPrometheus("0.5", "503")
    final = await judged_with(
        start_agent,
        flip_target.url,
        prometheus,
        window="2s",
        analysis="{policy: threshold, failure_limit: 3}",
        budget="200ms",
    )
    # counted at Prometheus: one round's fetch had data (past the bound), later ones none (at
    # least one: a loaded host may fit two rounds, not four, in the 2 s window)
    first, *later = prometheus.asked
    assert first == "0.5" and later and set(later) == {"503"}, prometheus.asked
    assert final["rollback"] is None, final
    verdict = final["verdict"]
    rules = {r["name"]: r for r in verdict["rules"]}
    # before: `passed`, "2 of 2 rules passed over 7 rounds", http-5xx `pass` at 50%
    assert final["state"] == "inconclusive", verdict
    assert rules["probe-errors"]["outcome"] == "pass", rules
    ratio = rules["http-5xx"]
    assert ratio["outcome"] == "inconclusive" and ratio["observed"] == 0.5, ratio
    assert "none within it" in ratio["detail"], ratio
    # said first, past its bound (`tests/analysis/test_unproven_reason.py`)
    assert verdict["reason"] == (
        "http-5xx: query 0.5 past max 0.05 in the only round judged, short of the evidence to"
        " fail (1 of 3 rounds needed)"
    ), verdict["reason"]


@pytest.mark.timeout(60)
async def test_a_rule_none_of_whose_rounds_had_its_min_samples_is_not_passed(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    """`min_samples: 20` over rounds of 5 probes: no round is judged on probe-errors, and
    the window passed on its latency rule while two answers in five were 503s. Judged in
    no round, the rule leaves the window `inconclusive`, saying why."""
    starved = "{name: probe-errors, source: checks, metric: error_rate, max: 0.05, min_samples: 20}"
    p95 = "{name: p95, source: checks, metric: latency_p95, max: 2s}"
    flip_target.bad = True
    agent = await start_agent(
        environment("production", flip_target.url, window="1500ms", rules=(starved, p95))
    )
    before = flip_target.requests
    deploy = await agent.register("production", "v2")
    final = await agent.settled(deploy["id"])
    assert flip_target.requests - before >= 10  # counted at the target: probed, 40% 503s
    verdict = final["verdict"]
    rules = {r["name"]: r for r in verdict["rules"]}
    # before: `passed`, "1 of 2 rules passed over 5 rounds, 1 inconclusive"
    assert final["state"] == "inconclusive", verdict
    assert rules["p95"]["outcome"] == "pass", rules
    assert rules["probe-errors"]["outcome"] == "inconclusive", rules
    assert verdict["reason"].endswith(
        "had no round within its bound: probe-errors: no round with at least 20 samples,"
        " so none was judged against its bound"
    ), verdict["reason"]

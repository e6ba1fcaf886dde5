"""The threshold policy passes what did not fail, but a pass rests on a round within the
bound: a rule whose only round with data was past its bound (too few rounds to fail, its
provider answering nothing usable at the others) ends the window `inconclusive`, saying
so, where it passed on that one breaching round. Driven through the daemon's API with a
Prometheus that answers one round's fetch with a 5xx ratio of 50% (max 5%) and 503 to
every other, the truth counted at that Prometheus."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
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
    # counted at Prometheus: one round's fetch had data (past the bound), later ones none
    assert prometheus.asked[0] == "0.5" and prometheus.asked[1:3] == ["503"] * 2, prometheus.asked
    assert final["rollback"] is None, final
    verdict = final["verdict"]
    rules = {r["name"]: r for r in verdict["rules"]}
    # before: `passed`, "2 of 2 rules passed over 7 rounds", http-5xx `pass` at 50%
    assert final["state"] == "inconclusive", verdict
    assert rules["probe-errors"]["outcome"] == "pass", rules
    ratio = rules["http-5xx"]
    assert ratio["outcome"] == "inconclusive" and ratio["observed"] == 0.5, ratio
    assert "none within it" in ratio["detail"], ratio
    assert verdict["reason"].startswith("no rule failed over "), verdict["reason"]
    assert (
        "1 of 2 had no round within its bound: http-5xx: 1 round past max 0.05"
        in (verdict["reason"])
    ), verdict["reason"]

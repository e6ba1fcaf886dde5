"""A provider rule without data says why in the verdict: the error its provider gave, not
the `no data (no data)` of the rounds whose answer was not in yet. A round without an
answer (a fetch still under way when the round is judged) has nothing to say of why the
rule has none; it said so all the same, over the provider's own error, and a window that
failed on another rule then stored the provider's rule as `no data (no data)`. Driven
through the daemon's API with a Prometheus that answers the first round's fetch 503 and
holds every later one past the window, counted at that Prometheus."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AgentFactory, FlipTarget
from tests.e2e.scripted_prometheus import ScriptedPrometheus, judged_with

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(60)
async def test_a_provider_rule_without_data_names_its_providers_error_not_an_empty_round(
    start_agent: AgentFactory, flip_target: FlipTarget
) -> None:
    prometheus = ScriptedPrometheus("503", "hold")
    flip_target.bad = True  # 2 of every 5 probes fail: past max 0.05 every round
    final = await judged_with(
        start_agent,
        flip_target.url,
        prometheus,
        window="10s",
        analysis="{policy: threshold, failure_limit: 4}",
        budget="20s",
    )
    # counted at Prometheus: the first round's fetch refused, a later one held
    assert prometheus.asked[:2] == ["503", "hold"], prometheus.asked
    assert final["state"] == "failed", final["verdict"]  # no rollback configured
    assert final["verdict"]["reason"].startswith("probe-errors: "), final["verdict"]
    ratio = {r["name"]: r for r in final["verdict"]["rules"]}["http-5xx"]
    assert ratio["outcome"] == "inconclusive", ratio
    # before: "no data (no data)", the last round's (its fetch still held)
    assert ratio["detail"].startswith("no data (") and "503" in ratio["detail"], ratio

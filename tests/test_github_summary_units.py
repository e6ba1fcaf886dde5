"""The GitHub job summary (`agent.github_action`) writes a rule's values as alerts, the
deploy page and `postflight status` do: a rate in %, a latency as a duration, a rate's
bound in % (`max 5%`, where it wrote `max 0.05 (5%)` beside the page's `max 5%`); its own
`{:.4g}` wrote an error rate of 0 as `0` and a baseline's 0.01875 as `0.01875`, beside
their `0%` and `1.875%`."""

from __future__ import annotations

from agent.github_action import summary_markdown

DEPLOY = {
    "id": "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ",
    "environment": "production",
    "version": "v2",
    "state": "passed",
    "verdict": {
        "outcome": "pass",
        "reason": "2 of 2 rules within bounds on evidence over 10 rounds",
        "rules": [
            {
                "name": "probe-errors",
                "outcome": "pass",
                "metric": "error_rate",
                "observed": 0.0,
                "baseline": 0.01875,
                "threshold": "max 0.05",
                "detail": "0 of 400 probes failed",
            },
            {
                "name": "health-p95",
                "outcome": "pass",
                "metric": "latency_p95",
                "observed": 0.412,
                "baseline": 0.0062,
                "threshold": "max_increase 50%",
                "detail": None,
            },
        ],
    },
}


def test_the_job_summary_writes_values_in_their_metrics_unit() -> None:
    rows = summary_markdown(DEPLOY, "http://pf.example/deploys/x").splitlines()
    assert "| probe-errors | ✅ pass | 0% | 1.875% | max 5% | 0 of 400 probes failed |" in rows
    assert "| health-p95 | ✅ pass | 412ms | 6.2ms | max_increase 50% | — |" in rows

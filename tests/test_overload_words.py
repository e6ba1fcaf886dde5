"""The overload guard's words with counts of one: `1 of 1 probe dropped (1 timeout, ...)`,
where `1 of 1 probes dropped (1 timeouts, ...)` read as a slip."""

from __future__ import annotations

from agent.analysis import Rule
from agent.analysis.types import RuleVerdict, Verdict
from agent.analysis.verdicts import Glance, RuleGlance
from agent.windows.overload import DropTally


def test_an_overloaded_agents_counts_of_one_are_singular() -> None:
    rule = RuleVerdict("probe-errors", "checks", "error_rate", "fail", 1.0, 0.0, "max 0.05", "d")
    glance = Glance("fail", (RuleGlance("probe-errors", "fail", 1.0, {"streak": 3}),))
    verdict = Verdict("fail", "probe-errors: error_rate 1 > max 0.05", (rule,))
    tally = DropTally()
    tally.note_summary(
        {
            "checks": {"health": {"runs": 1}},
            "dropped": {"agent_lag": 1, "agent_lag_latency": 0},
        }
    )
    _, held = tally.guard(glance, verdict, [Rule("probe-errors", "checks", "error_rate", max=0.05)])
    assert held is not None
    # was "1 of 1 probes dropped (1 timeouts, 0 latencies)"
    assert held.reason.startswith("agent overloaded: 1 of 1 probe dropped (1 timeout, 0 latencies)")

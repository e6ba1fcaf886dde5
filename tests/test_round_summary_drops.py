"""What a stored round says of a probe dropped as the agent's own stall (`checks.lag`): a
dropped run is `ok` with no sample (neither a pass nor a fail of the target), so the
round's `checks` entry counted it a run that passed, and a canary's baseline probe dropped
so (no sample to say it probed the baseline) among the deploy's runs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agent.analysis.verdicts import Glance
from agent.windows.lifecycle import WindowWatch
from agent.windows.overload import DropTally
from checks.base import CheckResult, Sample, Target
from checks.lag import attributed


def _timed_out(target: Target) -> CheckResult:
    sample = Sample(check="health", ok=False, latency_s=1.0, error="timeout", target=target)
    return CheckResult("health", "http", False, (sample,), "health: timeout", 1.0, {})


def _answered(target: Target) -> CheckResult:
    sample = Sample(check="health", ok=True, latency_s=0.02, status=200, target=target)
    return CheckResult("health", "http", True, (sample,), "health: 200", 0.02, {})


def _summary(results: list[CheckResult]) -> dict[str, Any]:
    watch = SimpleNamespace(cumulative={}, new_stand_ins=[], arrived=[], overload=DropTally())
    glance = Glance("continue", ())
    summary: dict[str, Any] = WindowWatch._round_summary(
        watch,  # type: ignore[arg-type]
        {},
        results,
        glance,
        with_state=False,
    )
    return summary


def test_a_round_says_how_many_of_a_checks_runs_were_dropped_as_the_agents() -> None:
    """Three runs of the deploy, two dropped as the agent's (a timeout its loop, stalled
    0.5 s of the 1 s wait, cannot vouch for), one answered; a canary's baseline probe
    dropped so too. The round says 3 runs, 2 dropped, none failed; the baseline's is
    not the deploy's. The old code said 4 runs, none failed, nothing dropped."""
    dropped = [attributed(_timed_out(t), 0.5)[0] for t in ("deploy", "deploy", "baseline")]
    assert all(r.ok and not r.samples and r.details["dropped"] == "agent_lag" for r in dropped)
    summary = _summary([*dropped[:2], _answered("deploy"), dropped[2]])
    entry = summary["checks"]["health"]
    assert (entry["runs"], entry["failed"], entry.get("dropped")) == (3, 0, 2), entry
    assert summary["canary"] == []  # the baseline's dropped probe has nothing to show


def test_a_round_of_kept_runs_says_nothing_was_dropped() -> None:
    """The control: a timeout with the loop free is the target's, counted failed."""
    kept, _ = attributed(_timed_out("deploy"), 0.0)
    summary = _summary([kept, _answered("deploy")])
    entry = summary["checks"]["health"]
    assert (entry["runs"], entry["failed"], entry.get("dropped")) == (2, 1, None), entry

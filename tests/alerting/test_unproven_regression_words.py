"""An inconclusive window whose rule ended past its bound, short of the evidence to fail.

`bench/small_windows.py` (3 s windows of 1 s rounds, the example's `probe-errors` at
`max 0.05`): a deploy failing 58 of 120 probes ended `inconclusive`, titled "inconclusive,
not enough data or evidence to pass" and headed "No rule failed, but not every rule had
the data or the evidence to pass": the words of a quiet window short of probes, which told
on-call nothing was wrong with a release failing half its requests, live and not rolled
back. The title and headline now name the rule past its bound; a window short of evidence
with every rule within its bound reads as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alerting.events import Alert
from alerting.templates import body, title
from tests.alerting.test_templates import window

SEQUENTIAL_PAST = {
    "name": "probe-errors",
    "source": "checks",
    "metric": "error_rate",
    "outcome": "inconclusive",
    "observed": 0.48333,
    "baseline": 0.0,
    "threshold": "max 0.05",
    "detail": "58 of 120 probes failed; past its max bound on the evidence since the deploy"
    " as it stands: 655 to 1, at least 82.5 warns, 750 fails it",
    "evidence": {
        "policy": "sequential",
        "breaching": {
            "bound": "max",
            "likelihood_ratio": 654.8,
            "likelihood_ratio_warned": 82.5,
            "likelihood_ratio_needed": 750.0,
        },
    },
}
"""As the sweep's stored verdict had it (`w=3,i=1s`, 50% errors)."""

THRESHOLD_PAST = {
    "name": "health-latency",
    "source": "checks",
    "metric": "latency_p95",
    "outcome": "inconclusive",
    "observed": 0.658,
    "baseline": 0.085,
    "threshold": "max 500ms",
    "detail": "latency_p95 658ms; past max 500ms in each of the 2 rounds judged, none within"
    " it: 2 of 3 rounds, too few to fail, and no evidence of a pass",
    "evidence": {"policy": "threshold", "streak": 2, "failure_limit": 3},
}
"""The threshold policy's (`w=3,i=1s`, latency x10: 2 rounds, `failure_limit` 3)."""

WITHIN = {
    "name": "health-p95",
    "source": "checks",
    "metric": "latency_p95",
    "outcome": "inconclusive",
    "observed": 0.076,
    "baseline": 0.09,
    "threshold": "max_increase 50%",
    "detail": "latency_p95 76ms over 99 samples; not enough evidence",
    "evidence": {"policy": "sequential", "test": "e-process"},
}


def inconclusive(*rules: dict[str, Any]) -> Alert:
    alert = Alert.for_window(window(), "inconclusive", reason="no rule failed over 3 rounds, …")
    return dataclasses.replace(alert, rules=list(rules))


def test_an_inconclusive_window_names_the_rule_it_ended_past_its_bound() -> None:
    alert = inconclusive(SEQUENTIAL_PAST, WITHIN)
    assert title(alert).endswith(
        ": inconclusive, probe-errors past its bound, short of the evidence to fail"
    ), title(alert)
    said = body(alert)
    assert said.startswith("**Inconclusive: a regression may be live.** `probe-errors` ended"), said
    assert "No rule failed" not in said.split("\n")[0]


def test_a_threshold_streak_too_short_to_fail_is_named_too() -> None:
    alert = inconclusive(THRESHOLD_PAST, SEQUENTIAL_PAST)
    assert title(alert).endswith(
        ": inconclusive, health-latency, probe-errors past their bounds, short of the evidence"
        " to fail"
    ), title(alert)
    assert "`health-latency`, `probe-errors` ended past their bounds" in body(alert)


def test_an_inconclusive_window_within_its_bounds_reads_as_before() -> None:
    alert = inconclusive(WITHIN)
    assert title(alert).endswith(": inconclusive, not enough data or evidence to pass")
    assert body(alert).startswith("**Inconclusive.** No rule failed")

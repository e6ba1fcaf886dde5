"""`postflight demo` prints each round's own figures, from the window's `round` events: the
deploy object's `progress` is worded at most every 30 s, and printed per round it repeated
round 1's figures (`round 2: probe-errors=inconclusive (45%)` was round 1's 45%)."""

from __future__ import annotations

from agent.demo import round_line

METRICS = {"probe-errors": "error_rate", "health-latency": "latency_p95"}


def round_event(number: int, errors: float, latency: float | None) -> dict[str, object]:
    """A `round` event's data as the agent streams it (the fields the demo reads)."""
    return {
        "id": "dep_01M8SQ85EK1YRHM0VMJY0GFGR2",
        "round": number,
        "summary": {
            "decision": "continue",
            "rules": {
                "probe-errors": {"outcome": "inconclusive", "observed": errors},
                "health-latency": {"outcome": "inconclusive", "observed": latency},
            },
        },
        "progress": {"rounds": number},
    }


def test_each_round_shows_its_own_number_and_figures() -> None:
    first = round_line(round_event(1, 0.45, 0.44), METRICS)
    second = round_line(round_event(2, 0.475, 0.452), METRICS)
    assert first == (
        "round  1: probe-errors=inconclusive (45%)  health-latency=inconclusive (440ms)"
    )
    assert second == (
        "round  2: probe-errors=inconclusive (47.5%)  health-latency=inconclusive (452ms)"
    )


def test_a_rule_without_a_figure_yet_shows_its_outcome_alone() -> None:
    line = round_line(round_event(3, 0.0, None), METRICS)
    assert line == "round  3: probe-errors=inconclusive (0%)  health-latency=inconclusive"


def test_a_few_ms_or_less_read_in_the_judges_digits() -> None:
    """The demo's local service answers in about a millisecond: its p95 read `(0ms)` or
    `(2ms)`, where the agent's own words say `0.412ms`, `1.94ms` (`format_duration`)."""
    fast = round_line(round_event(4, 0.0, 0.000412), METRICS)
    assert fast.endswith("health-latency=inconclusive (0.412ms)"), fast
    few = round_line(round_event(5, 0.0, 0.00194), METRICS)
    assert few.endswith("health-latency=inconclusive (1.94ms)"), few


def test_a_rate_reads_as_alerts_the_page_and_status_write_it() -> None:
    """1 of 250 probes failed is 0.4%, as every other view says it; the demo's own `{:.0%}`
    read it `0%` beside the alert's `0.4%`, and 19 of 40 `48%` beside `47.5%`."""
    line = round_line(round_event(6, 0.004, 0.44), METRICS)
    assert line.startswith("round  6: probe-errors=inconclusive (0.4%)"), line

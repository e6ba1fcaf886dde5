"""`common.words.counted`: a count and its noun, plural unless it is one, the count's
thousands separated (`1,000 bytes`), as the places that once wrote their plurals by hand
say them now: a body still coming at the deadline and the demo's busy machine here; a
short API token's length in tests/config/test_validate_config.py, a rollback's attempts in
tests/cli/test_client.py and tests/alerting, Sentry's errors of an unknown release in
tests/providers/test_providers_sentry.py (`Sentry has 3,000 errors`, as the README quotes)."""

from __future__ import annotations

import pytest

from agent.analysis.types import Rule
from agent.analysis.verdicts import units_of
from agent.demo import overload_advice
from checks.exchange import classify
from checks.wire import Unfinished
from common.words import counted


@pytest.mark.parametrize(
    ("count", "said"),
    [(0, "0 bytes"), (1, "1 byte"), (2, "2 bytes"), (999, "999 bytes"), (1000, "1,000 bytes")],
)
def test_a_count_is_said_with_its_noun_plural_unless_one(count: int, said: str) -> None:
    assert counted(count, "byte") == said


def test_a_large_count_has_each_thousand_separated() -> None:
    """Where `1234567 rounds` was hard to read beside the other figures, which have them."""
    assert counted(1_234_567, "round") == "1,234,567 rounds"
    assert counted(-1000, "slot") == "-1,000 slots"


@pytest.mark.parametrize(
    ("count", "said"),
    [(1.0, "1 sample"), (400.0, "400 samples"), (2.5, "2.5 samples"), (1e6, "1,000,000 samples")],
)
def test_a_count_kept_as_a_float_is_said_as_a_whole_number_where_it_is_one(
    count: float, said: str
) -> None:
    """The judge keeps its samples as floats (sums of rounds' sizes): a whole one is said
    without `.0`, and a million of them as `1,000,000 samples`, where its hand-written
    plural (`:g`) said `1e+06 samples`."""
    assert counted(count, "sample") == said
    rule = Rule(name="slow", source="checks", metric="latency_p95", max_increase=0.2)
    assert units_of(rule, "distribution", count) == said


@pytest.mark.parametrize(
    ("received", "came"), [(1, "1 byte of it came"), (1000, "1,000 bytes of it came")]
)
def test_a_body_still_coming_at_the_deadline_says_how_much_came(received: int, came: str) -> None:
    kind, message = classify(Unfinished(200, received), 0.3)
    assert (kind, message) == (
        "timeout",
        f"HTTP 200, then its body did not end within 300ms ({came})",
    )


@pytest.mark.parametrize(("cpus", "said"), [(1, "on 1 CPU)"), (2, "on 2 CPUs)")])
def test_the_demos_busy_machine_is_said_with_its_cpus(cpus: int, said: str) -> None:
    reason = "agent overloaded: 203 of 360 probes dropped"
    good = {"state": "inconclusive", "verdict": {"reason": reason}}
    advice = overload_advice(good, 12.34, cpus)
    assert advice is not None and f"(load average 12.3 {said}" in advice, advice

"""`round_increment`: cumulative provider figures become each round's own evidence."""

from __future__ import annotations

from agent.analysis.types import Observation
from agent.providers.base import round_increment


def test_counts_become_this_rounds_events() -> None:
    first = Observation(value=0.1, count=10, total=100, seconds=30)
    second = Observation(value=0.12, count=30, total=250, seconds=60)
    step = round_increment(first, second)
    assert (step.count, step.total, step.seconds) == (20, 150, 30)
    assert step.value == 20 / 150


def test_a_round_without_new_events_has_no_data_but_no_error() -> None:
    first = Observation(value=0.1, count=10, total=100)
    step = round_increment(first, Observation(value=0.1, count=10, total=100))
    assert step.value is None and step.error is None and step.total == 0


def test_samples_seen_last_round_are_not_counted_again() -> None:
    first = Observation(value=0.3, count=3, total=3, values=(0.1, 0.2, 0.3), quantile=0.95)
    second = Observation(
        value=0.5, count=5, total=5, values=(0.5, 0.4, 0.1, 0.2, 0.3), quantile=0.95
    )
    step = round_increment(first, second)
    assert sorted(step.values) == [0.4, 0.5]
    assert step.value == 0.5  # the provider's percentile since the deploy
    assert (step.count, step.total) == (2, 2)


def test_first_round_errors_and_bare_values_pass_through() -> None:
    current = Observation(value=0.2, count=2, total=10)
    assert round_increment(None, current) == current
    failed = Observation(value=None, error="Sentry answered 503")
    assert round_increment(current, failed) == failed
    assert round_increment(failed, current) == current
    bare = Observation(value=42.0, count=42)
    assert round_increment(Observation(value=40.0, count=40), bare) == bare

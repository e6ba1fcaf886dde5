"""The loop-only metrics (`LoopCounter`, `LoopHistogram`) expose exactly what
prometheus_client's own classes expose for the same changes."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from agent.metrics import LoopCounter, LoopHistogram, Metrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
AMOUNTS = [0.0, 0.004, 0.005, 0.0051, 0.01, 0.3, 1.0, 1.5, 100.0, math.inf, -1.0, math.nan]


def exposed(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_a_loop_histogram_exposes_what_the_library_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    a = LoopHistogram("h_seconds", "h", ["env"], buckets=BUCKETS, registry=ours)
    b = Histogram("h_seconds", "h", ["env"], buckets=BUCKETS, registry=theirs)
    for amount in AMOUNTS:
        a.labels("x").observe(amount)
        b.labels("x").observe(amount)
    assert exposed(ours) == exposed(theirs)


def test_a_loop_counter_exposes_what_the_library_does() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    a = LoopCounter("c", "c", ["env"], registry=ours)
    b = Counter("c", "c", ["env"], registry=theirs)
    for amount in (1, 2.5, 0):
        a.labels("x").inc(amount)
        b.labels("x").inc(amount)
    with pytest.raises(ValueError):
        a.labels("x").inc(-1)
    assert exposed(ours) == exposed(theirs)


def test_unlabelled_use_of_a_labelled_metric_is_still_refused() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="missing label values"):
        metrics.check_duration_seconds.observe(0.1)
    metrics.round_lag_seconds.observe(0.002)  # unlabelled: observed as such
    assert 'postflight_round_lag_seconds_bucket{le="0.005"} 1.0' in exposed(metrics.registry)

"""`postflight demo` waits until its agent has learnt the service's normal latency before
the first deploy, rather than a fixed two seconds: an agent just started in its own process
on a busy machine dropped its first background runs' latencies as its own lag, and the good
deploy ended "health-latency: no baseline". It reads what was kept from `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from agent.demo import kept_latencies
from agent.metrics import Metrics


def exposition(runs: dict[tuple[str, str], int], dropped: dict[tuple[str, str], int]) -> str:
    """The agent's own metrics, as its `/metrics` exposes them, with these counts:
    check runs by (environment, result), samples dropped by (environment, result)."""
    metrics = Metrics(CollectorRegistry())
    for (environment, result), count in runs.items():
        metrics.check_runs_total.labels(environment, "api-health", result).inc(count)
    for (environment, result), count in dropped.items():
        metrics.samples_dropped_total.labels(environment, result).inc(count)
    return generate_latest(metrics.registry).decode()


def test_kept_latencies_are_the_runs_less_those_whose_latency_was_dropped() -> None:
    text = exposition(
        {("demo", "pass"): 150, ("demo", "fail"): 10, ("other", "pass"): 999},
        {("demo", "agent_lag_latency"): 35, ("demo", "agent_lag"): 7, ("other", "agent_lag"): 5},
    )
    assert kept_latencies(text) == (125, 35)


def test_an_agent_that_ran_nothing_yet_kept_nothing() -> None:
    assert kept_latencies(exposition({}, {})) == (0, 0)

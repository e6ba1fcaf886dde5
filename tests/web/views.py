"""The deploy page's view model built from a window and its stored rounds, without a
daemon: the pure page tests' one set-up (`deploy_view` with no rollback, attempts or
alerts unless a test gives them), where each test module wrote it out again."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.analysis.types import Rule
from agent.records import DeployWindow, RollbackIntent, RoundRecord
from agent.web.view import DeployView, deploy_view

NOW = 1_800_000_000.0
ID = "dep_01JD8X9Q2ZK3V7Y0M5T4N6R8WQ"
LATENCY_BASELINE = {"latency": {"value": 0.02, "values": [ms / 1000 for ms in range(10, 30)]}}
"""A `latency` rule's baseline: 20 probes of 10 to 29 ms."""


def window(**kw: Any) -> DeployWindow:
    """A production window of `v2` after `v1`, 30 s in with 30 s to go, 2 rounds stored;
    `kw` replaces any field."""
    values: dict[str, Any] = {
        "id": ID,
        "environment": "production",
        "version": "v2",
        "previous_version": "v1",
        "commit": None,
        "labels": {},
        "state": "watching",
        "deployed_at": NOW - 30,
        "ends_at": NOW + 30,
        "created_at": NOW - 30,
        "rounds": 2,
    } | kw
    return DeployWindow(**values)


def rounds() -> list[RoundRecord]:
    """Two rounds of an `errors` rule (1% then 20%) and a journey failing at `orders`."""
    return [
        RoundRecord(
            ID,
            n,
            NOW - 30 + n,
            {
                "observations": {"errors": {"value": v, "values": [0.1, 0.2]}},
                "rules": {"errors": {"outcome": "pass", "likelihood_ratio": lr}},
                "checks": {
                    "journey": {
                        "runs": 1,
                        "failed": 1,
                        "message": "boom",
                        "failure": {"step": "orders", "expected": "200", "got": "500"},
                    }
                },
                "decision": "continue",
            },
        )
        for n, v, lr in ((1, 0.01, 2.0), (2, 0.2, 40.0))
    ]


def one_latency_round(observation: Mapping[str, Any]) -> list[RoundRecord]:
    """One stored round whose `latency` rule observed `observation` and passed."""
    summary = {
        "observations": {"latency": dict(observation)},
        "rules": {"latency": {"outcome": "pass"}},
        "checks": {},
        "decision": "continue",
    }
    return [RoundRecord(ID, 1, NOW - 29, summary)]


def page_view(
    shown: DeployWindow,
    stored: Sequence[RoundRecord],
    rules: Sequence[Rule],
    *,
    alerts: Mapping[str, str] | None = None,
    rollback: RollbackIntent | None = None,
) -> DeployView:
    """The page of `shown` at `NOW`, its rounds `stored`, judged by `rules`."""
    return deploy_view(
        shown, stored, rules=rules, rollback=rollback, attempts=[], alerts=alerts or {}, now=NOW
    )

"""Registration warnings for provider rules: read from the baseline the environment's latest
window stored (no provider call at registration), said like a checks rule's."""

from __future__ import annotations

from agent.analysis.types import Observation
from agent.records import DeployWindow
from agent.settings_file import load_settings_text
from agent.store.sqlite import SqliteStore
from agent.windows.evidence import observation_to_dict
from agent.windows.foresight import registration_warnings
from tests.config.test_validate_config import MINIMAL

CONFIG = (
    MINIMAL.replace(
        "environments:",
        "providers:\n  sentry: {base_url: 'http://127.0.0.1:9', org: acme, token: t0k3n}\n"
        "environments:",
    )
    .replace("    rollback:\n", "    baseline: {sentry: {project: web}}\n    rollback:\n")
    .replace(
        "        max: 0.05\n",
        "        max: 0.05\n"
        "      - {name: sentry-errors, source: sentry, metric: error_rate, max_increase: 2%}\n",
    )
)


def window(id_: str, at: float, baseline: dict[str, Observation] | None) -> DeployWindow:
    return DeployWindow(
        id=id_,
        environment="production",
        version="v1",
        previous_version=None,
        commit=None,
        labels={},
        state="passed",
        deployed_at=at,
        ends_at=at + 600,
        created_at=at,
        baseline=None
        if baseline is None
        else {k: observation_to_dict(v) for k, v in baseline.items()},
    )


async def test_a_provider_rule_below_what_it_can_detect_is_warned_at_registration(
    store: SqliteStore,
) -> None:
    env = load_settings_text(CONFIG).environments["production"]
    now = 1_800_000_000.0
    assert await registration_warnings(store, env, "production", now, now + 600) == []
    # the latest window's Sentry baseline: 1% errors of 2,000 transactions an hour
    sentry = Observation(0.01, count=20, total=2000, periods=60)
    await store.create_window(window("dep_1", now - 7200, {"sentry-errors": sentry}), None)
    said = await registration_warnings(store, env, "production", now, now + 600)
    assert len(said) == 1, said
    assert said[0].startswith("rule sentry-errors: its max_increase bound is tighter than"), said


async def test_a_provider_rule_that_can_see_its_bound_is_not_warned(store: SqliteStore) -> None:
    env = load_settings_text(CONFIG.replace("max_increase: 2%", "max_increase: 500%"))
    now = 1_800_000_000.0
    sentry = Observation(0.01, count=2000, total=200_000, periods=60)  # 100x the traffic
    await store.create_window(window("dep_1", now - 7200, {"sentry-errors": sentry}), None)
    production = env.environments["production"]
    assert await registration_warnings(store, production, "production", now, now + 600) == []

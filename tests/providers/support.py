"""Helpers for provider tests: rules, scopes and settings pointed at the fakes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.analysis.types import Observation, Rule
from agent.metrics import Metrics
from agent.providers.base import DeployScope, Period
from agent.providers.provider_settings import (
    BaselineSettings,
    NewRelicScope,
    NewRelicSettings,
    SentryScope,
    SentrySettings,
)
from agent.settings import RuleSettings
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.sentry import FakeSentry

SENTRY_TOKEN = "sntrys_test-sentry-token-0123456789"
NEWRELIC_KEY = "NRAK-TESTKEY0123456789"
T0 = 1_795_000_000.0  # the deploy (2026-11-18)
BEFORE = Period(T0 - 3600, T0)
AFTER = Period(T0, T0 + 120)

# Small budgets keep failure tests fast; retries still get room to happen.
FAST: dict[str, Any] = {"timeout": 2.0, "request_timeout": 0.8, "max_attempts": 3}


def rule(**fields: Any) -> Rule:
    fields.setdefault("name", f"r-{fields.get('source')}-{fields.get('metric', 'q')}")
    if "max" not in fields and "min" not in fields:
        fields.setdefault("max_increase", "50%")
    return RuleSettings.model_validate(fields).to_rule()


def scope(**overrides: Any) -> DeployScope:
    values: dict[str, Any] = {
        "deploy_id": "dep_01TEST",
        "environment": "production",
        "version": "v2.4.1",
        "previous_version": "v2.4.0",
        "deployed_at": T0,
        "baseline": BaselineSettings(
            sentry=SentryScope(project="web", environment="production"),
            newrelic=NewRelicScope(app_name="web (production)"),
        ),
    }
    values.update(overrides)
    return DeployScope(**values)


def sentry_scope(
    project: str = "web",
    environment: str = "production",
    release: str | None = None,
    **overrides: Any,
) -> DeployScope:
    """The deploy scope with another Sentry project, environment or release name."""
    sentry: dict[str, Any] = {"project": project, "environment": environment}
    if release is not None:
        sentry["release"] = release
    return scope(baseline=BaselineSettings.model_validate({"sentry": sentry}), **overrides)


def requests_counted(metrics: Metrics, provider: str, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "postflight_provider_requests_total", {"provider": provider, "result": result}
    )
    return value or 0.0


def stalls_counted(metrics: Metrics, provider: str) -> float:
    """The provider's fetches and marker writes the agent's own stall ran out of time."""
    value = metrics.registry.get_sample_value(
        "postflight_provider_agent_stalls_total", {"provider": provider}
    )
    return value or 0.0


def sentry_settings(fake: FakeSentry, **overrides: Any) -> SentrySettings:
    return SentrySettings.model_validate(
        {"base_url": fake.url, "org": fake.org, "token": SENTRY_TOKEN, **FAST, **overrides}
    )


def newrelic_settings(fake: FakeNewRelic, **overrides: Any) -> NewRelicSettings:
    return NewRelicSettings.model_validate(
        {
            "api_url": fake.graphql_url,
            "account_id": fake.account_id,
            "api_key": NEWRELIC_KEY,
            **FAST,
            **overrides,
        }
    )


async def kept_up(fetch: Callable[[], Awaitable[Observation]], tries: int = 3) -> Observation:
    """`fetch()`'s observation, asked again (`tries` in all) while it was the agent's
    (`agent_lag`: a loaded machine stalled the loop past a tenth of the wait, as its error
    says; a hang's timeout then is rightly not the provider's, and not the case under test)."""
    for _ in range(tries - 1):
        obs = await fetch()
        if not obs.agent_lag:
            return obs
    return await fetch()


def now() -> float:
    return time.time()

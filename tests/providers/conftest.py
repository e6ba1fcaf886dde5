"""Fixtures for provider tests: fakes on 127.0.0.1, providers with short budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.metrics import Metrics
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import PrometheusSettings
from agent.providers.sentry import SentryProvider
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import FakePrometheus
from tests.fakes.sentry import FakeSentry
from tests.providers.support import (
    FAST,
    NEWRELIC_KEY,
    SENTRY_TOKEN,
    newrelic_settings,
    sentry_settings,
)


@pytest.fixture
async def sentry_fake() -> AsyncIterator[FakeSentry]:
    async with FakeSentry(token=SENTRY_TOKEN) as fake:
        yield fake


@pytest.fixture
async def newrelic_fake() -> AsyncIterator[FakeNewRelic]:
    async with FakeNewRelic(api_key=NEWRELIC_KEY) as fake:
        yield fake


@pytest.fixture
async def prometheus_fake() -> AsyncIterator[FakePrometheus]:
    async with FakePrometheus() as fake:
        yield fake


@pytest.fixture
async def sentry(sentry_fake: FakeSentry, metrics: Metrics) -> AsyncIterator[SentryProvider]:
    provider = SentryProvider(sentry_settings(sentry_fake), metrics=metrics)
    yield provider
    await provider.aclose()


@pytest.fixture
async def newrelic(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> AsyncIterator[NewRelicProvider]:
    provider = NewRelicProvider(newrelic_settings(newrelic_fake), metrics=metrics)
    yield provider
    await provider.aclose()


@pytest.fixture
async def prometheus(
    prometheus_fake: FakePrometheus, metrics: Metrics
) -> AsyncIterator[PrometheusProvider]:
    provider = PrometheusProvider(
        PrometheusSettings.model_validate({"url": prometheus_fake.url, **FAST}), metrics=metrics
    )
    yield provider
    await provider.aclose()

"""A proxy's own error page (HTML, `Content-Type: text/html`) in front of a provider, for
as long as the fetch lasts: an outage of the provider (or its proxy), said with the HTTP
status first as any 5xx (`New Relic answered 502 (after 3 attempts)`), never "malformed
answer" (what to fix in the configuration). Checked for the three providers against
their fakes (`fail("html:502")`): the rule's observation is what its alert and the
window's `inconclusive` reason quote."""

from __future__ import annotations

import pytest

from agent.analysis.types import Observation
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from agent.providers.sentry import SentryProvider
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import FakePrometheus
from tests.fakes.sentry import FakeSentry
from tests.providers.support import AFTER, rule, scope

STATUSES = ["502", "503"]


def said_as_an_outage(obs: Observation, title: str, status: str) -> None:
    assert obs.value is None and not obs.answered, obs
    assert obs.error is not None and obs.error.startswith(f"{title} answered {status}"), obs.error
    assert "malformed" not in obs.error and "<html" not in obs.error, obs.error


@pytest.mark.parametrize("status", STATUSES)
async def test_new_relic_behind_a_proxys_error_page(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, status: str
) -> None:
    newrelic_fake.fail(f"html:{status}")
    r = rule(source="newrelic", nrql="SELECT count(*) FROM Transaction", max=1)
    said_as_an_outage(await newrelic.fetch(r, scope(), AFTER, None), "New Relic", status)


@pytest.mark.parametrize("status", STATUSES)
async def test_sentry_behind_a_proxys_error_page(
    sentry: SentryProvider, sentry_fake: FakeSentry, status: str
) -> None:
    sentry_fake.fail(f"html:{status}")
    r = rule(source="sentry", metric="error_rate", max=0.1)
    said_as_an_outage(await sentry.fetch(r, scope(), AFTER, "v1"), "Sentry", status)


@pytest.mark.parametrize("status", STATUSES)
async def test_prometheus_behind_a_proxys_error_page(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus, status: str
) -> None:
    prometheus_fake.fail(f"html:{status}")
    r = rule(source="prometheus", query="up", max=2)
    said_as_an_outage(await prometheus.fetch(r, scope(), AFTER, None), "Prometheus", status)

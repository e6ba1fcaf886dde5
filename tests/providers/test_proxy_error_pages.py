"""A proxy's own error page (HTML, `Content-Type: text/html`) in front of a provider, for
as long as the fetch lasts: an outage of the provider (or its proxy), said with the HTTP
status first as any 5xx (`New Relic answered 502 (after 3 attempts)`), never "malformed
answer" (what to fix in the configuration). Checked for the three providers against
their fakes (`fail("html:502")`): the rule's observation is what its alert and the
window's `inconclusive` reason quote."""

from __future__ import annotations

import pytest

from agent.providers.client import HttpProvider
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from agent.providers.sentry import SentryProvider
from tests.fakes._server import FakeServer
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import FakePrometheus
from tests.fakes.sentry import FakeSentry
from tests.providers.support import AFTER, rule, scope

PROVIDERS = {
    "newrelic": ("New Relic", rule(source="newrelic", nrql="SELECT count(*) FROM x", max=1)),
    "sentry": ("Sentry", rule(source="sentry", metric="error_rate", max=0.1)),
    "prometheus": ("Prometheus", rule(source="prometheus", query="up", max=2)),
}
"""Each provider: how its messages name it, and a rule it fetches."""


Behind = tuple[str, FakeServer, HttpProvider]


@pytest.fixture(params=sorted(PROVIDERS))
def behind(
    request: pytest.FixtureRequest,
    newrelic: NewRelicProvider,
    newrelic_fake: FakeNewRelic,
    sentry: SentryProvider,
    sentry_fake: FakeSentry,
    prometheus: PrometheusProvider,
    prometheus_fake: FakePrometheus,
) -> Behind:
    """Each provider in turn (`tests/providers/conftest.py`'s): its name, its fake, and
    the provider reading it."""
    pairs: dict[str, tuple[FakeServer, HttpProvider]] = {
        "newrelic": (newrelic_fake, newrelic),
        "sentry": (sentry_fake, sentry),
        "prometheus": (prometheus_fake, prometheus),
    }
    return (request.param, *pairs[request.param])


@pytest.mark.parametrize("status", ["502", "503"])
async def test_a_provider_behind_a_proxys_error_page_is_said_answering_its_status(
    behind: Behind, status: str
) -> None:
    provider, fake, fetching = behind
    title, r = PROVIDERS[provider]
    fake.fail(f"html:{status}")
    obs = await fetching.fetch(r, scope(), AFTER, "v1" if provider == "sentry" else None)
    assert obs.value is None and not obs.answered, obs
    assert obs.error is not None and obs.error.startswith(f"{title} answered {status}"), obs.error
    assert "malformed" not in obs.error and "<html" not in obs.error, obs.error

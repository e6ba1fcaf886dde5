"""A provider's answer whose body does not decode (`Content-Encoding: gzip` on a body that
is not: a proxy's mangling) is classed by its status line (`common.answers.read_answer`):
a 5xx retried as a 5xx, a 4xx said as the provider's 4xx, a 2xx an error naming the
unreadable body. Before, aiohttp's ClientPayloadError made every one a connection lost,
"could not reach … (answer cut short)", sent again to the last attempt."""

from __future__ import annotations

import pytest

from agent.metrics import Metrics
from agent.providers.newrelic import NewRelicProvider
from agent.providers.prometheus import PrometheusProvider
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.prometheus import FakePrometheus
from tests.providers.support import AFTER, rule, scope

UNREAD = "(its body could not be read: Can not decode content-encoding: gzip)"


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("undecodable", f"Prometheus answered 200 {UNREAD}"),
        ("undecodable:400", f"Prometheus answered 400 {UNREAD}"),
        ("undecodable:404", "Prometheus answered 404 for /api/v1/query_range: check providers"),
        # its Retry-After (30 s) past the fetch's 2 s budget: failed at once, as any 503's
        ("undecodable:503", "Prometheus answered 503; retry in 30s, past this fetch's 2s"),
    ],
    ids=["200", "400", "404", "503"],
)
async def test_an_undecodable_answer_is_classed_by_its_status(
    prometheus: PrometheusProvider,
    prometheus_fake: FakePrometheus,
    metrics: Metrics,
    kind: str,
    said: str,
) -> None:
    prometheus_fake.fail(kind, reset_in=30.0)
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value is None and obs.error is not None and obs.error.startswith(said), obs.error
    assert len(prometheus_fake.requests) == 1  # was 3: max_attempts, a connection lost each
    assert obs.answered is (kind != "undecodable:503")
    status = kind.partition(":")[2] or "200"
    counted = metrics.registry.get_sample_value(
        "postflight_provider_http_requests_total",
        {"provider": "prometheus", "result": f"{status[0]}xx"},
    )
    assert counted == 1  # the answer's class, where it was an "error"


async def test_an_undecodable_503_is_retried_after_its_retry_after(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.fail("undecodable:503", times=1, reset_in=0.5)  # Retry-After: 1
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert (obs.value, obs.error, len(prometheus_fake.requests)) == (1.0, None, 2)


async def test_an_undecodable_graphql_200_is_an_error_naming_it(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    """New Relic reads a 200's body to find errors worth a retry (`retry_for`): an empty
    body there is not one, and the fetch says what came."""
    newrelic_fake.fail("undecodable")
    obs = await newrelic.fetch(
        rule(source="newrelic", query="SELECT count(*) FROM Transaction", max=2),
        scope(),
        AFTER,
        None,
    )
    assert obs.error == f"New Relic answered 200 {UNREAD}", obs.error
    assert len(newrelic_fake.requests) == 1


@pytest.mark.parametrize("kind", ["cut_short", "cut_short:chunked"])
async def test_an_answer_cut_short_is_retried_as_a_connection_lost(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus, metrics: Metrics, kind: str
) -> None:
    """A 2xx whose body stops halfway (the connection dropped) did not come whole: a
    query is a read, asked again (the provider's retry policy), where it was said at once
    as "answered 200 (its body could not be read: …)" and not asked again."""
    prometheus_fake.fail(kind, times=1)
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert (obs.value, obs.error, len(prometheus_fake.requests)) == (1.0, None, 2)
    counted = {
        result: metrics.registry.get_sample_value(
            "postflight_provider_http_requests_total",
            {"provider": "prometheus", "result": result},
        )
        for result in ("error", "2xx")
    }
    assert counted == {"error": 1, "2xx": 1}  # the cut-short one as a connection lost


async def test_an_answer_always_cut_short_says_so_after_its_attempts(
    prometheus: PrometheusProvider, prometheus_fake: FakePrometheus
) -> None:
    prometheus_fake.fail("cut_short")
    prometheus_fake.set("up", 1.0)
    obs = await prometheus.fetch(rule(source="prometheus", query="up", max=2), scope(), AFTER, None)
    assert obs.value is None and obs.error is not None
    assert "could not reach Prometheus (answer cut short)" in obs.error, obs.error
    assert len(prometheus_fake.requests) == prometheus.max_attempts > 1

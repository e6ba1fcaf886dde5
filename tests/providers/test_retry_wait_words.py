"""What a fetch says when a provider asks for a wait shorter than a millisecond and the
fetch's budget has no room for another attempt: `retry in 0ms, past this fetch's 1s
budget` was said, where the wait was 0.4 ms and well within the budget (attempts are at
least 50 ms apart: that is what had no room)."""

from __future__ import annotations

import pytest
from aiohttp import web

from agent.metrics import Metrics
from agent.providers.prometheus import PrometheusProvider
from agent.providers.provider_settings import PrometheusSettings
from tests.fakes._server import Failure
from tests.fakes.prometheus import FakePrometheus
from tests.providers.support import AFTER, rule, scope

BUDGET_S = 1.0
LEFT_S = 0.049
"""What the fetch's budget has left when the 429 arrives: less than the 50 ms between
attempts, far more than the 0.4 ms asked for."""


@pytest.mark.timeout(30)
async def test_a_sub_millisecond_wait_with_no_room_to_retry_is_said_truly(
    prometheus_fake: FakePrometheus, metrics: Metrics
) -> None:
    original = prometheus_fake.failure_response

    def answer(failure: Failure, request: web.Request) -> web.StreamResponse:
        response = original(failure, request)
        response.headers["Retry-After"] = "0.0004"  # a fraction, as `common.retry_after` reads
        return response

    prometheus_fake.failure_response = answer  # type: ignore[method-assign]
    prometheus_fake.fail("429")
    prometheus_fake.delay = BUDGET_S - LEFT_S  # the answer comes with under 49 ms of budget left
    settings = {"url": prometheus_fake.url, "timeout": BUDGET_S, "request_timeout": BUDGET_S}
    provider = PrometheusProvider(PrometheusSettings.model_validate(settings), metrics=metrics)
    try:
        obs = await provider.fetch(
            rule(source="prometheus", query="up", max=2), scope(), AFTER, None
        )
    finally:
        await provider.aclose()
    assert obs.value is None and obs.error is not None
    assert len(prometheus_fake.requests) == 1, obs.error
    assert "0ms" not in obs.error and "past this fetch's" not in obs.error, obs.error
    assert obs.error == "Prometheus is rate limiting (429); no time left to retry", obs.error

"""A window whose baseline fetch the agent's own stall ran out of time: the provider is
not blamed, the baseline is asked again, the deploy is judged on it
(`agent.providers.agent_lag`).

The real daemon in-process (`start_agent`) with the fake Sentry and New Relic of
`tests.fakes`, on the agent's own loop: as one of them takes the baseline's request, a
callback holds that loop for 0.9 s (`time.sleep`), past the fetch's 600 ms budget, as a
GC pause or a starved machine does. Alerts are counted at the alert sink.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import SECRET, AgentFactory
from tests.e2e.providers_support import (
    NEWRELIC_KEY,
    SENTRY_TOKEN,
    GrowingSentry,
    alerting_yaml,
    deploy_second,
    environment_yaml,
    providers_yaml,
)
from tests.e2e.test_providers_e2e import NRQL, PREVIOUS, SENTRY_RULE, VERSION, judged, rule_of
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.sentry import SentryStats
from tests.receivers import JsonSink, RollbackReceiver, alert_titled, titled

pytestmark = pytest.mark.e2e

NEWRELIC_CEILING = f"""\
    - name: apm-latency
      source: newrelic
      nrql: "{NRQL}"
      max: 1.0
"""
"""An absolute rule: its baseline is only shown beside it, and one a provider failed to
give is not asked again; one the agent's stall cut is."""
STALL_S = 0.9


class Stall:
    """Holds the loop it shares with the agent for `STALL_S` as the first baseline request
    comes in (`every`: each baseline request), before it answers it (`armed`: this fake
    stalls): the agent's stall, during the fetch, and the fake's answer waiting behind it
    only as long."""

    armed = True
    every = False
    stalled_at: float | None = None

    def _stall_on(self, baseline: bool) -> None:
        if self.armed and baseline and (self.every or self.stalled_at is None):
            self.stalled_at = time.time()
            time.sleep(STALL_S)  # the stall under test: it holds the loop


class StallingSentry(Stall, GrowingSentry):
    async def _events(self, request: web.Request) -> web.Response:
        self._stall_on(PREVIOUS in request.query.get("query", ""))  # a baseline's query
        return await super()._events(request)


class StallingNewRelic(Stall, FakeNewRelic):
    async def _graphql(self, request: web.Request) -> web.Response:
        self._stall_on(True)  # a window's first query is its baseline's (no markers)
        return await super()._graphql(request)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[StallingSentry, StallingNewRelic]]:
    async with (
        StallingSentry(token=SENTRY_TOKEN) as sentry,
        StallingNewRelic(api_key=NEWRELIC_KEY) as newrelic,
    ):
        yield sentry, newrelic


@pytest.mark.parametrize("stalled", ["sentry", "newrelic"])
async def test_a_baseline_the_agents_stall_cut_is_asked_again_and_its_provider_not_blamed(
    stalled: str,
    fakes: tuple[StallingSentry, StallingNewRelic],
    rollback_receiver: Any,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Sentry's baseline (a relative rule) or New Relic's (an absolute one) runs out of its
    600 ms while the agent's loop is held 0.9 s. The old code alerted "provider sentry
    unreachable: Sentry did not answer within 600ms" though Sentry had answered, and never
    asked New Relic's again. Now nothing is alerted, the baseline is asked again at the
    next round and comes, and the healthy deploy passes on both rules."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    sentry_fake, newrelic_fake = fakes
    by_name: dict[str, Stall] = {"sentry": sentry_fake, "newrelic": newrelic_fake}
    by_name["newrelic" if stalled == "sentry" else "sentry"].armed = False
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.01, since=t0)
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    agent = await start_agent(
        environment_yaml(
            SENTRY_RULE + NEWRELIC_CEILING,
            rollback_url=receiver.url,
            secret=SECRET,
            interval="250ms",
            lookback="5s",
            pass_on="no_failure",
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(
            sentry=sentry_fake,
            newrelic=newrelic_fake,
            timeout="600ms",
            request_timeout="300ms",
            max_attempts=2,
        ),
    )
    final = await judged(agent, t0, 3.0)
    await alert_titled(json_sink, "deploy passed")  # the window's last alert has come

    assert by_name[stalled].stalled_at is not None, "the stall never came"
    # the stall is the agent's: it cut the baseline, and no provider is blamed
    assert agent.metric("postflight_provider_agent_stalls_total", provider=stalled) >= 1
    for provider in by_name:
        errors = agent.metric(
            "postflight_provider_requests_total", provider=provider, result="error"
        )
        assert errors == 0, provider
    assert titled(json_sink, "provider ") == [], [n.title for n in json_sink.notifications]
    # asked again, and come: the relative rule judged on it, the absolute one shows it
    assert final["state"] == "passed" and final["rollback"] is None, final
    assert receiver.attempts == []
    assert rule_of(final, "sentry-errors")["outcome"] == "pass", final["verdict"]
    assert rule_of(final, "sentry-errors")["baseline"] == pytest.approx(0.01)
    assert rule_of(final, "apm-latency")["outcome"] == "pass", final["verdict"]
    assert rule_of(final, "apm-latency")["baseline"] == pytest.approx(0.2)


async def test_a_rule_whose_baseline_the_agents_stall_never_let_it_read_says_so(
    fakes: tuple[StallingSentry, StallingNewRelic],
    rollback_receiver: Any,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Each of Sentry's baseline requests holds the agent's loop 0.9 s, past the fetch's
    600 ms; its figures since the deploy are read. The relative rule never gets its
    baseline: the old code alerted "provider sentry unreachable: Sentry did not answer
    within 600ms" and ended it "no baseline to compare with"; now no provider is blamed,
    and the inconclusive rule says the agent was overloaded, in the verdict and the end
    alert."""
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    sentry_fake, _ = fakes
    sentry_fake.every = True
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.01, since=t0)
    agent = await start_agent(
        environment_yaml(
            SENTRY_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            interval="250ms",
            lookback="5s",
            pass_on="no_failure",
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake, timeout="600ms", request_timeout="300ms"),
    )
    final = await judged(agent, t0, 2.0)
    ended = await alert_titled(json_sink, "inconclusive")

    assert final["state"] == "inconclusive" and final["rollback"] is None, final
    assert receiver.attempts == []
    assert titled(json_sink, "provider ") == [], [n.title for n in json_sink.notifications]
    rule = rule_of(final, "sentry-errors")
    assert rule["baseline"] is None
    assert rule["detail"].startswith("no baseline to compare with"), rule["detail"]
    assert "baseline not read: agent overloaded" in rule["detail"], rule["detail"]
    assert "not a Sentry failure" in rule["detail"], rule["detail"]
    assert "baseline not read: agent overloaded" in ended.message, ended.message
    sentry = {
        result: agent.metric("postflight_provider_requests_total", provider="sentry", result=result)
        for result in ("ok", "error")
    }
    sentry["stalls"] = agent.metric("postflight_provider_agent_stalls_total", provider="sentry")
    assert sentry["error"] == 0 and sentry["stalls"] >= 2 and sentry["ok"] >= 1, sentry

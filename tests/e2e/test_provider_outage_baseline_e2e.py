"""A Sentry `error_rate` baseline of the previous release's period taken while the service
was down (half its minute buckets failed whole, 50% errors): the window says so as it
opens, the next registration foresees it, and an absolute bound passes a healthy release
on its own rounds, as over a checks baseline probed during an outage
(tests/analysis/test_outage_baseline.py; `bench/outage_baseline_rho.py --provider`).

The real daemon (in-process, `start_agent`) against the fake Sentry of `tests.fakes`,
answering the documented shapes (`events-timeseries` buckets with their `sampleCount`)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.e2e.conftest import SECRET, AgentFactory
from tests.e2e.providers_support import (
    SENTRY_TOKEN,
    GrowingSentry,
    alerting_yaml,
    deploy_second,
    environment_yaml,
    iso_z,
    providers_yaml,
)
from tests.fakes.sentry import SentryStats
from tests.receivers import JsonSink, RollbackReceiver

pytestmark = pytest.mark.e2e

PREVIOUS, VERSION, NEXT = "v2.4.0", "v2.4.1", "v2.4.2"
RULE = """\
    - name: sentry-errors
      source: sentry
      metric: error_rate
      max: 0.05
"""
DOWN = (400, 400)
UP = (400, 2)
BUCKETS = (DOWN,) * 5 + (UP,) * 5 + ((0, 0),)
"""The 10-minute lookback's minute buckets (spans stored, failed): five failed whole, then
five at 0.5%; an eleventh, empty, for a lookback that straddles eleven minutes."""
OUTAGE = SentryStats(
    transactions=4000, failure_rate=0.5025, errors=0, failed_stored=2010, buckets=BUCKETS
)
SAID = (
    "rule sentry-errors: its baseline is 50% errors (2,010 of 4,000 sentry events in the"
    " lookback, {period}, failed): the previous release measured while the service was"
    " down, or before it was up? its max 5% is judged on the release's own events, not on"
    " these"
)


async def test_a_healthy_release_over_a_sentry_outage_baseline_is_said_so_and_passes(
    rollback_receiver: Any,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The new release at 0.5% errors, 400 events a second, against `max 0.05`: it passes
    on evidence, as over calm buckets, where it ended inconclusive over these, whose
    burstiness (rho near 1: the outage's) was read as the release's, and nothing said the
    baseline looked like an outage."""
    caplog.set_level(logging.WARNING)
    receiver: RollbackReceiver = await rollback_receiver(SECRET)
    async with GrowingSentry(token=SENTRY_TOKEN) as sentry_fake:
        await _judged_and_foreseen(sentry_fake, receiver, json_sink, start_agent, caplog)


async def _judged_and_foreseen(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t0 = deploy_second()
    sentry_fake.set_stats(OUTAGE, release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.005, since=t0)
    agent = await start_agent(
        environment_yaml(
            RULE, rollback_url=receiver.url, secret=SECRET, window="6s", newrelic=False
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake),
    )
    deploy = await agent.register(
        "production", VERSION, previous_version=PREVIOUS, deployed_at=iso_z(t0)
    )
    final = await agent.settled(deploy["id"], within=25)
    (rule,) = final["verdict"]["rules"]
    assert final["state"] == "passed", final["verdict"]
    assert rule["baseline"] == pytest.approx(0.5025), rule
    assert (
        "(on the release's own rounds: its baseline, 50% errors, looks measured over the"
        " previous release while the service was down, so the outage's bursts are not read"
        " as the release's)"
    ) in rule["detail"], rule["detail"]
    opened = SAID.format(period="the previous release's period")
    logged = [r for r in caplog.records if r.getMessage() == opened]
    assert [getattr(r, "deploy_id", None) for r in logged] == [deploy["id"]], caplog.text
    assert not receiver.attempts

    # the next registration foresees it from the window just ended, which stored it
    later = await agent.register("production", NEXT, previous_version=VERSION)
    foreseen = SAID.format(
        period="the environment's last window's (this one's is fetched as it opens)"
    )
    assert foreseen in later.get("warnings", []), later

"""A provider whose fetches keep failing is one WARNING when they start, at most one a
minute while they go on (counting those in between), and one INFO when it answers again
(`agent.providers.outages`). Found in a live audit: a Sentry down through a 12 s window
of 1 s rounds logged 24 identical WARNINGs (the baseline's fetch and the round's, every
round), where the window alerted once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.outages import REMIND_EVERY_S, FailingFetches
from agent.providers.sentry import SentryProvider
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import (
    AFTER,
    BEFORE,
    T0,
    requests_counted,
    rule,
    scope,
    sentry_settings,
)

LOGGER = "agent.providers.client"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
async def sentry(sentry_fake: FakeSentry, metrics: Metrics) -> AsyncIterator[SentryProvider]:
    """One attempt per fetch: a 500 is failed at once, with no backoff to wait."""
    provider = SentryProvider(sentry_settings(sentry_fake, max_attempts=1), metrics=metrics)
    yield provider
    await provider.aclose()


@pytest.fixture
def clock(sentry: SentryProvider) -> Clock:
    """The provider's outage log on a clock the test moves."""
    clock = Clock()
    sentry.failing = FailingFetches("sentry", logging.getLogger(LOGGER), clock)
    return clock


async def test_a_provider_down_for_many_rounds_is_one_line_then_one_a_minute_then_back(
    sentry: SentryProvider,
    sentry_fake: FakeSentry,
    clock: Clock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sentry_fake.set_stats(SentryStats(transactions=2000, failure_rate=0.01), release="v2.4.0")
    sentry_fake.set_stats(SentryStats(transactions=500, failure_rate=0.01), release="v2.4.1")
    r = rule(source="sentry", metric="error_rate", max_increase="100%")
    sentry_fake.fail("500")

    # ten rounds, each asking for the baseline again and for the figures since the deploy
    for n in range(10):
        clock.now += 5
        assert (await sentry.fetch(r, scope(), BEFORE, "v2.4.0")).error
        period = Period(T0, T0 + 10 * (n + 1))
        assert (await sentry.fetch(r, scope(), period, "v2.4.1")).error
    assert requests_counted(metrics, "sentry", "error") == 20  # the metric counts every one
    ((level, said),) = lines(caplog)
    assert level == "WARNING"
    assert said.startswith(f"sentry: rule {r.name} (baseline): Sentry answered 500")
    assert "said again at most once a minute" in said

    # a minute after that line: one reminder, counting the fetches it did not log
    clock.now += REMIND_EVERY_S
    assert (await sentry.fetch(r, scope(), AFTER, "v2.4.1")).error
    (_, reminder) = lines(caplog)[1]
    assert reminder.startswith(f"sentry: still failing, for 1m45s: rule {r.name} (since the")
    assert reminder.endswith("(19 more failed fetches since the last such line)")

    # Sentry answers again: one INFO line, and nothing more while it does
    sentry_fake.heal()
    clock.now += 1
    for _ in range(3):
        assert (await sentry.fetch(r, scope(), BEFORE, "v2.4.0")).error is None
    assert len(lines(caplog)) == 3
    level, back = lines(caplog)[2]
    assert level == "INFO"
    assert back == f"sentry answers again (rule {r.name} (baseline)), after 1m46s of failed fetches"

    # down again: said at once, as a new outage
    sentry_fake.fail("503")
    assert (await sentry.fetch(r, scope(), AFTER, "v2.4.1")).error
    assert len(lines(caplog)) == 4
    assert lines(caplog)[3][1].startswith(f"sentry: rule {r.name} (since the deploy): Sentry")


def test_one_rule_failing_alone_is_no_outage_ended_and_begun_each_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rule that fails while the provider answers the others (a query too slow, a bad
    NRQL) keeps its outage open: the others' answers do not say it is over."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = Clock()
    failing = FailingFetches("newrelic", logging.getLogger(LOGGER), clock)
    for _ in range(30):  # 30 rounds of 5 s: a line, then one reminder a minute
        clock.now += 5
        failing.answered(("production", "apm-throughput"), "apm-throughput (since the deploy)")
        failing.failed(("production", "apm-latency"), "apm-latency (since the deploy)", "timeout")
    said = lines(caplog)
    assert [level for level, _ in said] == ["WARNING", "WARNING", "WARNING"], said
    assert said[1][1].endswith("(11 more failed fetches since the last such line)")

    # the failing rule answers: over
    failing.answered(("production", "apm-latency"), "apm-latency (since the deploy)")
    assert lines(caplog)[-1][0] == "INFO"
    assert not failing.down


def test_an_outage_whose_rules_went_with_their_window_ends_with_any_answer_a_minute_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The rules that failed may belong to a window that ended meanwhile: once no fetch
    has failed for a minute, any rule's answer ends the outage."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = Clock()
    failing = FailingFetches("sentry", logging.getLogger(LOGGER), clock)
    failing.failed(("staging", "errors"), "errors (since the deploy)", "Sentry answered 500")
    clock.now += 10
    failing.answered(("production", "errors"), "errors (since the deploy)")
    assert failing.down  # a fetch failed 10 s ago
    clock.now += REMIND_EVERY_S
    failing.answered(("production", "errors"), "errors (since the deploy)")
    assert not failing.down
    assert [level for level, _ in lines(caplog)] == ["WARNING", "INFO"]


async def test_a_fetch_the_agents_own_stall_cut_neither_begins_nor_ends_an_outage(
    sentry: SentryProvider, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Logged as before (it is the agent's, `agent.providers.agent_lag`), each time."""
    lagged = Observation(value=None, error="agent overloaded: …", agent_lag=True)

    async def stalled(plan: object) -> Observation:
        return lagged

    sentry._single_flight = stalled  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger=LOGGER)
    r = rule(source="sentry", metric="error_rate", max_increase="100%")
    for _ in range(2):
        await sentry.fetch(r, scope(), AFTER, "v2.4.1")
    assert not sentry.failing.down
    said = f"sentry: rule {r.name} (since the deploy): agent overloaded: …"
    assert [m for _, m in lines(caplog)] == [said, said]

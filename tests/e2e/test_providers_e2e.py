"""Baselines from Sentry, New Relic and Prometheus, end to end (issue 4's acceptance).

The real daemon (in-process, `start_agent`) watches deploys whose only evidence comes
from the providers: the fake Sentry and New Relic servers of `tests.fakes`, answering
the documented shapes, and a real Prometheus (Debian package `prometheus`, the worker's
one, `tests.prometheus`) scraping local counters the tests drive, a lane of each test's own.

- a Sentry error rate going 1% → 12% (previous release vs the new one) is rolled back,
  under the default `sequential` policy and under `threshold`;
- a New Relic p95 going 0.2 s → 0.9 s is rolled back;
- a PromQL 5xx ratio crossing its bound is rolled back;
- a healthy deploy during which one provider fails (500, 429, hang past the timeout,
  malformed JSON, 401) for the whole window ends `inconclusive` (its rule had no data in
  any round; it passed on the other rules, under `pass_on: no_failure`): no rollback, that
  provider's rule inconclusive and named in the end alert, one `provider_unreachable`
  alert for that provider in the window, and its failures counted in
  `postflight_provider_requests_total{result="error"}`.

Without the Prometheus binary the tests that need it are skipped with the reason
(and fail under POSTFLIGHT_REQUIRE_ALL=1, see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from agent.appkeys import STORE
from tests.e2e.conftest import SECRET, AgentFactory, RunningAgent
from tests.e2e.providers_support import (
    BAD_RATES,
    NEWRELIC_KEY,
    NEWRELIC_WEB,
    SENTRY_TOKEN,
    GrowingSentry,
    PrometheusProxy,
    alerting_yaml,
    deploy_second,
    environment_yaml,
    iso_z,
    providers_yaml,
    ratio_query,
)
from tests.fakes.newrelic import FakeNewRelic
from tests.fakes.sentry import EMPTY, SentryStats
from tests.prometheus import ONE_PROMETHEUS, LaneFactory, PrometheusStack
from tests.receivers import JsonNotification, JsonSink, RollbackReceiver, alert_titled, titled

pytestmark = pytest.mark.e2e

PREVIOUS, VERSION = "v2.4.0", "v2.4.1"
PROMETHEUS_PASSWORD = "prom-basic-auth-pw"
NRQL = "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web (production)'"

SENTRY_RULE = """\
    - name: sentry-errors
      source: sentry
      metric: error_rate
      max_increase: 100%
"""
NEWRELIC_RULE = f"""\
    - name: apm-latency
      source: newrelic
      nrql: "{NRQL}"
      max_increase: 50%
"""


def prometheus_rule(query: str) -> str:
    return f"""\
    - name: http-5xx
      source: prometheus
      query: '{query}'
      max: 0.05
"""


# ------------------------------------------------------------------ fixtures


@pytest.fixture
async def sentry_fake() -> AsyncIterator[GrowingSentry]:
    async with GrowingSentry(token=SENTRY_TOKEN) as fake:
        yield fake


@pytest.fixture
async def newrelic_fake() -> AsyncIterator[FakeNewRelic]:
    async with FakeNewRelic(api_key=NEWRELIC_KEY) as fake:
        yield fake


@pytest.fixture
async def receiver(rollback_receiver: Any) -> RollbackReceiver:
    made: RollbackReceiver = await rollback_receiver(SECRET)
    return made


# ------------------------------------------------------------------- helpers


def rule_of(deploy: dict[str, Any], name: str) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {r["name"]: r for r in deploy["verdict"]["rules"]}
    assert name in rules, deploy["verdict"]
    return rules[name]


async def register(agent: RunningAgent, t0: int, watch_for: float | None = None) -> dict[str, Any]:
    """Register VERSION (replacing PREVIOUS) as deployed at `t0`, a whole second (what
    the fakes key their answers on); `watch_for`: seconds from now the window lasts
    (the window counts from `t0`, up to a second ago)."""
    extra: dict[str, Any] = {"previous_version": PREVIOUS, "deployed_at": iso_z(t0)}
    if watch_for is not None:
        extra["window"] = round(watch_for + time.time() - t0, 3)
    return await agent.register("production", VERSION, **extra)


async def judged(agent: RunningAgent, t0: int, watch_for: float) -> dict[str, Any]:
    """The deploy `register(agent, t0, watch_for)` registers, once its window ended."""
    deploy = await register(agent, t0, watch_for=watch_for)
    return await agent.settled(deploy["id"], within=20)


def requests(agent: RunningAgent, provider: str, result: str) -> float:
    return agent.metric("postflight_provider_requests_total", provider=provider, result=result)


def stalls(agent: RunningAgent, provider: str) -> float:
    """The provider's fetches the agent's own stall ran out of time (`agent_lag`)."""
    return agent.metric("postflight_provider_agent_stalls_total", provider=provider)


async def assert_rolled_back_once(
    agent: RunningAgent, receiver: RollbackReceiver, deploy_id: str, rule: str
) -> dict[str, Any]:
    """The window ends rolled back by `rule`, the webhook got exactly one valid call."""
    final = await agent.settled(deploy_id, within=20)
    assert final["state"] == "rolled_back", json.dumps(final["verdict"])
    assert final["verdict"]["outcome"] == "fail"
    assert final["verdict"]["reason"].startswith(f"{rule}:"), final["verdict"]["reason"]
    assert final["rollback"]["state"] == "delivered"
    assert len(receiver.attempts) == 1, receiver.attempts
    attempt = receiver.attempts[0]
    assert attempt.signature_ok and attempt.accepted
    assert attempt.idempotency_key == deploy_id
    body = json.loads(attempt.body)
    assert body["event"] == "rollback"
    assert [b["rule"] for b in body["breaches"]] == [rule]
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="delivered")
        == 1
    )
    return final


async def sentry_agent(
    start_agent: AgentFactory,
    policy: str,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    sentry_fake: GrowingSentry,
    window: str = "12s",
) -> RunningAgent:
    """An agent judging SENTRY_RULE alone over a 12 s window: the rollback ends it at its
    fourth round or so (a few rounds after a baseline asked again); the rest is for a busy
    machine, whose slow start and late baseline (or a first round spent on a failing
    baseline query's retries) left 2 rounds with data of a 6 s window: too few to tell,
    inconclusive (likelihood ratio 10 of 155). A window that runs to its end takes a
    shorter `window`."""
    return await start_agent(
        environment_yaml(
            SENTRY_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            window=window,
            policy=policy,
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake),
    )


def failed_of(rule: dict[str, Any]) -> tuple[int, int]:
    """(failed, events) of an error-rate rule's detail: `12 of 98 events failed`."""
    found = re.match(r"([\d,]+) of ([\d,]+) events failed", rule["detail"])
    assert found is not None, rule["detail"]
    failed, events = (int(n.replace(",", "")) for n in found.groups())
    return failed, events


def assert_evidence(rule: dict[str, Any]) -> None:
    """A failing provider rule explains itself: observed, baseline, threshold, link
    (the query is checked last, by `assert_query_shown`)."""
    assert rule["outcome"] == "fail", rule
    for key in ("observed", "baseline", "threshold", "link"):
        assert rule.get(key) not in (None, ""), f"rule has no {key}: {rule}"


async def assert_query_shown(agent: RunningAgent, final: dict[str, Any], name: str) -> str:
    """The query used is part of a rule's evidence: in the verdict the daemon stores,
    and in the verdict `GET /v1/deploys/{id}` shows. Returns it."""
    window = await agent.app[STORE].get_window(final["id"])
    assert window is not None and window.verdict is not None
    stored = {r["name"]: r for r in window.verdict["rules"]}[name]
    assert stored.get("query"), f"the stored verdict rule has no query: {stored}"
    shown = rule_of(final, name)
    assert shown.get("query") == stored["query"], (
        f"GET /v1/deploys/{{id}}: verdict rule {name!r} does not show the query used"
        f" ({stored['query']!r}); it shows: {shown}"
    )
    query: str = shown["query"]
    return query


# ----------------------------------------------------------- 1. Sentry 1 → 12%


@pytest.mark.parametrize("policy", ["sequential", "threshold"])
async def test_sentry_error_rate_from_1_to_12_percent_is_rolled_back(
    policy: str,
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    t0 = deploy_second()
    # the previous release over the hour before: 20,000 transactions, 1% failed
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    # the new release from T0 on: 400 transactions a second, 12% failing
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.12, since=t0)
    agent = await sentry_agent(start_agent, policy, receiver, json_sink, sentry_fake)
    deploy = await register(agent, t0)

    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "sentry-errors")

    rule = rule_of(final, "sentry-errors")
    assert_evidence(rule)
    assert rule["source"] == "sentry" and rule["metric"] == "error_rate"
    assert rule["baseline"] == pytest.approx(0.01)
    # the new release's own events (the failing round's, or the window's): 12% of them,
    # to the one event the fake's rounding of its cumulative counts moves a round's share
    # by; a band on the rate alone failed a round of 13 events (2 failed: 0.154), the
    # 33 ms between two answers a busy machine's late one left
    failed, total = failed_of(rule)
    assert rule["observed"] == pytest.approx(failed / total)
    assert abs(failed - 0.12 * total) < 1, rule["detail"]
    assert "100%" in rule["threshold"]
    link = urlsplit(rule["link"])
    assert f"{link.scheme}://{link.netloc}" == sentry_fake.url
    assert link.path.startswith(f"/organizations/{sentry_fake.org}/")
    assert f'release:"{VERSION}"' in parse_qs(link.query)["query"][0]

    # what Sentry was asked: the previous release before T0, the new one after
    events = sentry_fake.seen("/events/")
    releases = [sentry_fake.release_of(e.param("query") or "") for e in events]
    assert releases[0] == PREVIOUS and iso_z(t0) == events[0].param("end")
    assert set(releases[1:]) == {VERSION} and len(releases) >= 2
    assert all(e.param("start") == iso_z(t0) for e in events[1:])

    # on-call hears it with the evidence and a link to the Sentry page
    requested = await alert_titled(json_sink, "rollback requested")
    assert "sentry-errors" in requested.message
    assert f"(details: <{rule['link']}>)" in requested.message
    assert requests(agent, "sentry", "error") == 0
    assert requests(agent, "sentry", "ok") >= 2

    query = await assert_query_shown(agent, final, "sentry-errors")
    assert "failure_rate()" in query and f'release:"{VERSION}"' in query


async def test_sentry_p95_from_200ms_to_900ms_is_rolled_back_reading_every_page(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """README: `p95_duration` via `p95(span.duration)` on the `spans` dataset with
    `is_transaction:true`, plus sampled durations read through Link-header pagination.
    Through the real daemon: the new release's p95 of 900 ms against the previous
    release's 200 ms is rolled back; at the fake Sentry, the page a `rel="next"` with
    `results="true"` named was asked for, and none past the one whose next said
    `results="false"`."""
    t0 = deploy_second()
    # the previous release's 150 transactions: a page of 100, then one of 50 whose Link
    # says `results="false"` for the next
    sentry_fake.set_stats(SentryStats(transactions=150, p95_ms=200.0), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.01, since=t0, p95_ms=900.0)
    rule = """\
    - name: sentry-p95
      source: sentry
      metric: p95_duration
      max_increase: 50%
"""
    agent = await start_agent(
        environment_yaml(
            rule, rollback_url=receiver.url, secret=SECRET, window="12s", newrelic=False
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake),
    )
    deploy = await register(agent, t0)

    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "sentry-p95")

    shown = rule_of(final, "sentry-p95")
    assert_evidence(shown)
    assert shown["baseline"] == pytest.approx(0.2, rel=0.05), shown
    assert shown["observed"] == pytest.approx(0.9, rel=0.05), shown
    aggregates = [
        e for e in sentry_fake.seen("/events/") if "p95(span.duration)" in e.params("field")
    ]
    assert aggregates, [e.query for e in sentry_fake.seen("/events/")]
    for asked in aggregates:
        assert asked.param("dataset") == "spans", asked.query
        assert "is_transaction:true" in (asked.param("query") or ""), asked.query
    pages = [
        e.param("cursor") or "first"
        for e in sentry_fake.seen("/events/")
        if (e.params("field") or [""])[0] == "span.duration"
        and sentry_fake.release_of(e.param("query") or "") == PREVIOUS
    ]
    assert pages == ["first", "0:100:0"], pages  # both pages, once, and no third
    query = await assert_query_shown(agent, final, "sentry-p95")
    assert "p95(span.duration)" in query


async def a_failing_release_sentry_will_not_show(
    start_agent: AgentFactory,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    sentry: GrowingSentry,
) -> tuple[dict[str, Any], JsonNotification]:
    """A 12%-errors release judged through the real daemon by `sentry`, which refuses
    to show it (the test's scopes or environments): the window ends inconclusive, its
    rule inconclusive, nothing rolled back, and one alert of `sentry` in the window.
    Returns the rule and that alert."""
    t0 = deploy_second()
    sentry.grow(VERSION, per_second=400, failure_rate=0.12, since=t0)
    agent = await sentry_agent(start_agent, "sequential", receiver, json_sink, sentry, "3s")
    final = await judged(agent, t0, 2.5)
    assert final["state"] == "inconclusive" and final["rollback"] is None, final
    rule = rule_of(final, "sentry-errors")
    assert rule["outcome"] == "inconclusive", rule
    assert receiver.attempts == []
    (alert,) = titled(json_sink, "provider sentry ")  # once in the window
    return rule, alert


async def test_a_sentry_token_without_project_read_is_one_alert_naming_the_scope(
    receiver: RollbackReceiver, json_sink: JsonSink, start_agent: AgentFactory
) -> None:
    """README: a 403 names the `project:read` scope. Through the real daemon, a token
    with `org:read` alone: the rule inconclusive, never a rollback, and one "answered,
    but not usably" alert naming the scope and the setting, not the token."""
    async with GrowingSentry(token=SENTRY_TOKEN, scopes={"org:read"}) as sentry:
        _, alert = await a_failing_release_sentry_will_not_show(
            start_agent, receiver, json_sink, sentry
        )
    assert alert.title.endswith(": provider sentry answered, but not usably"), alert.title
    assert "403" in alert.message and "project:read" in alert.message, alert.message
    assert "providers.sentry.token" in alert.message and SENTRY_TOKEN not in alert.message


async def test_an_environment_sentry_has_not_seen_is_no_data_yet_never_a_rollback(
    receiver: RollbackReceiver, json_sink: JsonSink, start_agent: AgentFactory
) -> None:
    """README: an environment Sentry has not seen yet is "no data yet" (inconclusive).
    Through the real daemon, a Sentry that knows `staging` only (its 404 for
    `production`): the rule says so, nothing is rolled back, and the one alert says
    "not yet" (the environment comes with its first event), not "waiting will not help"."""
    async with GrowingSentry(token=SENTRY_TOKEN, environments={"staging"}) as sentry:
        rule, alert = await a_failing_release_sentry_will_not_show(
            start_agent, receiver, json_sink, sentry
        )
    said = "no data yet for environment 'production': Sentry has seen no event there (404)"
    assert said in rule["detail"], rule
    assert said in alert.message, alert.message
    # the environment appears with its first event: not yet, rather than wrong
    assert "no data here yet" in alert.message, alert.message
    assert "waiting will not help" not in alert.message, alert.message


@pytest.mark.parametrize("policy", ["sequential", "threshold"])
async def test_a_baseline_sentry_failed_at_the_start_is_asked_again_and_judged(
    policy: str,
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Sentry answers 500 to the window's first baseline query (every retry of it), then
    recovers. The rule is inconclusive only until its baseline comes: it is asked again
    the next round, and the 12% release is rolled back against it, not passed for want
    of one. On-call hears of the outage once."""
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.12, since=t0)

    def baseline_query(request: web.Request) -> bool:
        return sentry_fake.release_of(request.query.get("query", "")) == PREVIOUS

    sentry_fake.fail("500", match=baseline_query)  # until healed, below
    agent = await sentry_agent(start_agent, policy, receiver, json_sink, sentry_fake)
    deploy = await register(agent, t0)
    await agent.wait_until(deploy["id"], lambda d: d["rounds"] >= 1)
    sentry_fake.heal()

    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "sentry-errors")
    assert rule_of(final, "sentry-errors")["baseline"] == pytest.approx(0.01)
    # the first fetch did fail (this alert says so), so the baseline is the one asked again
    outage = await alert_titled(json_sink, "provider sentry unreachable")
    assert "no baseline yet" in outage.message
    assert len(titled(json_sink, "provider sentry unreachable")) == 1


async def test_a_sentry_rate_past_1_is_inconclusive_with_one_alert_never_a_rollback(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Sentry answers the new release's `failure_rate()` as 1.5 (the documented 0..1
    share, or a percentage's 1.5 %: not a share either way): a provider answering
    unusably, inconclusive, one alert naming the column, no rollback (the judge alone
    reads 1.5 as every transaction failed: a fail on evidence)."""
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=1.5, since=t0)
    agent = await sentry_agent(
        start_agent, "sequential", receiver, json_sink, sentry_fake, window="3s"
    )
    # the window counts 2.5 s from the registration, not from `t0`: on a loaded
    # machine the agent's start alone took 2.7 s of a 3 s window (1 round, not 2)
    final = await judged(agent, t0, 2.5)

    assert final["state"] == "inconclusive", json.dumps(final["verdict"])
    assert final["rollback"] is None and receiver.attempts == []
    assert rule_of(final, "sentry-errors")["outcome"] == "inconclusive"
    assert final["rounds"] >= 2, final
    (alert,) = titled(json_sink, "provider sentry ")
    assert alert.title.endswith(outage_title("sentry", "malformed")), alert.title
    # 1.5 of the stored transactions rounded (1.49919: 2,997 failed of 1,999)
    assert re.search(r"'failure_rate\(\)' is 1\.\d+, not a fraction from 0 to 1", alert.message), (
        alert.message
    )
    assert SENTRY_TOKEN not in alert.message


ERROR_COUNT_RULE = """\
    - name: sentry-error-count
      source: sentry
      metric: error_count
      max: 100
"""


async def sdk_names_releases_web_at_version(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    sentry_release: str | None,
) -> tuple[RunningAgent, dict[str, Any]]:
    """The app's SDK names its releases `web@<version>`; the new one has 3000 errors."""
    sentry_fake.set_stats(SentryStats(errors=10), release=f"web@{PREVIOUS}")
    sentry_fake.set_stats(SentryStats(errors=3000), release=f"web@{VERSION}")
    return await watch_error_count(sentry_fake, receiver, json_sink, start_agent, sentry_release)


async def watch_error_count(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    sentry_release: str | None,
) -> tuple[RunningAgent, dict[str, Any]]:
    """A window judging ERROR_COUNT_RULE on what `sentry_fake` serves."""
    t0 = deploy_second()
    agent = await start_agent(
        environment_yaml(
            ERROR_COUNT_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            window="3s",
            policy="threshold",
            newrelic=False,
            sentry_release=sentry_release,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake),
    )
    # the window counts 2.5 s from the registration, not 3 s from `t0`: the agent's
    # start on a loaded machine can take most of 3 s (1 round where a rollback needs 2)
    return agent, await register(agent, t0, watch_for=2.5)


async def test_an_error_count_of_the_release_named_as_the_sdk_does_is_rolled_back(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    agent, deploy = await sdk_names_releases_web_at_version(
        sentry_fake, receiver, json_sink, start_agent, "web@{version}"
    )
    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "sentry-error-count")
    rule = rule_of(final, "sentry-error-count")
    assert (rule["observed"], rule["baseline"]) == (3000, 10)
    assert f'release:"web@{VERSION}"' in parse_qs(urlsplit(rule["link"]).query)["query"][0]


async def test_a_negative_sentry_error_count_is_inconclusive_with_one_alert_never_a_pass(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Sentry answers `count()` -5 for the new release's errors: no count at all, where
    the window passed on it (-5 errors within `max: 100`)."""
    sentry_fake.set_stats(SentryStats(errors=10), release=PREVIOUS)
    sentry_fake.set_stats(SentryStats(errors=-5), release=VERSION)
    agent, deploy = await watch_error_count(sentry_fake, receiver, json_sink, start_agent, None)

    final = await agent.settled(deploy["id"], within=20)

    assert final["state"] == "inconclusive", json.dumps(final["verdict"])
    assert final["rollback"] is None and receiver.attempts == []
    assert titled(json_sink, "deploy passed") == []
    (alert,) = titled(json_sink, "provider sentry ")
    assert alert.title.endswith(outage_title("sentry", "malformed")), alert.title
    assert "'count()' is -5, not a count" in alert.message, alert.message


def error_count_queries(sentry_fake: GrowingSentry) -> tuple[list[str | None], int]:
    """The releases the window's error counts asked for, and how many groupings by
    release (no release filter) it asked besides."""
    events = sentry_fake.seen("/events/")
    grouped = [e for e in events if e.params("field") == ["release", "count()"]]
    counts = [sentry_fake.release_of(e.param("query") or "") for e in events if e not in grouped]
    return counts, len(grouped)


async def test_an_error_count_of_a_release_sentry_does_not_know_never_passes(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Asked for `release:"v2.4.1"`, Sentry answered 0 errors (it knows only
    `web@v2.4.1`), and `max: 100` passed a release with 3000. Now the rule has no data
    and on-call hears what to set."""
    agent, deploy = await sdk_names_releases_web_at_version(
        sentry_fake, receiver, json_sink, start_agent, None
    )
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "inconclusive", final
    assert rule_of(final, "sentry-error-count")["outcome"] == "inconclusive"
    assert receiver.attempts == []
    alert = await alert_titled(json_sink, "provider sentry answered, but not usably")
    # the window's one Sentry alert: the baseline's (the previous release's) or the new one's
    assert "errors in this period, none of release" in alert.message
    assert "(a name Sentry does not know)" in alert.message
    assert 'baseline.sentry.release (e.g. "web@{version}")' in alert.message
    assert len(titled(json_sink, "provider sentry")) == 1
    counts, grouped = error_count_queries(sentry_fake)
    assert set(counts) == {PREVIOUS, VERSION} and grouped == len(counts)  # each read 0
    lookups = sentry_fake.seen("/releases/")
    assert {r.path.rsplit("/", 2)[-2] for r in lookups} <= {PREVIOUS, VERSION}
    assert len(lookups) <= len(counts)  # at most one per count that read 0


async def test_a_quiet_release_correctly_named_with_no_error_yet_passes(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Error-only SDK, no error in either release: Sentry knows neither (404), and that
    must not page anyone. Each 0 costs one grouping by release, nothing else."""
    agent, deploy = await watch_error_count(
        sentry_fake, receiver, json_sink, start_agent, "web@{version}"
    )
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final
    assert rule_of(final, "sentry-error-count")["observed"] == 0
    assert titled(json_sink, "provider sentry") == []
    counts, grouped = error_count_queries(sentry_fake)
    assert set(counts) == {f"web@{PREVIOUS}", f"web@{VERSION}"}
    assert grouped == len(counts)
    assert sentry_fake.seen("/releases/") == []


async def test_a_canary_whose_previous_release_errs_while_the_new_has_no_event_passes(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Rolling deploy: the previous release still serves, and errs, in the current
    period; the new one is correctly named but has had no event (Sentry: 404). The
    period's errors are the previous release's: no misnaming, no alert."""
    sentry_fake.set_stats(SentryStats(errors=60), release=PREVIOUS)
    agent, deploy = await watch_error_count(sentry_fake, receiver, json_sink, start_agent, None)
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final
    rule = rule_of(final, "sentry-error-count")
    assert (rule["observed"], rule["baseline"]) == (0, 60)
    assert titled(json_sink, "provider sentry") == []
    counts, grouped = error_count_queries(sentry_fake)
    assert grouped == counts.count(VERSION) > 0  # the new release's 0s only
    assert sentry_fake.seen("/releases/") == []


async def test_a_release_the_providers_have_nothing_of_is_inconclusive_saying_why(
    sentry_fake: GrowingSentry,
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """The providers answer, with nothing to measure since the deploy (no transactions
    of the new release in Sentry, no NRQL row): inconclusive, never a pass or a
    rollback, and each rule says why and what to check, where they said "no data (no
    data)" (a live audit)."""
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.set_stats(EMPTY, release=VERSION)
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    newrelic_fake.answer(NRQL, [], since=t0)
    agent = await start_agent(
        environment_yaml(
            SENTRY_RULE + NEWRELIC_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            window="2s",
            interval="250ms",
            lookback="5s",
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake, newrelic=newrelic_fake),
    )
    final = await judged(agent, t0, 1.5)
    assert final["state"] == "inconclusive", final
    assert final["rollback"] is None and receiver.attempts == []
    sentry_rule, apm = rule_of(final, "sentry-errors"), rule_of(final, "apm-latency")
    assert sentry_rule["outcome"] == apm["outcome"] == "inconclusive"
    assert sentry_rule["detail"] == (
        f'no data (sentry answered with nothing to measure for release "{VERSION}" since the'
        " deploy: no traffic of it yet, or Sentry names it otherwise (baseline.sentry.release))"
    )
    assert apm["detail"] == (
        "no data (newrelic answered with nothing to measure since the deploy (an empty result))"
    )
    assert "no data (no data)" not in final["verdict"]["reason"], final["verdict"]["reason"]
    assert f"sentry-errors: {sentry_rule['detail']}" in final["verdict"]["reason"]
    # the providers answered: no outage to alert
    assert titled(json_sink, "provider ") == []


@pytest.mark.parametrize(("rate", "failed", "most"), [(0.15, 450, "7.5"), (0.30, 900, "15")])
async def test_sentry_counts_that_stop_growing_end_inconclusive_and_say_why(
    sentry_fake: GrowingSentry,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    rate: float,
    failed: int,
    most: str,
) -> None:
    """3,000 events at 15% or 30% (the previous release's 1%: a 2% bound) in the first
    round's answer, then Sentry's counts since the deploy stop growing: each later round has
    no new events. Each round's evidence is the growth of the cumulative counts, so the
    window judged the first round's 3,000 events once (no round counted them again) and
    ended inconclusive: one round is one e-value factor, however many events it holds (a
    round's events can fail together), and one is far from enough (likelihood ratio 2.3 of
    155 at 15%). The reason now says so; it said only "upper bound n/a ... not enough
    evidence". A live sweep read 30% against 2%, said only "only 1 round had new events",
    as the judge missing an obvious regression: no bet on one round's rate can multiply the
    odds by more than 30% / 2% = 15 (Markov: a service at 2% whose errors come in bursts
    has up to 1 round in 15 at 30%), far from the 150 or so needed, so the round cannot be
    told from a burst, and the reason now says that with its figures."""
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.set_stats(SentryStats(transactions=3_000, failure_rate=rate), release=VERSION)
    # a 6 s window (12 rounds) ends inconclusive at its end: long enough for the 3,000
    # events counted again each round to fail it (2.3 a round passes 155 at round 7)
    agent = await sentry_agent(
        start_agent, "sequential", receiver, json_sink, sentry_fake, window="6s"
    )
    # the window counts 5.5 s from the registration, not 6 s from `t0`: the agent's
    # start on a loaded machine takes seconds of it, and the rounds past 7 are the point
    final = await judged(agent, t0, 5.5)

    assert final["state"] == "inconclusive", json.dumps(final["verdict"])
    assert receiver.attempts == []
    rule = rule_of(final, "sentry-errors")
    assert failed_of(rule) == (failed, 3000)
    evidence = rule["evidence"]
    assert (evidence["samples"], evidence["rounds_with_data"]) == (3000, 1), evidence
    assert len(sentry_fake.seen("/events/")) >= 4  # asked every round; nothing new came
    reason = final["verdict"]["reason"]
    assert "only 1 round had new events" in reason, final["verdict"]
    # before: "error_rate upper bound n/a vs max 0.02", read as a fault, not as too soon
    assert "n/a" not in rule["detail"], rule["detail"]
    assert "error_rate: no upper bound after one round (it takes two)" in rule["detail"]
    at = f"{rate:.0%}"
    said = (
        rf"one round at {at} weighs at most {most}x against its limit of 2%, \d+ needed: a"
        rf" service at 2% whose errors come in bursts has up to 1 round in {most} at {at}, so"
        r" one round cannot be told from a burst\)"
    )
    assert re.search(said, reason), reason
    assert re.search(said, rule["detail"]), rule["detail"]


# ------------------------------------------------------ 2. New Relic 0.2 → 0.9 s


async def test_sampled_sentry_data_is_judged_on_its_sample_and_says_so(
    sentry_fake: GrowingSentry,
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Traces sampled at 10%, the error rate unchanged at 1%, deploy markers on with a
    token that may not write releases: the deploy passes, the evidence says the data
    was sampled, and the marker failure is one alert naming `project:releases`."""
    sentry_fake.scopes.discard("project:releases")
    t0 = deploy_second()
    sentry_fake.set_stats(
        SentryStats(transactions=200_000, failure_rate=0.01, sample_rate=0.1), release=PREVIOUS
    )
    sentry_fake.set_stats(
        SentryStats(transactions=4_000, failure_rate=0.01, sample_rate=0.1), release=VERSION
    )
    agent = await start_agent(
        environment_yaml(
            SENTRY_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            newrelic=False,
            window="2s",
            # two seconds cannot show the rule holds: judge what did not fail
            pass_on="no_failure",
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(sentry=sentry_fake, markers=True),
    )
    final = await judged(agent, t0, 1.5)
    assert final["state"] == "passed", final
    query = await assert_query_shown(agent, final, "sentry-errors")
    assert "sampled: 400 stored transactions stand for ~4,000, 10.0%" in query
    alert = await alert_titled(json_sink, "provider sentry unreachable")
    assert "deploy marker not recorded" in alert.message
    assert "project:releases" in alert.message and "403" in alert.message
    assert len(titled(json_sink, "provider sentry unreachable")) == 1
    assert sentry_fake.deploys == []


async def p95_from_200ms_to_900ms(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    t0: int,
    **environment: Any,
) -> RunningAgent:
    """An agent judging `apm-latency` on New Relic: p95 0.2 s before `t0`, 0.9 s from it."""
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.9}}], since=t0)
    return await start_agent(
        environment_yaml(
            NEWRELIC_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            lookback="1h",
            sentry=False,
            **environment,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(newrelic=newrelic_fake),
    )


async def test_newrelic_p95_from_200ms_to_900ms_is_rolled_back(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    t0 = deploy_second()
    # 12 s: the rule fails at its 7th round with data, and the rollback ends the window
    # then; 6 s (12 slots of 500 ms) held 6 rounds at load 11, inconclusive
    agent = await p95_from_200ms_to_900ms(
        newrelic_fake, receiver, json_sink, start_agent, t0, window="12s"
    )
    deploy = await register(agent, t0)

    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "apm-latency")

    rule = rule_of(final, "apm-latency")
    assert_evidence(rule)
    assert rule["source"] == "newrelic"
    assert rule["baseline"] == pytest.approx(0.2)
    assert rule["observed"] == pytest.approx(0.9)
    assert "50%" in rule["threshold"]
    assert rule["link"].startswith(f"{NEWRELIC_WEB}/data-exploration/query-builder?")
    assert parse_qs(urlsplit(rule["link"]).query)["query"][0].startswith(NRQL)

    # the periods New Relic was asked for, in epoch ms: [T0 - 1h, T0), then [T0, now)
    t0_ms = t0 * 1000
    assert newrelic_fake.queries[0] == (NRQL, t0_ms - 3_600_000, t0_ms)
    assert len(newrelic_fake.queries) >= 2
    assert all(since == t0_ms and until > t0_ms for _, since, until in newrelic_fake.queries[1:])

    requested = await alert_titled(json_sink, "rollback requested")
    assert "apm-latency" in requested.message
    assert f"(details: <{rule['link']}>)" in requested.message
    assert requests(agent, "newrelic", "error") == 0

    query = await assert_query_shown(agent, final, "apm-latency")
    assert query.startswith(NRQL + " SINCE ")


async def test_a_bad_nrql_is_asked_once_a_fetch_and_alerted_once_in_new_relics_words(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """README: GraphQL `errors` with HTTP 200 (a bad NRQL) is not retried: the rule is
    inconclusive and the provider's one alert of the window gives New Relic's own words
    (`NRQL rejected: …`). Counted at the fake New Relic: one request a fetch, though 3
    attempts are allowed."""
    t0 = deploy_second()
    bad = "SELECT percentile(duration, 95) FORM Transaction"  # NerdGraph: a syntax error
    rules = NEWRELIC_RULE.replace(NRQL, bad)
    agent = await start_agent(
        environment_yaml(
            rules,
            rollback_url=receiver.url,
            secret=SECRET,
            window="3s",
            interval="250ms",
            lookback="1h",
            sentry=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(newrelic=newrelic_fake, max_attempts=3),
    )
    final = await judged(agent, t0, 2.5)

    assert final["state"] == "inconclusive" and final["rollback"] is None, final
    rule = rule_of(final, "apm-latency")
    assert rule["outcome"] == "inconclusive", rule
    assert receiver.attempts == []
    (alert,) = titled(json_sink, "provider newrelic ")
    assert alert.title.endswith(": provider newrelic answered, but not usably"), alert.title
    said = "NRQL rejected: NRQL Syntax Error: Error at line 1 position 8, unexpected 'FORM'"
    assert said in alert.message, alert.message
    assert NEWRELIC_KEY not in alert.message

    # one request a fetch (the baseline's, asked again each round, and each round's),
    # where a 500 in its place is asked 3 times a fetch
    asked = [r for r in newrelic_fake.seen() if r.method == "POST"]
    fetches = requests(agent, "newrelic", "error") + requests(agent, "newrelic", "ok")
    assert len(asked) >= 2 and len(asked) == fetches, (len(asked), fetches)


async def test_one_answer_for_the_first_second_is_one_round_of_evidence_not_two(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Rounds of 300 ms: the first three all ask for [T0, T0 + 1s), and get one answer.
    Under the threshold policy with `failure_limit: 2`, that one answer must not make a
    streak of two: the rollback waits for a second period's answer."""
    await asyncio.sleep(1.0 - time.time() % 1.0)  # at a second's start: rounds at T0 + 0.3,
    t0 = deploy_second()  # 0.6 and 0.9 s all ask for [T0, T0 + 1s)
    agent = await p95_from_200ms_to_900ms(
        newrelic_fake,
        receiver,
        json_sink,
        start_agent,
        t0,
        policy="threshold",
        failure_limit=2,
        interval="300ms",
    )
    deploy = await register(agent, t0)
    await assert_rolled_back_once(agent, receiver, deploy["id"], "apm-latency")
    # the periods asked for (the window ended with the rollback): a streak of two
    # needed two of them
    asked = {until for _, since, until in newrelic_fake.queries[1:] if since == t0 * 1000}
    assert len(asked) >= 2, newrelic_fake.queries


# ----------------------------------------------------- 3. PromQL 5xx ratio


@ONE_PROMETHEUS
async def test_promql_5xx_ratio_past_its_bound_is_rolled_back(
    prometheus_stack: PrometheusStack,
    prometheus_lane: LaneFactory,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    stack, lane = prometheus_stack, prometheus_lane()
    query = ratio_query(lane.selector)
    # the baseline: ~1% 5xx before the deploy, rates of a few scrapes in Prometheus
    await stack.wait_for_samples(lane, 5)
    agent = await start_agent(
        environment_yaml(
            prometheus_rule(query),
            rollback_url=receiver.url,
            secret=SECRET,
            window="15s",
            lookback="5s",
            sentry=False,
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        # Prometheus behind basic auth, its credentials in the URL (as Prometheus' own
        # clients take them): they are sent to it, and never shown
        providers_yaml(prometheus_url=stack.url.replace("://", f"://pf:{PROMETHEUS_PASSWORD}@")),
    )
    t0 = deploy_second()
    stack.set_rates(lane, BAD_RATES)  # the new release: 20% 5xx
    deploy = await register(agent, t0)
    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "http-5xx")

    rule = rule_of(final, "http-5xx")
    assert_evidence(rule)
    assert rule["source"] == "prometheus"
    assert 0 < rule["baseline"] < 0.05  # ~1% before the deploy, from the real Prometheus
    assert rule["observed"] > 0.05
    assert rule["threshold"] == "max 0.05"
    assert rule["link"].startswith(f"{stack.url}/graph?")  # a link to open, without them
    requested = await alert_titled(json_sink, "rollback requested")
    assert "http-5xx" in requested.message
    async with agent.http.get(f"{agent.url}/deploys/{deploy['id']}", headers=agent.headers) as r:
        page = await r.text()
    assert f"{stack.url}/graph?" in page
    shown = {"API": json.dumps(final), "alert": requested.message, "page": page}
    assert not [where for where, text in shown.items() if PROMETHEUS_PASSWORD in text]
    assert requests(agent, "prometheus", "error") == 0

    assert await assert_query_shown(agent, final, "http-5xx") == query


@ONE_PROMETHEUS
async def test_the_example_5xx_ratio_of_a_service_that_never_served_a_5xx_passes(
    prometheus_stack: PrometheusStack,
    prometheus_lane: LaneFactory,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """The contract's example rule `http-5xx` (max 0.01) on a service with traffic and no
    5xx series: Prometheus answers its ratio with an empty vector, every round. It is
    judged a ratio of 0 (the traffic as evidence, said in the query shown), not `no data`
    all window (which ended the window `inconclusive`)."""
    stack, lane = prometheus_stack, prometheus_lane({"200": 200.0})
    query = ratio_query(lane.selector)
    await stack.wait_for_samples(lane, 5)
    agent = await start_agent(
        environment_yaml(
            prometheus_rule(query).replace("max: 0.05", "max: 0.01"),
            rollback_url=receiver.url,
            secret=SECRET,
            window="5s",
            lookback="5s",
            sentry=False,
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(prometheus_url=stack.url),
    )
    deploy = await register(agent, deploy_second())
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "passed", json.dumps(final["verdict"])
    rule = rule_of(final, "http-5xx")
    assert rule["outcome"] == "pass" and rule["observed"] == 0, rule
    assert rule["baseline"] == 0, rule
    shown = await assert_query_shown(agent, final, "http-5xx")
    assert shown.startswith(query)
    assert f'taken as 0: http_requests_total{{{lane.selector},code=~"5.."}}' in shown, shown
    assert titled(json_sink, "provider prometheus") == []
    assert requests(agent, "prometheus", "error") == 0
    assert receiver.attempts == []


@ONE_PROMETHEUS
async def test_the_example_5xx_ratio_on_a_misspelt_metric_is_inconclusive_saying_so(
    prometheus_stack: PrometheusStack,
    prometheus_lane: LaneFactory,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """No series of the metric at all: nothing is taken as 0, the window ends
    `inconclusive` naming the metric Prometheus does not have, with one alert."""
    stack, lane = prometheus_stack, prometheus_lane({"200": 200.0})
    query = ratio_query(lane.selector).replace("http_requests_total", "http_request_total")
    await stack.wait_for_samples(lane, 5)
    agent = await start_agent(
        environment_yaml(
            prometheus_rule(query).replace("max: 0.05", "max: 0.01"),
            rollback_url=receiver.url,
            secret=SECRET,
            window="4s",
            lookback="5s",
            sentry=False,
            newrelic=False,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(prometheus_url=stack.url),
    )
    deploy = await register(agent, deploy_second())
    final = await agent.settled(deploy["id"], within=20)
    assert final["state"] == "inconclusive", json.dumps(final["verdict"])
    rule = rule_of(final, "http-5xx")
    assert "no metric named http_request_total" in rule["detail"], rule
    assert "no metric named http_request_total" in final["verdict"]["reason"]
    alerts = await alert_titled(json_sink, "provider prometheus answered, but not usably")
    assert "no metric named http_request_total" in alerts.message
    assert receiver.attempts == []


# ----------------------------------- 4. fail soft: each provider failing in turn

FAILURES = ["500", "429", "hang", "malformed", "401"]
PROVIDERS = ["sentry", "newrelic", "prometheus"]
RULES = {"sentry": "sentry-errors", "newrelic": "apm-latency", "prometheus": "http-5xx"}
REASONS = {"500": "500", "429": "429", "hang": "did not answer", "malformed": "malformed answer"}
"""What the provider_unreachable alert says, by failure (401: by provider, below)."""
ANSWERED = {"malformed", "401"}
"""Failures where the provider did answer: the alert's title says so, not "unreachable"."""


def outage_title(provider: str, kind: str) -> str:
    return f"provider {provider} " + (
        "answered, but not usably" if kind in ANSWERED else "unreachable"
    )


REJECTED = {
    "sentry": "Sentry token rejected (401): set providers.sentry.token",
    "newrelic": "New Relic API key rejected (401): providers.newrelic.api_key must be",
    "prometheus": "Prometheus rejected the credentials (401): none were sent; set"
    " providers.prometheus.bearer_token",
}
"""What the alert of a rejected key says: the setting to fix, by name."""


WATCH_FOR = {"hang": 2.0, "500": 2.5, "429": 2.5}
"""Seconds a fail-soft window watches: enough rounds to show one alert however many
rounds the outage lasts (asserted: at least two). A hang holds the baseline and each
round for the whole 600 ms budget. A 500 or 429 is retried after a backoff: 1.5 s once
gave a newrelic-429 window a single round on a busy machine; 2.5 s gave 8-10 rounds at
load average 13-14 (1.5 s: 3-6)."""


@dataclass
class Outage:
    """A healthy deploy watched while some providers fail: what the window did."""

    agent: RunningAgent
    final: dict[str, Any]


@dataclass
class World:
    """Everything a fail-soft test runs against."""

    stack: PrometheusStack
    sentry: GrowingSentry
    newrelic: FakeNewRelic
    receiver: RollbackReceiver
    sink: JsonSink
    start_agent: AgentFactory
    caplog: pytest.LogCaptureFixture
    tmp_path: Path


@pytest.fixture
def world(
    prometheus_stack: PrometheusStack,
    sentry_fake: GrowingSentry,
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> World:
    caplog.set_level(logging.INFO, logger="agent.providers.client")
    return World(
        prometheus_stack,
        sentry_fake,
        newrelic_fake,
        receiver,
        json_sink,
        start_agent,
        caplog,
        tmp_path,
    )


async def healthy_deploy_during_outage(
    world: World,
    failing: list[str],
    kind: str,
    *,
    markers: bool = False,
    store: str | None = None,
    reset_in: float = 1.0,
    match: str | None = None,
) -> Outage:
    """All three providers healthy (Sentry 1% → 1%, New Relic p95 0.2 s → 0.2 s,
    Prometheus ~1% 5xx), except `failing`, which fail with `kind` for the whole
    window, baseline included (`markers`: Sentry's and New Relic's deploy markers on;
    `store`: the agent's, the test's SQLite file if None; `reset_in`: the seconds a
    429's reset or a `Retry-After` names; `match`: the requests that fail, all if None)."""
    stack, sentry_fake, newrelic_fake = world.stack, world.sentry, world.newrelic
    receiver, json_sink, start_agent = world.receiver, world.sink, world.start_agent
    t0 = deploy_second()
    sentry_fake.set_stats(SentryStats(transactions=20_000, failure_rate=0.01), release=PREVIOUS)
    sentry_fake.grow(VERSION, per_second=400, failure_rate=0.01, since=t0)
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    async with PrometheusProxy(stack.url) as prometheus:
        fakes = {"sentry": sentry_fake, "newrelic": newrelic_fake, "prometheus": prometheus}
        for name in failing:
            fakes[name].fail(kind, reset_in=reset_in, match=match)
        healthy = ratio_query(stack.healthy.selector)
        rules = SENTRY_RULE + NEWRELIC_RULE + prometheus_rule(healthy)
        agent = await start_agent(
            environment_yaml(
                rules,
                rollback_url=receiver.url,
                secret=SECRET,
                # 3 s: the rounds begin once the healthy providers' baselines are in
                # hand, and a 2 s window held one round only at load 12 (two at least
                # show the outage alerted once over several)
                window="3s",
                interval="250ms",
                lookback="5s",
                # a couple of seconds cannot show that a rule holds: judge what did not fail
                pass_on="no_failure",
            ),
            alerting_yaml(json_sink.url()),
            providers_yaml(
                sentry=sentry_fake,
                newrelic=newrelic_fake,
                prometheus_url=prometheus.url,
                timeout="600ms",
                request_timeout="300ms",
                max_attempts=2,
                markers=markers,
                # a healthy provider gets the default budget: on a busy machine a healthy
                # Prometheus once took longer than 300 ms and was counted as an error; so
                # does one answering at once but unusably (malformed, 401), whose answer
                # a stall of the agent's past a tenth of 300 ms would leave unread (its
                # fetch the agent's, no alert), and for which the short budget keeps
                # nothing short
                budgets={
                    name: ("2s", "1s")
                    for name in PROVIDERS
                    if name not in failing or kind in ANSWERED
                },
            ),
            store=store,
        )
        final = await judged(agent, t0, WATCH_FOR.get(kind, 1.5))
    return Outage(agent, final)


async def outage_told(world: World, failing: list[str], kind: str) -> Outage:
    """`healthy_deploy_during_outage`, made once more, on an agent and a store of their own,
    when every fetch of a hung provider ran out of time in the agent's own stall
    (`agent_lag`: the agent's failure, by design never alerted): that window showed
    nothing of the provider. Beside six CPU hogs (load 14-19), 3 runs in 39 of the
    prometheus hang had all their 4-6 fetches so (no 'provider prometheus unreachable'
    alert), where the others had 1-4 of them the provider's. A 500, a 429 or an answer
    is the provider's however the agent lags: only a hang is made again."""
    outage = await healthy_deploy_during_outage(world, failing, kind)
    if kind != "hang" or any(requests(outage.agent, p, "error") for p in failing):
        return outage
    assert all(stalls(outage.agent, p) >= 1 for p in failing)
    assert titled(world.sink, "provider ") == []  # the agent's stall: nothing said
    await outage.agent.stop()
    world.sink.notifications.clear()
    world.caplog.clear()
    store = f"url: sqlite:///{world.tmp_path / 'once-more.db'}"
    return await healthy_deploy_during_outage(world, failing, kind, store=store)


async def assert_fail_soft(outage: Outage, world: World, failing: list[str], kind: str) -> None:
    agent, final = outage.agent, outage.final
    receiver, json_sink = world.receiver, world.sink
    # a provider outage is never a reason to roll back
    assert final["rollback"] is None, final
    # a rule without data in any round leaves the window inconclusive, under `pass_on:
    # no_failure` too (it passed on the other providers' rules), and its last alert names
    # that rule and why it had none
    assert final["state"] == "inconclusive", final
    last = (await alert_titled(json_sink, "inconclusive")).message
    for provider in failing:
        assert f"{RULES[provider]}: no data (" in last, last
    assert titled(json_sink, "deploy passed") == []
    assert receiver.attempts == []
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="delivered")
        == 0
    )
    outcomes = {r["name"]: r["outcome"] for r in final["verdict"]["rules"]}
    # a healthy provider's rule passes, unless the agent's own stall cut its fetches (a busy
    # machine's: 2.6 s of a 2 s window once, at load 15): then it may lack the evidence
    expected = {
        name: {"inconclusive"}
        if provider in failing
        else {"pass", "inconclusive"}
        if stalls(agent, provider)
        else {"pass"}
        for provider, name in RULES.items()
    }
    assert outcomes.keys() == expected.keys(), final["verdict"]
    assert all(outcomes[name] in expected[name] for name in expected), final["verdict"]

    # exactly one provider_unreachable alert per failing provider in the window,
    # although the outage lasted several rounds
    rounds = final["rounds"]
    assert rounds >= 2, final
    for provider in failing:
        await alert_titled(json_sink, outage_title(provider, kind))
    for provider in PROVIDERS:
        alerts = titled(json_sink, f"provider {provider} ")
        assert len(alerts) == (1 if provider in failing else 0), [a.title for a in alerts]
    for provider in failing:
        (alert,) = titled(json_sink, outage_title(provider, kind))
        headline = "answered, but not usably" if kind in ANSWERED else "Provider unreachable"
        assert headline in alert.message, alert.message
        if provider == "prometheus":  # its rule is absolute: its baseline is only shown
            assert "asked again each round" not in alert.message, alert.message
        assert RULES[provider] in alert.message
        reason = REJECTED[provider] if kind == "401" else REASONS[kind]
        assert reason in alert.message, alert.message

    # the providers' credentials and the rollback secret are in no alert and no log line
    said = [a.title + a.message for a in json_sink.notifications] + [world.caplog.text]
    for secret in (SENTRY_TOKEN, NEWRELIC_KEY, SECRET):
        assert not [words for words in said if secret in words], secret

    # the provider's log: one line when its fetches began to fail, not one per fetch (the
    # outage lasts seconds, under the minute between reminders); a fetch the agent's own
    # stall cut is the agent's, logged as such
    for provider in PROVIDERS:
        said = [
            r.getMessage()
            for r in world.caplog.records
            if r.name == "agent.providers.client"
            and r.getMessage().startswith(f"{provider}: ")
            and "): agent overloaded: " not in r.getMessage()  # the agent's, not an outage
        ]
        assert len(said) == (1 if provider in failing else 0), said

    # every fetch of a failing provider (the baseline, then each round's, and the baseline
    # again each round, as it never came) is an error, but one the agent's own stall ran
    # out of time (`agent_lag`: a busy machine's, asked again, never alerted); rounds in
    # the first second share the period [T0, T0 + 1s), and so one answer
    for provider in PROVIDERS:
        errors, lagged = requests(agent, provider, "error"), stalls(agent, provider)
        if provider in failing:
            assert errors >= 1 and 2 <= errors + lagged <= 2 * rounds + 1, (errors, lagged)
            assert requests(agent, provider, "ok") == 0
        else:
            assert errors == 0
            # rounds in the first second share the period [T0, T0 + 1s) and its answer; a
            # fetch the agent's stall cut is asked once more
            ok = requests(agent, provider, "ok")
            assert ok + lagged >= 2 and ok <= rounds + 1 + lagged, (ok, lagged, rounds)


@ONE_PROMETHEUS
@pytest.mark.parametrize("kind", FAILURES)
@pytest.mark.parametrize("failing", PROVIDERS)
async def test_a_failing_provider_never_rolls_back_a_healthy_deploy(
    failing: str, kind: str, world: World
) -> None:
    outage = await outage_told(world, [failing], kind)
    # the other providers' rules judged the deploy and did not fail it, but the failing
    # one's had no data at all: neither passed nor rolled back (it passed, 1 of 3
    # inconclusive, where the contract says a provider down is inconclusive)
    assert outage.final["state"] == "inconclusive", outage.final
    assert outage.final["verdict"]["outcome"] == "inconclusive"
    await assert_fail_soft(outage, world, [failing], kind)


@ONE_PROMETHEUS
async def test_a_sentry_rate_limit_reset_past_the_budget_fails_at_once_and_holds_later_asks(
    world: World,
) -> None:
    """README: a 429 whose `X-Sentry-Rate-Limit-Reset` is past the fetch's budget fails
    the fetch at once and keeps every later fetch of that endpoint (the next rounds')
    from asking before it. Counted at the fake Sentry: its `events/` endpoint is asked
    in one burst (the requests already in flight when the first 429 came) and never
    again over rounds of a window 30 s short of the reset."""
    events = "/events/?"  # not `events-timeseries/`, nor the project looked up first
    outage = await healthy_deploy_during_outage(world, ["sentry"], "429", reset_in=30, match=events)
    await assert_fail_soft(outage, world, ["sentry"], "429")
    asked = [r.at for r in world.sentry.seen("/events/")]
    assert asked and max(asked) - min(asked) < 0.5, asked
    rounds = outage.final["rounds"]
    assert len(asked) < rounds, (len(asked), rounds)


@ONE_PROMETHEUS
async def test_every_provider_down_is_inconclusive_with_one_alert_per_provider(
    world: World,
) -> None:
    outage = await healthy_deploy_during_outage(world, PROVIDERS, "500")
    # nothing to judge the deploy by: neither passed nor rolled back
    assert outage.final["state"] == "inconclusive", outage.final
    assert outage.final["verdict"]["outcome"] == "inconclusive"
    await assert_fail_soft(outage, world, PROVIDERS, "500")


@ONE_PROMETHEUS
async def test_a_provider_down_with_markers_on_is_still_one_alert_per_provider(
    world: World,
) -> None:
    """With markers on, the deploy marker that could not be written was an alert of its
    own beside the fetches': "provider sentry unreachable" twice in the window (and New
    Relic's twice). A provider down is one alert, whichever of its parts failed first."""
    down = ["sentry", "newrelic"]
    outage = await healthy_deploy_during_outage(world, down, "500", markers=True)
    assert outage.final["rollback"] is None and world.receiver.attempts == []
    # Prometheus' rule passed, but two had no data: inconclusive
    assert outage.final["state"] == "inconclusive", outage.final
    # the markers were tried (Sentry's stops at its project's lookup, a read as well)
    assert any("changeTrackingCreateEvent" in str(r.body) for r in world.newrelic.requests)
    await alert_titled(world.sink, "inconclusive")
    for provider in PROVIDERS:
        alerts = titled(world.sink, f"provider {provider} ")
        assert len(alerts) == (1 if provider in down else 0), [a.title for a in alerts]


@pytest.mark.parametrize(
    ("policy", "pass_on"),
    [("threshold", "evidence"), ("fixed", "evidence"), ("sequential", "evidence")],
)
async def test_a_provider_down_the_whole_window_is_inconclusive_under_every_policy(
    policy: str,
    pass_on: str,
    sentry_fake: GrowingSentry,
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """Sentry answers 500 to everything (baseline and rounds) while New Relic's p95 is
    healthy. `threshold` and `fixed`, which pass what did not fail, passed the window on
    New Relic's rule ("1 of 2 rules passed over N rounds, 1 inconclusive"): now the rule
    that never had data leaves it inconclusive, as the default policy (`sequential`,
    `pass_on: evidence`) does; counted at the receivers: no rollback, and the end alert
    names the rule without data and why."""
    t0 = deploy_second()
    sentry_fake.fail("500")
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    agent = await start_agent(
        environment_yaml(
            SENTRY_RULE + NEWRELIC_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            window="3s",
            interval="250ms",
            lookback="5s",
            policy=policy,
            pass_on=pass_on,
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(
            sentry=sentry_fake,
            newrelic=newrelic_fake,
            max_attempts=2,
            budgets={"sentry": ("600ms", "300ms")},
        ),
    )
    final = await judged(agent, t0, 2.5)
    assert final["state"] == "inconclusive", final
    assert final["rollback"] is None and receiver.attempts == []
    assert (
        agent.metric("postflight_rollbacks_total", environment="production", result="delivered")
        == 0
    )
    assert rule_of(final, "sentry-errors")["outcome"] == "inconclusive"
    assert final["verdict"]["reason"].count("sentry-errors: no data (") == 1, final["verdict"]
    ended = (await alert_titled(json_sink, "inconclusive")).message
    assert "sentry-errors: no data (" in ended, ended
    assert titled(json_sink, "deploy passed") == []
    await alert_titled(json_sink, "provider sentry unreachable")


# ----------------------------------- 5. a slow or hung provider keeps the schedule


async def test_a_slow_provider_keeps_the_rounds_on_time_and_its_answers_still_count(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """New Relic answers in 700 ms, longer than a 250 ms round. Each round used to wait
    for it (the default provider budget is 10 s), so every round overran and every later
    one started late. Now a round waits until its slot's end, and an answer that comes
    later counts in the round that finds it: the bad deploy is still rolled back."""
    t0 = deploy_second()
    newrelic_fake.delay = 0.7
    # 12 s: the rule fails at its 7th round with data (one in three or so: each waits for
    # an answer 700 ms long), and the rollback ends the window then; 8 s held 6 at load 7
    agent = await p95_from_200ms_to_900ms(
        newrelic_fake, receiver, json_sink, start_agent, t0, interval="250ms", window="12s"
    )
    deploy = await register(agent, t0)
    final = await assert_rolled_back_once(agent, receiver, deploy["id"], "apm-latency")
    assert requests(agent, "newrelic", "error") == 0  # slow is not an error
    rounds = await agent.app[STORE].rounds(deploy["id"])
    slots = [r.summary["slot"] for r in rounds]
    # before: each round waited for its 700 ms fetch, so about two slots of three were
    # passed over; now each slot runs in turn, but for a few (a quarter at most) that a
    # stall of the agent itself longer than a 250 ms slot passed over (one at load 12, no
    # round overrunning by it)
    assert slots == sorted(set(slots)), slots
    skipped = slots[-1] - slots[0] + 1 - len(slots)
    assert skipped <= max(1, len(slots) // 4), slots
    # before: every round overran by its fetch; now none does but for a few (a quarter at
    # most) a busy machine's stall made start late: a round waits for the provider to near
    # its slot's end by design, so one that starts late overruns by a hair (4 of 12 by
    # 0.004 s or so at load 11)
    overruns = agent.metric("postflight_round_overruns_total", environment="production")
    assert overruns <= max(1, len(rounds) // 4), (overruns, len(rounds))
    assert rule_of(final, "apm-latency")["baseline"] == pytest.approx(0.2)  # came late


def newrelic_only(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    *,
    interval: str,
    budgets: dict[str, tuple[str, str]] | None = None,
) -> tuple[str, str, str]:
    """`apm-latency` on New Relic alone, judged on what did not fail: `start_agent`'s
    environments, alerting and providers sections."""
    return (
        environment_yaml(
            NEWRELIC_RULE,
            rollback_url=receiver.url,
            secret=SECRET,
            lookback="1h",
            sentry=False,
            interval=interval,
            pass_on="no_failure",
        ),
        alerting_yaml(json_sink.url()),
        providers_yaml(newrelic=newrelic_fake, budgets=budgets),
    )


async def test_a_hung_provider_costs_no_round(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """New Relic never answers; its budget is 3 s. Rounds of 250 ms over 3 s: before, the
    first round waited 3 s for the baseline and each round 3 s for its fetch (one or two
    rounds in all); now every slot runs, the rule is inconclusive, one alert says why."""
    t0 = deploy_second()
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    newrelic_fake.fail("hang")
    budgets = {"newrelic": ("3s", "3s")}
    agent = await start_agent(
        *newrelic_only(newrelic_fake, receiver, json_sink, interval="250ms", budgets=budgets)
    )
    final = await judged(agent, t0, 3.0)
    assert final["rollback"] is None and rule_of(final, "apm-latency")["outcome"] == (
        "inconclusive"
    )
    assert final["rounds"] >= 8, final["rounds"]  # of about 12 slots, on a loaded machine
    rounds = await agent.app[STORE].rounds(final["id"])
    # the last round waited for the fetch under way (to its 3 s budget's end): on purpose,
    # holding no later round, so no overrun; another round only when the machine stalled
    # (the fetch began near round 1 and ends with its 3 s budget, some 0.25-0.5 s into the
    # last slot; a round with nothing to wait for takes milliseconds)
    assert rounds[-1].summary["duration_s"] > 0.1
    # no other round waited on the hung fetch (3 s, as each did before): each waits for
    # the provider to near its slot's end (0.236-0.249 s of 0.25 s) and no longer; a busy
    # machine's scheduler may add tens of milliseconds, never seconds. Not "no overrun": a
    # round that fills its slot by design and starts a few milliseconds late on a busy
    # machine overruns by a hair (one seen at load 7, by 0.000 s)
    durations = [r.summary["duration_s"] for r in rounds]
    assert all(d < 1.0 for d in durations[:-1]), durations
    await alert_titled(json_sink, "provider newrelic unreachable")


async def test_a_hung_provider_does_not_make_the_agent_look_overloaded(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
) -> None:
    """New Relic never answers; rounds of 2 s, so the first waits its whole second for the
    baseline (`BASELINE_WAIT_S`). That wait was observed as round lag, and one such round
    in a hundred is enough for `PostflightRoundsLate` ("the agent is overloaded") to page
    whenever a provider is down. The stored round still says how late it really started."""
    t0 = deploy_second()
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    newrelic_fake.fail("hang")
    agent = await start_agent(*newrelic_only(newrelic_fake, receiver, json_sink, interval="2s"))
    asked = time.time()
    # three slots (0, 2 s, 4 s): a registration late in its second waits into the 2 s
    # slot, and a second round still follows (with 3 s it was the last: one round, CI)
    final = await judged(agent, t0, 5.0)
    rounds = await agent.app[STORE].rounds(final["id"])
    # it did wait. Its first round is the deploy's slot, late by that second (`lag_s`), or,
    # on a busy machine whose registration and claim took another second, the next slot
    assert rounds[0].started_at >= asked + 0.95, (rounds[0].started_at - asked, rounds[0])
    observed = agent.metric("postflight_round_lag_seconds_count")
    assert observed == len(rounds) >= 2, (observed, len(rounds))
    # none late by half a second: each round began on time once the watch was ready
    assert agent.metric("postflight_round_lag_seconds_bucket", le="0.5") == observed


async def test_a_round_run_after_the_window_ended_asks_for_no_period_past_its_end(
    newrelic_fake: FakeNewRelic,
    receiver: RollbackReceiver,
    json_sink: JsonSink,
    start_agent: AgentFactory,
    tmp_path: Any,
) -> None:
    """The agent stops mid-window and another takes the window up after its end: its last
    round asked New Relic for [T0, now), events after the window included. Now every
    period ends by the window's end."""
    t0 = deploy_second()
    newrelic_fake.answer(NRQL, [{"percentile.duration": {"95": 0.2}}])
    config = newrelic_only(newrelic_fake, receiver, json_sink, interval="500ms")
    store = f"url: sqlite:///{tmp_path / 'restart.db'}\n  lease: 1s"
    first = await start_agent(*config, store=store, owner="first")
    deploy = await register(first, t0, watch_for=2.0)
    await first.wait_until(deploy["id"], lambda d: d["rounds"] >= 1)
    await first.stop()
    ends_at = datetime.fromisoformat(deploy["ends_at"].replace("Z", "+00:00")).timestamp()
    await asyncio.sleep(max(0.0, ends_at - time.time()) + 1.5)  # the window has ended
    second = await start_agent(*config, store=store, owner="second")
    final = await second.settled(deploy["id"], within=20)
    assert final["state"] == "passed", final
    untils = [until for _, since, until in newrelic_fake.queries if since == t0 * 1000]
    assert untils and max(untils) <= round(ends_at * 1000) + 1, (untils, ends_at)

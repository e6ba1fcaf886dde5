"""Sentry provider against the fake Sentry: shapes, scoping, pagination, failures."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.provider_settings import BaselineSettings, SentrySettings
from agent.providers.sentry import SentryProvider, parse_link_header, release_filter
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import (
    AFTER,
    BEFORE,
    SENTRY_TOKEN,
    T0,
    requests_counted,
    rule,
    scope,
    sentry_settings,
)


async def test_error_rate_goes_from_previous_release_to_new_one(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.set_stats(SentryStats(transactions=2000, failure_rate=0.01), release="v2.4.0")
    sentry_fake.set_stats(SentryStats(transactions=500, failure_rate=0.12), release="v2.4.1")
    r = rule(source="sentry", metric="error_rate", max_increase="100%")

    baseline = await sentry.fetch(r, scope(), BEFORE, "v2.4.0")
    current = await sentry.fetch(r, scope(), AFTER, "v2.4.1")

    assert (baseline.value, baseline.count, baseline.total) == (0.01, 20, 2000)
    assert (current.value, current.count, current.total) == (0.12, 60, 500)
    assert current.seconds == 120.0
    assert current.error is None
    assert current.query is not None and 'release:"v2.4.1"' in current.query
    events = sentry_fake.seen("/events/")
    assert [e.param("dataset") for e in events] == ["spans", "spans"]
    assert events[1].params("field") == ["count()", "failure_rate()"]
    assert events[1].param("query") == 'is_transaction:true release:"v2.4.1"'
    assert events[1].param("project") == "42"  # the slug, resolved once
    assert events[1].param("environment") == "production"
    assert events[0].param("start") == "2026-11-18T10:06:40Z"
    assert events[0].param("end") == "2026-11-18T11:06:40Z"
    assert len(sentry_fake.seen("/projects/")) == 1
    assert all(r.headers["Authorization"] == f"Bearer {SENTRY_TOKEN}" for r in events)
    assert requests_counted(metrics, "sentry", "ok") == 2


async def test_no_request_uses_the_datasets_that_left_the_public_spec(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    for metric in ("error_count", "error_rate", "p95_duration", "crash_free_rate"):
        obs = await sentry.fetch(rule(source="sentry", metric=metric), scope(), AFTER, "v1")
        assert obs.error is None, (metric, obs.error)
    datasets = {r.param("dataset") for r in sentry_fake.seen("/events/")}
    assert datasets <= {"errors", "spans"}


async def test_error_count_counts_error_events(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(errors=37), release="v2.4.1")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_count", max=50), scope(), AFTER, "v2.4.1"
    )
    assert (obs.value, obs.count) == (37.0, 37)
    assert sentry_fake.seen("/events/")[0].params("field") == ["count()"]
    assert sentry_fake.seen("/events/")[0].param("dataset") == "errors"


async def test_crash_free_rate_comes_from_release_health_sessions(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(sessions=4000, crash_free_rate=0.995), release="v2.4.0")
    r = rule(source="sentry", metric="crash_free_rate", max_increase="1%")
    assert r.direction == "decrease"

    obs = await sentry.fetch(r, scope(), BEFORE, "v2.4.0")

    assert (obs.value, obs.count, obs.total) == (0.995, 3980, 4000)
    seen = sentry_fake.seen("/sessions/")[0]
    assert seen.params("field") == ["crash_free_rate(session)", "sum(session)"]
    assert seen.param("query") == 'release:"v2.4.0"'
    assert seen.param("interval") == "1h"


async def test_a_release_without_sessions_is_no_data_not_an_error(
    sentry: SentryProvider,
) -> None:
    obs = await sentry.fetch(
        rule(source="sentry", metric="crash_free_rate", min=0.9), scope(), AFTER, "v-unknown"
    )
    assert obs.value is None and obs.error is None and obs.total == 0


async def test_p95_duration_pages_through_samples_with_link_cursors(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.set_stats(SentryStats(transactions=900, p95_ms=850.0), release="v2.4.1")
    provider = SentryProvider(sentry_settings(sentry_fake, sample_limit=250), metrics=metrics)
    try:
        obs = await provider.fetch(
            rule(source="sentry", metric="p95_duration", max="1s"), scope(), AFTER, "v2.4.1"
        )
    finally:
        await provider.aclose()

    assert obs.value == pytest.approx(0.85)
    assert obs.quantile == 0.95
    assert len(obs.values) == 250
    assert max(obs.values) < 0.9  # milliseconds became seconds
    pages = [r for r in sentry_fake.seen("/events/") if r.param("field") == "span.duration"]
    assert [p.param("cursor") for p in pages] == [None, "0:100:0", "0:200:0"]
    assert [p.param("per_page") for p in pages] == ["100", "100", "50"]


async def test_sample_paging_stops_when_sentry_says_no_more_results(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    durations = tuple(float(i) for i in range(1, 131))
    sentry_fake.set_stats(
        SentryStats(transactions=130, p95_ms=124.0, durations_ms=durations), release="v2.4.1"
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="p95_duration", max="1s"), scope(), AFTER, "v2.4.1"
    )
    assert len(obs.values) == 130
    pages = [r for r in sentry_fake.seen("/events/") if r.param("field") == "span.duration"]
    assert len(pages) == 2


async def test_a_failing_sample_page_keeps_the_aggregate(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.set_stats(SentryStats(transactions=500, p95_ms=300.0), release="v2.4.1")
    sentry_fake.fail("500", match="cursor=")
    obs = await sentry.fetch(
        rule(source="sentry", metric="p95_duration", max="1s"), scope(), AFTER, "v2.4.1"
    )
    assert obs.error is None
    assert obs.value == pytest.approx(0.3)
    assert len(obs.values) == 100
    assert requests_counted(metrics, "sentry", "ok") == 1


async def test_without_a_release_the_periods_separate_before_from_after(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(failure_rate=0.01))
    sentry_fake.set_stats(SentryStats(failure_rate=0.2), since=T0)
    r = rule(source="sentry", metric="error_rate", max=0.05)

    before = await sentry.fetch(r, scope(previous_version=None), BEFORE, None)
    after = await sentry.fetch(r, scope(previous_version=None), AFTER, None)

    assert (before.value, after.value) == (0.01, 0.2)
    assert sentry_fake.seen("/events/")[1].param("query") == "is_transaction:true"


async def test_rate_limit_waits_for_the_reset_then_succeeds(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.fail("429", times=1, reset_in=0.3, match="/events/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_count", max=5), scope(), AFTER, "v1"
    )
    assert obs.error is None
    first, second = sentry_fake.seen("/events/")
    assert second.at - first.at >= 0.25  # waited for X-Sentry-Rate-Limit-Reset
    assert requests_counted(metrics, "sentry", "error") == 0


async def test_a_rate_limit_reset_past_the_budget_fails_now_instead_of_waiting(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.fail("429", reset_in=45, match="/events/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_count", max=5), scope(), AFTER, "v1"
    )
    assert obs.value is None
    assert obs.error is not None and "rate limiting" in obs.error and "retry in" in obs.error
    assert len(sentry_fake.seen("/events/")) == 1
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_server_errors_are_retried_with_backoff(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("500", times=2, match="/events/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.error is None
    assert len(sentry_fake.seen("/events/")) == 3


async def test_a_persistent_outage_is_an_error_observation(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.fail("503")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.value is None
    assert obs.error is not None and "503" in obs.error
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_a_rejected_token_says_so_once_without_retrying(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("401")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.error == "Sentry token rejected (401)"
    assert len(sentry_fake.requests) == 1
    assert SENTRY_TOKEN not in repr(obs)


async def test_a_hanging_sentry_ends_within_the_budget(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("hang")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.value is None
    assert obs.error is not None and "did not answer" in obs.error


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("malformed", "malformed answer from Sentry"),
        ("bad_shape", "unexpected answer from Sentry"),
    ],
)
async def test_a_garbled_answer_is_an_error_observation(
    sentry: SentryProvider, sentry_fake: FakeSentry, kind: str, message: str
) -> None:
    sentry_fake.fail(kind, match="/events/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.value is None and obs.error is not None and message in obs.error


async def test_an_unknown_project_is_named_in_the_error(
    sentry: SentryProvider,
) -> None:
    s = scope(
        baseline=BaselineSettings.model_validate(
            {"sentry": {"project": "nope", "environment": "production"}}
        )
    )
    obs = await sentry.fetch(rule(source="sentry", metric="error_rate", max=0.1), s, AFTER, "v1")
    assert obs.error == "Sentry has no project 'nope' (404)"


async def test_an_environment_without_baseline_sentry_fails_without_a_request(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1),
        scope(baseline=BaselineSettings()),
        AFTER,
        "v1",
    )
    assert obs.error is not None and "baseline.sentry" in obs.error
    assert sentry_fake.requests == []
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_rules_sharing_a_query_share_one_request(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.delay = 0.05
    a = rule(name="errors-max", source="sentry", metric="error_rate", max=0.1)
    b = rule(name="errors-rel", source="sentry", metric="error_rate", max_increase="50%")
    one, two = await asyncio.gather(
        sentry.fetch(a, scope(), AFTER, "v1"), sentry.fetch(b, scope(), AFTER, "v1")
    )
    three = await sentry.fetch(a, scope(), AFTER, "v1")  # same round, a moment later
    assert one == two == three
    assert len(sentry_fake.seen("/events/")) == 1
    assert requests_counted(metrics, "sentry", "ok") == 1
    other_round = await sentry.fetch(a, scope(), Period(T0, T0 + 150), "v1")
    assert other_round.error is None
    assert len(sentry_fake.seen("/events/")) == 2


async def test_deploy_marker_creates_the_missing_release_then_the_deploy(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        await provider.mark(scope(), "deploy")
        await provider.mark(scope(version="v2.4.2"), "deploy")
        sentry_fake.releases["v2.4.0"] = {"version": "v2.4.0"}
        await provider.mark(scope(version="v2.4.2"), "rollback")
    finally:
        await provider.aclose()
    assert set(sentry_fake.releases) == {"v2.4.1", "v2.4.2", "v2.4.0"}
    assert [(d["version"], d["environment"]) for d in sentry_fake.deploys] == [
        ("v2.4.1", "production"),
        ("v2.4.2", "production"),
        ("v2.4.0", "production"),
    ]
    assert sentry_fake.deploys[0]["projects"] == ["web"]
    assert "rollback of v2.4.2" in sentry_fake.deploys[2]["name"]
    assert requests_counted(metrics, "sentry", "ok") == 3


async def test_markers_are_off_unless_enabled_and_never_raise(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    await sentry.mark(scope(), "deploy")
    assert sentry_fake.requests == []
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    sentry_fake.fail("500")
    try:
        await provider.mark(scope(), "deploy")  # must not raise
    finally:
        await provider.aclose()
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_links_open_the_page_that_shows_the_rule(
    sentry: SentryProvider,
) -> None:
    await sentry.fetch(rule(source="sentry", metric="error_count", max=1), scope(), AFTER, "v1")
    s = scope()
    issues = sentry.link(rule(source="sentry", metric="error_count", max=1), s, AFTER)
    traces = sentry.link(rule(source="sentry", metric="p95_duration", max="1s"), s, AFTER)
    health = sentry.link(rule(source="sentry", metric="crash_free_rate", min=0.9), s, AFTER)
    assert issues is not None and traces is not None and health is not None
    parts = urlsplit(issues)
    assert parts.path == "/organizations/acme/issues/"
    assert parse_qs(parts.query) == {
        "project": ["42"],
        "environment": ["production"],
        "query": ['release:"v2.4.1"'],
        "start": ["2026-11-18T11:06:40Z"],
        "end": ["2026-11-18T11:08:40Z"],
    }
    assert "/explore/traces/" in traces and "is_transaction" in traces
    assert "/releases/v2.4.1/" in health


def test_web_links_point_at_sentry_io_for_region_hosts() -> None:
    settings = SentrySettings.model_validate({"region": "de", "org": "acme", "token": "x" * 8})
    assert settings.base_url == "https://de.sentry.io"
    provider = SentryProvider(settings, metrics=Metrics())
    assert provider.web_root() == "https://sentry.io"


def test_region_and_a_different_base_url_are_refused() -> None:
    with pytest.raises(ValueError, match="disagree"):
        SentrySettings.model_validate(
            {"region": "us", "base_url": "https://sentry.example.com", "org": "a", "token": "t"}
        )


def test_release_filter_quotes_any_version() -> None:
    assert release_filter('we"ird v1') == 'release:"we\\"ird v1"'
    assert release_filter(None) == ""


def test_link_header_is_parsed_as_sentry_writes_it() -> None:
    header = (
        "<https://sentry.io/api/0/organizations/acme/issues/123456/events/?&cursor=0:0:1>;"
        ' rel="previous"; results="false"; cursor="0:0:1", <https://sentry.io/api/0/'
        'organizations/acme/issues/123456/events/?&cursor=0:100:0>; rel="next";'
        ' results="true"; cursor="0:100:0"'
    )
    links = parse_link_header(header)
    assert links["next"]["cursor"] == "0:100:0" and links["next"]["results"] == "true"
    assert links["previous"]["results"] == "false"

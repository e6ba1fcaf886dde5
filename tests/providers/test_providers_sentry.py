"""Sentry provider against the fake Sentry: shapes, scoping, pagination, failures."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.client import Answer
from agent.providers.provider_settings import BaselineSettings, SentrySettings
from agent.providers.sentry import (
    ProjectRef,
    SentryProvider,
    bucket_seconds,
    error_detail,
    errors_elsewhere,
    parse_link_header,
    release_filter,
    release_refused,
    release_template,
)
from tests.fakes._server import Seen
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import (
    AFTER,
    BEFORE,
    FAST,
    SENTRY_TOKEN,
    T0,
    kept_up,
    requests_counted,
    rule,
    scope,
    sentry_scope,
    sentry_settings,
)


async def error_rate_of_v1(settings: SentrySettings, metrics: Metrics) -> Observation:
    """One error-rate fetch of release v1 by a Sentry provider of `settings`, closed after."""
    provider = SentryProvider(settings, metrics=metrics)
    try:
        return await provider.fetch(
            rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
        )
    finally:
        await provider.aclose()


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
    assert events[1].params("field") == ["count()", "count_sample()", "failure_rate()"]
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


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.999])
async def test_the_periods_before_and_after_a_deploy_meet_without_sharing_a_second(
    sentry: SentryProvider, sentry_fake: FakeSentry, fraction: float
) -> None:
    """A deploy registered without `deployed_at` is at a fraction of a second. The
    baseline's end was rounded up and the period since the deploy rounded down, so the
    deploy's second was asked in both: without a previous release to tell them apart, the
    new release's first events counted in its own baseline."""
    t0 = T0 + fraction
    deploy = scope(previous_version=None, deployed_at=t0)
    r = rule(source="sentry", metric="error_rate", max=0.05)
    await sentry.fetch(r, deploy, Period(t0 - 3600, t0), None)
    await sentry.fetch(r, deploy, Period(t0, t0 + 0.5), None)  # a first round within a second
    before, after = sentry_fake.seen("/events/")
    assert before.param("end") == after.param("start") == "2026-11-18T11:06:40Z"
    assert before.param("start") == "2026-11-18T10:06:40Z"
    assert after.param("end") == "2026-11-18T11:06:41Z"  # the deploy's second, not none


async def test_rate_limit_waits_for_the_reset_then_succeeds(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.set_stats(SentryStats(errors=3), release="v1")  # not 0: no second query
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


async def test_a_known_rate_limit_is_not_asked_again_by_the_next_fetch(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    # the next round's fetch (another period) must not send what Sentry already said it
    # refuses until its reset: each round sent its requests into the limit again
    sentry_fake.fail("429", reset_in=45, match="/events/")
    r = rule(source="sentry", metric="error_count", max=5)
    first = await sentry.fetch(r, scope(), AFTER, "v1")
    later = Period(AFTER.start, AFTER.end + 30)
    second = await sentry.fetch(r, scope(), later, "v1")
    assert first.error is not None and second.error is not None
    assert "rate limiting" in second.error and "retry in" in second.error
    assert len(sentry_fake.seen("/events/")) == 1
    assert requests_counted(metrics, "sentry", "error") == 2


async def test_a_rate_limit_on_the_last_attempt_is_kept_for_the_next_fetch(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """With `max_attempts: 1` the reset of a 429 was forgotten (it was kept only when an
    attempt remained): each round sent its request into the limit again."""
    sentry_fake.fail("429", reset_in=45, match="/events/")
    provider = SentryProvider(sentry_settings(sentry_fake, max_attempts=1), metrics=metrics)
    r = rule(source="sentry", metric="error_count", max=5)
    try:
        first = await provider.fetch(r, scope(), AFTER, "v1")
        second = await provider.fetch(r, scope(), Period(AFTER.start, AFTER.end + 30), "v1")
    finally:
        await provider.aclose()
    assert first.error is not None and second.error is not None
    assert "not asked again before then" in second.error
    assert len(sentry_fake.seen("/events/")) == 1


@pytest.mark.parametrize("kind", ["500", "502", "507", "html:520", "html:524", "html:408"])
async def test_server_errors_are_retried_with_backoff(
    sentry: SentryProvider, sentry_fake: FakeSentry, kind: str
) -> None:
    """Every 5xx but 501, as New Relic's Go client retries (reference §10): a gateway's
    520-524 page (Cloudflare's "origin unreachable") was taken for Sentry's own answer, not
    retried, and alerted as "answered, but not usably: fix the configuration". A 408 (a
    proxy that timed the request out, RFC 9110 §15.5.9) was too."""
    sentry_fake.fail(kind, times=2, match="/events/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.error is None
    assert len(sentry_fake.seen("/events/")) == 3


@pytest.mark.parametrize("kind", ["503", "html:522"])
async def test_a_persistent_outage_is_an_error_observation(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics, kind: str
) -> None:
    sentry_fake.fail(kind)
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.value is None
    status = kind.removeprefix("html:")
    assert obs.error is not None and f"Sentry answered {status}" in obs.error, obs.error
    assert not obs.answered  # an outage that passes, not a configuration to fix
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_a_host_name_that_does_not_resolve_is_named_as_a_dns_failure(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in `base_url` said so, not as a refused connection (which sends one looking
    at Sentry's status page). The resolver is made to fail: no DNS here, nor in CI."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "sentry.example.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings = SentrySettings.model_validate(
        {"base_url": "http://sentry.example.invalid", "org": "acme", "token": SENTRY_TOKEN, **FAST}
    )
    obs = await error_rate_of_v1(settings, metrics)
    assert obs.error is not None
    assert obs.error.startswith(
        "could not reach Sentry (the name sentry.example.invalid did not resolve (DNS))"
    ), obs.error
    assert not obs.answered


async def test_a_rejected_token_says_so_once_without_retrying(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("401")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    # names the setting to fix, never its value
    assert obs.error == (
        "Sentry token rejected (401): set providers.sentry.token to a valid auth token of"
        f" organization {sentry_fake.org!r}"
    )
    assert len(sentry_fake.requests) == 1
    assert SENTRY_TOKEN not in repr(obs)


async def test_a_redirect_says_where_it_points_and_is_not_followed(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """`base_url: http://…` for an https-only host: the 301 said "Sentry answered 301"
    and nothing of where to; it is still not followed (the token would go along)."""
    sentry_fake.fail("moved")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.error is not None
    assert obs.error.startswith(
        f"Sentry answered 301, a redirect to https://127.0.0.1:{sentry_fake.port}/api/0/"
    ), obs.error
    assert "set providers.sentry.base_url to where it points" in obs.error
    assert "?" not in obs.error  # the query is not quoted
    assert len(sentry_fake.requests) == 1


async def test_a_hanging_sentry_ends_within_the_budget(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.fail("hang")
    errors = rule(source="sentry", metric="error_rate", max=0.1)
    obs = await kept_up(lambda: sentry.fetch(errors, scope(), AFTER, "v1"))
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


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"detail": "an echo: Bearer " + SENTRY_TOKEN}, "unexpected answer from Sentry (data:"),
        ([SENTRY_TOKEN, "sntrys_other-token-0123456789"], "(the answer: Input should be"),
        ({"data": ["sntrys_other-token-0123456789"]}, "unexpected answer from Sentry (data.0:"),
    ],
)
async def test_an_answer_of_the_wrong_shape_says_where_never_quoting_it(
    metrics: Metrics, aiohttp_server: Any, answer: object, said: str
) -> None:
    """Where the shape broke and how, not the answer's text: one that echoes the request
    (a misconfigured URL) or a stranger's tokens is never quoted in the alert."""

    async def handle(request: web.Request) -> web.Response:
        if request.path.startswith("/api/0/projects/"):
            return web.json_response({"id": "42", "slug": "web"})
        return web.json_response(answer)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    server = await aiohttp_server(app)
    settings = SentrySettings.model_validate(
        {"base_url": str(server.make_url("")), "org": "acme", "token": SENTRY_TOKEN, **FAST}
    )
    obs = await error_rate_of_v1(settings, metrics)
    assert obs.error is not None and said in obs.error, obs.error
    assert "sntrys_" not in obs.error and "Bearer" not in obs.error and "input" not in obs.error


async def test_a_long_error_that_quotes_the_token_never_shows_its_start(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """An error detail is scrubbed before it is cut to length: cut first, a token across
    the cut lost its end, and its start no longer matched the mask."""
    detail = "x" * 270 + f" unknown credential {SENTRY_TOKEN} (an echo of the request)"

    def echo(request: web.Request) -> None:
        raise web.HTTPBadRequest(
            text=json.dumps({"detail": detail}), content_type="application/json"
        )

    sentry_fake.before_answer = lambda request: (
        echo(request) if "/events/" in request.path else None
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
    )
    assert obs.error is not None and obs.error.startswith("Sentry rejected the query: xxx")
    assert "sntrys" not in obs.error, obs.error


async def test_an_unknown_project_is_named_in_the_error(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    s = sentry_scope("nope", "production")
    obs = await sentry.fetch(rule(source="sentry", metric="error_rate", max=0.1), s, AFTER, "v1")
    assert obs.error == (
        f"Sentry has no project 'nope' in organization {sentry_fake.org!r} (404): check"
        " baseline.sentry.project, providers.sentry.org and base_url"
    )


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
        assert await provider.mark(scope(), "deploy") is None
        assert await provider.mark(scope(version="v2.4.2"), "deploy") is None
        assert await provider.mark(scope(version="v2.4.2"), "rollback") is None
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


async def test_a_marker_lands_on_a_release_named_with_any_characters_sentry_accepts(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """The version is one path segment, percent-encoded once and decoded once by Sentry:
    `%41` stays `%41` (a fake that decoded it twice read "A", 404), `#`, `?`, `+`, spaces
    and non-ASCII letters included; the release Sentry finds is the one created."""
    version = "v2 #7?x=1&y+z %41 é"
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        assert await provider.mark(scope(version=version), "deploy") is None
        lookup = await provider._release_missing(
            version, ProjectRef("42", "web"), asyncio.get_running_loop().time() + 2
        )
    finally:
        await provider.aclose()
    assert list(sentry_fake.releases) == [version]
    assert [d["version"] for d in sentry_fake.deploys] == [version]
    assert lookup == "a release Sentry has had no event of"  # found, by its exact name


async def test_a_deploy_into_an_existing_release_adds_the_project_first(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """Sentry refuses a deploy of a project the release lacks (400 "Invalid projects
    (web) for release v2.4.1"); the old client sent the deploy straight away."""
    sentry_fake.projects["mobile"] = 7
    sentry_fake.releases["v2.4.1"] = {"version": "v2.4.1", "projects": ["mobile"]}
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        assert await provider.mark(scope(), "deploy") is None
    finally:
        await provider.aclose()
    assert sentry_fake.releases["v2.4.1"]["projects"] == ["mobile", "web"]
    assert [d["projects"] for d in sentry_fake.deploys] == [["web"]]


async def test_a_numeric_project_is_resolved_to_its_slug_once_for_markers_and_reads(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """Release creation takes slugs ("Invalid project ids or slugs" for `"42"`)."""
    s = sentry_scope("42", "production")
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        obs = await provider.fetch(
            rule(source="sentry", metric="error_rate", max=0.1), s, AFTER, "v1"
        )
        assert await provider.mark(s, "deploy") is None
        assert await provider.mark(s, "rollback") is None
    finally:
        await provider.aclose()
    assert obs.error is None
    assert sentry_fake.seen("/events/")[0].param("project") == "42"
    assert sentry_fake.releases["v2.4.1"]["projects"] == ["web"]
    assert [d["projects"] for d in sentry_fake.deploys] == [["web"], ["web"]]
    assert len(sentry_fake.seen("/projects/")) == 1


async def test_a_marker_without_the_release_scope_is_one_message_naming_it(
    metrics: Metrics,
) -> None:
    async with FakeSentry(token=SENTRY_TOKEN, scopes={"org:read", "project:read"}) as fake:
        provider = SentryProvider(sentry_settings(fake, markers=True), metrics=metrics)
        try:
            message = await provider.mark(scope(), "deploy")
        finally:
            await provider.aclose()
    assert message is not None
    assert "project:releases" in message and "403" in message
    assert fake.deploys == []
    assert requests_counted(metrics, "sentry", "error") == 1


async def test_a_marker_that_cannot_be_placed_says_why(
    sentry: SentryProvider, sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        message = await provider.mark(scope(previous_version=None), "rollback")
    finally:
        await provider.aclose()
    assert message is not None and "no previous version" in message
    assert sentry_fake.requests == []


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


@pytest.mark.parametrize(
    ("version", "why"),
    [
        ("v2.4.1+build/7", "it contains '/'"),
        ("release\\v2", "it contains '\\\\'"),
        ("latest", "Sentry reserves 'latest'"),
        ("v" * 201, "it is 201 characters long, over 200"),
    ],
)
async def test_a_release_name_sentry_refuses_is_said_so_without_asking(
    sentry_fake: FakeSentry, metrics: Metrics, version: str, why: str
) -> None:
    """Sentry can have no such release (its `BAD_RELEASE_CHARS`, 200 characters,
    `latest`): no query can match it, and its marker was refused with a 404 that named a
    missing scope (a live audit, release "v2.0.0+b/7 …")."""
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    s = scope(version=version)
    try:
        obs = await provider.fetch(
            rule(source="sentry", metric="error_rate", max=0.1), s, AFTER, version
        )
        marker = await provider.mark(s, "deploy")
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith(
        f"Sentry can have no release named {version!r} ({why};"
    ), obs.error
    assert obs.answered  # a fix to make, not an outage to wait out
    assert marker is not None and f"no release named {version!r} ({why};" in marker
    assert sentry_fake.requests == []


def test_release_names_sentry_accepts_are_not_refused() -> None:
    for name in ("v2.4.1", "web@2.4.1+b7", 'v2 #x&y="q" é%20', "v" * 200, "latest-2"):
        assert release_refused(name) is None, name


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


# ------------------------------------------------ sampling, periods, environments


async def test_sampled_spans_give_the_judge_the_stored_sample_not_the_estimate(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """At a 10% trace sample rate `count()` is ten times the spans behind
    `failure_rate()`; the old client took it as the sample size."""
    sentry_fake.set_stats(
        SentryStats(transactions=20_000, failure_rate=0.01, sample_rate=0.1), release="v2.4.1"
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), AFTER, "v2.4.1"
    )
    assert (obs.value, obs.count, obs.total) == (0.01, 20, 2000)
    assert obs.query is not None and "sampled: 2,000 stored transactions" in obs.query
    assert "10.0%" in obs.query


async def test_unsampled_spans_say_nothing_of_sampling(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(transactions=2000, failure_rate=0.01), release="v2.4.1")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), AFTER, "v2.4.1"
    )
    assert (obs.count, obs.total) == (20, 2000)
    assert obs.query is not None and "sampled" not in obs.query


async def test_sampled_p95_counts_the_stored_spans(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(
        SentryStats(transactions=5000, p95_ms=300.0, sample_rate=0.1), release="v2.4.1"
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="p95_duration", max="1s"), scope(), AFTER, "v2.4.1"
    )
    assert (obs.count, obs.total) == (500, 500)
    assert obs.value == pytest.approx(0.3)
    assert obs.query is not None and "sampled" in obs.query


async def test_session_periods_never_overlap_and_carry_the_length_sentry_answered(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Sentry widens sessions to whole hours: the baseline [10:06:40, 11:06:40) used
    to become 10:00-12:00, overlapping the current period (11:00-12:00), and both
    were stamped with the length asked for."""
    sentry_fake.set_stats(SentryStats(sessions=4000, crash_free_rate=0.99))
    r = rule(source="sentry", metric="crash_free_rate", min=0.9)

    before = await sentry.fetch(r, scope(previous_version=None), BEFORE, None)
    after = await sentry.fetch(r, scope(previous_version=None), AFTER, None)

    asked = sentry_fake.seen("/sessions/")
    assert [(q.param("start"), q.param("end")) for q in asked] == [
        ("2026-11-18T10:00:00Z", "2026-11-18T11:00:00Z"),
        ("2026-11-18T11:06:40Z", "2026-11-18T11:08:40Z"),
    ]
    assert before.seconds == 3600.0  # 10:00-11:00, all before the deploy's hour
    assert after.seconds == 520.0  # Sentry's 11:00 to the period's end, 11:08:40
    assert after.query is not None and "answered for 2026-11-18T11:00:00Z" in after.query
    assert before.error is None and after.error is None


async def test_a_short_lookback_still_asks_for_a_whole_hour_before_the_deploys_hour(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    r = rule(source="sentry", metric="crash_free_rate", min=0.9)
    await sentry.fetch(r, scope(), Period(T0 - 600, T0), "v2.4.0")
    asked = sentry_fake.seen("/sessions/")[0]
    assert (asked.param("start"), asked.param("end")) == (
        "2026-11-18T10:00:00Z",
        "2026-11-18T11:00:00Z",
    )


@pytest.mark.parametrize("metric", ["error_rate", "crash_free_rate", "p95_duration"])
async def test_an_environment_sentry_has_not_seen_is_no_data_yet(
    sentry: SentryProvider, metric: str
) -> None:
    s = sentry_scope("web", "canary")
    obs = await sentry.fetch(rule(source="sentry", metric=metric, min=0.0), s, AFTER, "v1")
    assert obs.value is None
    assert obs.error == (
        "no data yet for environment 'canary': Sentry has seen no event there (404)"
    )


async def test_a_token_without_project_read_is_told_so(metrics: Metrics) -> None:
    async with FakeSentry(token=SENTRY_TOKEN, scopes={"org:read"}) as fake:
        provider = SentryProvider(sentry_settings(fake), metrics=metrics)
        try:
            obs = await provider.fetch(
                rule(source="sentry", metric="error_rate", max=0.1), scope(), AFTER, "v1"
            )
        finally:
            await provider.aclose()
    assert obs.error is not None and "403" in obs.error and "project:read" in obs.error
    assert "providers.sentry.token" in obs.error and SENTRY_TOKEN not in obs.error


# ------------------------------------------------------------- bucketed baselines


async def test_an_error_rate_baseline_carries_its_buckets_burstiness(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """The baseline's failures per minute (events-timeseries, `sampleCount` per bucket)
    say how bursty they are; the judge discounts by that (Observation.dispersion)."""
    bursty = tuple((100, 10 if i % 6 == 0 else 0) for i in range(60))
    sentry_fake.set_stats(
        SentryStats(transactions=6000, failed_stored=100, buckets=bursty), release="v2.4.0"
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), BEFORE, "v2.4.0"
    )
    assert (obs.count, obs.total) == (100, 6000)
    assert obs.value == pytest.approx(100 / 6000)
    assert obs.periods == 60
    assert obs.dispersion is not None and obs.dispersion > 0.05
    (asked,) = sentry_fake.seen("/events-timeseries/")
    assert asked.params("yAxis") == ["failure_rate()"]
    assert asked.param("interval") == "60"  # seconds, as parse_stats_period reads it
    assert asked.param("query") == 'is_transaction:true release:"v2.4.0"'


async def test_the_current_period_asks_for_no_buckets(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), AFTER, "v2.4.1"
    )
    assert obs.error is None and obs.periods == 1
    assert sentry_fake.seen("/events-timeseries/") == []


async def test_without_buckets_the_baseline_is_the_single_figure(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(transactions=2000, failure_rate=0.01), release="v2.4.0")
    sentry_fake.fail("500", match="/events-timeseries/")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), BEFORE, "v2.4.0"
    )
    assert obs.error is None
    assert (obs.value, obs.count, obs.total, obs.periods) == (0.01, 20, 2000, 1)
    assert obs.dispersion is None


def test_baseline_buckets_are_sentrys_shortest_interval_within_120() -> None:
    assert bucket_seconds(Period(0, 3600)) == 60
    assert bucket_seconds(Period(0, 6 * 3600)) == 300
    assert bucket_seconds(Period(0, 86400)) == 900
    assert bucket_seconds(Period(0, 90 * 86400)) == 86400


async def test_a_crash_free_baseline_of_several_hours_carries_its_hours(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Release health answers a `series` per hour: a 6 h baseline is 6 periods."""
    sentry_fake.set_stats(SentryStats(sessions=6000, crash_free_rate=0.99), release="v2.4.0")
    obs = await sentry.fetch(
        rule(source="sentry", metric="crash_free_rate", min=0.9),
        scope(),
        Period(T0 - 6 * 3600, T0),
        "v2.4.0",
    )
    assert (obs.value, obs.count, obs.total) == (0.99, 5940, 6000)
    assert obs.periods == 6
    assert obs.seconds == 6 * 3600


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"detail": "Invalid token"}, "Invalid token"),
        (
            {
                "detail": {
                    "code": "parameter-validation-error",
                    "message": "Invalid projects (web) for release v1",
                    "extra": {"context": ""},
                }
            },
            "Invalid projects (web) for release v1",
        ),
        ({"projects": ["Invalid project ids or slugs"]}, "projects: Invalid project ids or slugs"),
        ("<html>proxy error</html>", ""),
    ],
)
def test_sentrys_three_error_shapes_are_read(body: object, said: str) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert error_detail(Answer(400, CIMultiDictProxy(CIMultiDict()), raw)) == said


# ------------------------------------------------ release names and unknown releases

ERRORS = rule(source="sentry", metric="error_count", max=100)


async def test_baseline_sentry_release_names_the_release_in_queries_links_and_markers(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """The SDK names its release `web@v2.4.1` (Sentry's `package@version`); the agent
    asked for `release:"v2.4.1"`, which matches nothing."""
    sentry_fake.set_stats(SentryStats(errors=12), release="web@v2.4.0")
    sentry_fake.set_stats(SentryStats(errors=3000, transactions=500), release="web@v2.4.1")
    s = sentry_scope(release="web@{version}")
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        before = await provider.fetch(ERRORS, s, BEFORE, "v2.4.0")
        after = await provider.fetch(ERRORS, s, AFTER, "v2.4.1")
        health = rule(source="sentry", metric="crash_free_rate", min=0.9)
        sessions = await provider.fetch(health, s, AFTER, "v2.4.1")
        issues = provider.link(ERRORS, s, AFTER)
        releases = provider.link(health, s, BEFORE, release="v2.4.0")
        assert await provider.mark(s, "deploy") is None
        assert await provider.mark(s, "rollback") is None
    finally:
        await provider.aclose()
    assert (before.value, after.value, before.error, after.error) == (12.0, 3000.0, None, None)
    assert sessions.query is not None and 'release:"web@v2.4.1"' in sessions.query
    queries = [q.param("query") for q in sentry_fake.seen("/events/")]
    assert queries == ['release:"web@v2.4.0"', 'release:"web@v2.4.1"']
    assert sentry_fake.seen("/sessions/")[0].param("query") == 'release:"web@v2.4.1"'
    assert issues is not None and parse_qs(urlsplit(issues).query)["query"] == [
        'release:"web@v2.4.1"'
    ]
    assert releases is not None and "/releases/web%40v2.4.0/" in releases
    assert [d["version"] for d in sentry_fake.deploys] == ["web@v2.4.1", "web@v2.4.0"]


def grouped(seen: list[Seen]) -> list[Seen]:
    """The events queries that group errors by release (no release filter)."""
    return [e for e in seen if e.params("field") == ["release", "count()"]]


async def test_a_0_of_a_release_sentry_does_not_know_while_others_err_is_no_data(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """The audit's case: the SDK sends `web@v2.4.1`, the deploy registered `v2.4.1`;
    Sentry answered 0 errors for `release:"v2.4.1"` and `max: 100` passed 3000."""
    sentry_fake.set_stats(SentryStats(errors=3000), release="web@v2.4.1")
    obs = await sentry.fetch(ERRORS, scope(), AFTER, "v2.4.1")
    assert obs.value is None and obs.answered
    assert obs.error == (
        'Sentry has 3,000 errors in this period, none of release "v2.4.1" (a name Sentry'
        " does not know): name it as your SDK does with baseline.sentry.release"
        ' (e.g. "web@{version}")'
    )
    filtered, by_release = sentry_fake.seen("/events/")  # the count, then one grouping
    assert filtered.param("query") == 'release:"v2.4.1"'
    assert by_release.param("query") is None and by_release.param("sort") == "-count()"
    assert (by_release.param("project"), by_release.param("environment")) == ("42", "production")
    assert (by_release.param("start"), by_release.param("end")) == (
        filtered.param("start"),
        filtered.param("end"),
    )
    (lookup,) = sentry_fake.seen("/releases/")
    assert (lookup.method, lookup.path) == ("GET", "/api/0/organizations/acme/releases/v2.4.1/")


async def test_a_quiet_release_with_0_errors_costs_one_more_request_and_no_lookup(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Error-only SDK, no error yet: Sentry does not know the release (404), which is
    why the lookup is asked only when other names had errors."""
    obs = await sentry.fetch(ERRORS, scope(), AFTER, "v2.4.1")
    assert (obs.value, obs.error) == (0.0, None)
    assert len(sentry_fake.seen("/events/")) == 2
    assert sentry_fake.seen("/releases/") == []


async def test_a_release_with_errors_costs_no_extra_request(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(errors=4), release="v2.4.1")
    sentry_fake.set_stats(SentryStats(errors=900), release="worker@v7")
    assert (await sentry.fetch(ERRORS, scope(), AFTER, "v2.4.1")).value == 4.0
    assert len(sentry_fake.seen("/events/")) == 1
    assert sentry_fake.seen("/releases/") == []


async def test_a_canary_whose_previous_release_errs_believes_the_new_ones_0(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Rolling deploy: `v2.4.0` still serves (and errs) in the current period, `v2.4.1`
    is correctly named but has had no event yet (Sentry would answer 404 for it)."""
    sentry_fake.set_stats(SentryStats(errors=500), release="v2.4.0")
    for end in (T0 + 30, T0 + 60):
        obs = await sentry.fetch(ERRORS, scope(), Period(T0, end), "v2.4.1")
        assert (obs.value, obs.error) == (0.0, None)
    assert len(grouped(sentry_fake.seen("/events/"))) == 2
    assert sentry_fake.seen("/releases/") == []


async def test_the_baselines_0_is_checked_the_same_way(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    sentry_fake.set_stats(SentryStats(errors=40), release="web@v2.4.0")
    obs = await sentry.fetch(ERRORS, scope(), BEFORE, "v2.4.0")
    assert obs.error is not None
    assert obs.error.startswith('Sentry has 40 errors in this period, none of release "v2.4.0"')
    # asked again (the baseline is asked each round until it has data): the same period,
    # so the lookup's 404 is reused
    assert (await sentry.fetch(ERRORS, scope(), BEFORE, "v2.4.0")).error == obs.error
    assert len(sentry_fake.seen("/releases/")) == 1


async def test_a_known_release_with_0_errors_while_another_app_errs_is_believed(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """A project shared with a worker (`worker@v7`): the release is known (it had
    transactions), so its 0 stands; looked up once per window, not per round."""
    sentry_fake.set_stats(SentryStats(errors=900), release="worker@v7")
    sentry_fake.set_stats(SentryStats(errors=0, transactions=50), release="v2.4.1")
    for t0 in (T0, T0 + 3600):  # two windows, three rounds each
        s = scope(deploy_id=f"dep_{t0}", deployed_at=t0)
        for k in (1, 2, 3):
            obs = await sentry.fetch(ERRORS, s, Period(t0, t0 + 30 * k), "v2.4.1")
            assert (obs.value, obs.error) == (0.0, None)
    assert len(sentry_fake.seen("/releases/")) == 2
    assert len(sentry_fake.seen("/events/")) == 2 * 3 * 2


async def test_an_unknown_release_is_looked_up_again_a_minute_of_periods_later(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """A release appears with its first event (here a transaction: still 0 errors)."""
    sentry_fake.set_stats(SentryStats(errors=900), release="worker@v7")
    for end in (30, 60, 89):  # rounds every 30 s: the first one's 404 is reused
        obs = await sentry.fetch(ERRORS, scope(), Period(T0, T0 + end), "v2.4.1")
        assert obs.error is not None and "a name Sentry does not know" in obs.error
        assert 'baseline.sentry.release (e.g. "web@{version}")' in obs.error
    assert len(sentry_fake.seen("/releases/")) == 1
    sentry_fake.set_stats(SentryStats(errors=0, transactions=5), release="v2.4.1")
    later = await sentry.fetch(ERRORS, scope(), Period(T0, T0 + 90), "v2.4.1")
    assert (later.value, later.error) == (0.0, None)
    assert len(sentry_fake.seen("/releases/")) == 2


async def test_a_release_only_other_projects_have_is_unknown_to_this_one(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Releases are the organization's: `v2.4.1` of the mobile app is not the web app's."""
    sentry_fake.projects["mobile"] = 7
    sentry_fake.releases["v2.4.1"] = {"version": "v2.4.1", "projects": ["mobile"]}
    sentry_fake.unreleased = 12
    obs = await sentry.fetch(ERRORS, scope(), AFTER, "v2.4.1")
    assert obs.error is not None
    assert obs.error.startswith(
        'Sentry has 12 errors in this period, none of release "v2.4.1" (a name Sentry'
        " knows only in other projects than web)"
    )


async def test_a_configured_template_is_named_when_no_name_suggests_another(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    sentry_fake.set_stats(SentryStats(errors=8), release="3f9c2e1")  # the SDK's git SHA
    provider = SentryProvider(sentry_settings(sentry_fake), metrics=metrics)
    try:
        s = sentry_scope(release="web-{version}")
        obs = await provider.fetch(ERRORS, s, AFTER, "v2.4.1")
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.endswith(
        'none of release "web-v2.4.1" (a name Sentry does not know): name it as your SDK'
        ' does with baseline.sentry.release (now "web-{version}")'
    )


async def test_a_token_that_may_not_read_releases_believes_the_0_and_logs_once(
    sentry: SentryProvider, sentry_fake: FakeSentry, caplog: pytest.LogCaptureFixture
) -> None:
    sentry_fake.set_stats(SentryStats(errors=900), release="worker@v7")
    sentry_fake.fail("403", match="/releases/")
    for t0 in (T0, T0 + 3600):  # two windows, two rounds each
        s = scope(deploy_id=f"dep_{t0}", deployed_at=t0)
        for k in (1, 2):
            obs = await sentry.fetch(ERRORS, s, Period(t0, t0 + k), "v2.4.1")
            assert (obs.value, obs.error) == (0.0, None)
    assert len(sentry_fake.seen("/releases/")) == 2  # once per window, not per round
    warned = [r for r in caplog.records if "may not read releases" in r.getMessage()]
    assert len(warned) == 1


async def test_a_release_only_a_marker_created_is_not_the_sdks(
    sentry_fake: FakeSentry, metrics: Metrics
) -> None:
    """With `markers: true` the agent itself creates `v2.4.1` at the window's start:
    Sentry then knows the name, but has had no event of it (`firstEvent` null)."""
    sentry_fake.set_stats(SentryStats(errors=3000), release="web@v2.4.1")
    provider = SentryProvider(sentry_settings(sentry_fake, markers=True), metrics=metrics)
    try:
        assert await provider.mark(scope(), "deploy") is None
        obs = await provider.fetch(ERRORS, scope(), AFTER, "v2.4.1")
    finally:
        await provider.aclose()
    assert obs.error is not None and obs.error.startswith(
        'Sentry has 3,000 errors in this period, none of release "v2.4.1" (a release'
        " Sentry has had no event of): name it as your SDK does with baseline.sentry.release"
        ' (e.g. "web@{version}")'
    )


def test_errors_elsewhere_leaves_out_the_windows_own_names() -> None:
    counts = {"v2.4.0": 50, "web@v2.4.1": 7, "": 3, "v2.4.1": 0}
    assert errors_elsewhere(counts, ["v2.4.1", "v2.4.0"]) == {"web@v2.4.1": 7, "": 3}
    assert errors_elsewhere({"v2.4.0": 50}, ["v2.4.1", "v2.4.0"]) == {}


@pytest.mark.parametrize(
    ("version", "names", "template"),
    [
        ("v2", ["web@v2"], "web@{version}"),
        ("2.4.1", ["", "api-2.4.1"], "api-{version}"),
        ("v2", ["web@v12", "v2"], None),  # not v2's; the bare name has no prefix
        ("1.0", ["a{b}@1.0"], "a{{b}}@{version}"),
        ("v2", ["3f9c2e1"], None),
    ],
)
def test_release_template_reads_the_sdks_name_off_sentrys(
    version: str, names: list[str], template: str | None
) -> None:
    assert release_template(version, names) == template


@pytest.mark.parametrize(
    ("metric", "stats", "said"),
    [
        # a share Sentry documents as 0..1 (`percentage`, a fraction) answered as 1.5
        (
            "error_rate",
            SentryStats(transactions=1000, failed_stored=1500),
            "'failure_rate()' is 1.5, not a fraction from 0 to 1",
        ),
        (
            "error_rate",
            SentryStats(transactions=1000, failed_stored=-200),
            "'failure_rate()' is -0.2, not a fraction from 0 to 1",
        ),
        (
            "crash_free_rate",
            SentryStats(sessions=1000, crash_free_rate=99.5),
            "'crash_free_rate(session)' is 99.5, not a fraction from 0 to 1",
        ),
    ],
)
async def test_a_rate_outside_0_to_1_is_no_data_never_a_rate_of_150_percent(
    sentry: SentryProvider, sentry_fake: FakeSentry, metric: str, stats: SentryStats, said: str
) -> None:
    """A rate Sentry answered outside 0..1 is an answer not understood (the rule
    inconclusive, the provider alerted), named by its column: the generic check after the
    fetch caught it too, but told the user "a query answering a percentage (0-100) must
    divide it by 100", where a Sentry rule has no query of theirs to divide."""
    sentry_fake.set_stats(stats, release="v2.4.1")
    r = rule(source="sentry", metric=metric, max=0.5)
    obs = await sentry.fetch(r, scope(), AFTER, "v2.4.1")
    assert obs.value is None and obs.error is not None, obs
    assert said in obs.error, obs.error


async def test_a_negative_count_is_no_data_never_a_count(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """A negative number of events or stored spans is no count at all (it was taken as
    is: -5 errors passed any error_count bound)."""
    sentry_fake.set_stats(SentryStats(errors=-5), release="v2.4.1")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_count", max=3), scope(), AFTER, "v2.4.1"
    )
    assert obs.value is None and obs.error is not None, obs
    assert "'count()' is -5, not a count" in obs.error, obs.error


async def test_a_bucket_rate_outside_0_to_1_leaves_the_single_figure(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """A baseline bucket whose `failure_rate()` is past 1 is not a rate as documented:
    the table's figure stands alone (the bucket was pooled as 150 of 100 failed)."""
    odd = ((100, 150), *((100, 0) for _ in range(59)))
    sentry_fake.set_stats(
        SentryStats(transactions=6000, failed_stored=150, buckets=odd), release="v2.4.0"
    )
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.05), scope(), BEFORE, "v2.4.0"
    )
    assert obs.error is None and (obs.count, obs.total) == (150, 6000)
    assert sentry_fake.seen("/events-timeseries/")  # asked, and set aside
    assert (obs.periods, obs.dispersion) == (1, None)


async def test_a_count_past_what_sentry_can_hold_is_no_data(
    sentry: SentryProvider, sentry_fake: FakeSentry
) -> None:
    """Sentry's counts are ClickHouse's UInt64: 1e300 stored spans is no count, and the
    judge raised on it (ZeroDivisionError in the rate's bounds) where it was taken as is."""
    sentry_fake.set_stats(SentryStats(transactions=10**300), release="v2.4.1")
    obs = await sentry.fetch(
        rule(source="sentry", metric="error_rate", max=0.5), scope(), AFTER, "v2.4.1"
    )
    assert obs.value is None and obs.error is not None, obs
    assert "'count()' is 1e+300, not a count" in obs.error, obs.error


async def test_the_fakes_refusals_are_in_sentrys_detail_shape(sentry_fake: FakeSentry) -> None:
    """Sentry (Django REST framework) answers a path it does not know 404 and a method a
    path does not take 405, each `{"detail"}` in JSON: the fake answered both with
    aiohttp's text, which `error_detail` read as nothing to quote."""
    import aiohttp

    sentry_fake.fail("unavailable", times=1)
    projects = f"{sentry_fake.url}/api/0/projects/{sentry_fake.org}/web/"
    asked = [
        ("GET", projects, 503, "service unavailable"),
        ("GET", f"{sentry_fake.url}/api/0/nowhere/", 404, "The requested resource does not exist"),
        ("DELETE", projects, 405, 'Method "DELETE" not allowed.'),
    ]
    async with aiohttp.ClientSession() as session:
        for method, url, status, said in asked:
            async with session.request(method, url) as got:
                answer = Answer(got.status, got.headers, await got.read())
            assert (answer.status, error_detail(answer)) == (status, said)

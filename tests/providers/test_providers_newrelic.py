"""New Relic provider against the fake NerdGraph: periods, result shapes, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from agent.analysis.types import Observation
from agent.metrics import Metrics
from agent.providers.base import Period
from agent.providers.client import ProviderError
from agent.providers.newrelic import NewRelicProvider, nrql_for, observation_from_rows
from agent.providers.provider_settings import BaselineSettings, NewRelicSettings
from agent.settings_file import ConfigError, load_settings_text
from tests.fakes._server import Failure
from tests.fakes.newrelic import FakeNewRelic
from tests.providers.support import (
    AFTER,
    BEFORE,
    NEWRELIC_KEY,
    T0,
    kept_up,
    newrelic_settings,
    requests_counted,
    rule,
    scope,
)

P95 = "SELECT percentile(duration, 95) FROM Transaction WHERE appName = 'web (production)'"


async def count_since_the_deploy(provider: NewRelicProvider) -> Observation:
    """`provider`'s answer to `SELECT count(*) FROM Transaction` since the deploy."""
    return await provider.fetch(
        rule(source="newrelic", nrql="SELECT count(*) FROM Transaction", max=1),
        scope(),
        AFTER,
        None,
    )


async def test_p95_before_and_after_the_deploy_with_the_periods_appended(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    newrelic_fake.answer(P95, [{"percentile.duration": {"95": 0.2}}])
    newrelic_fake.answer(P95, [{"percentile.duration": {"95": 0.9}}], since=T0)
    r = rule(source="newrelic", nrql=P95, max_increase="25%")

    baseline = await newrelic.fetch(r, scope(), BEFORE, "v2.4.0")
    current = await newrelic.fetch(r, scope(), AFTER, "v2.4.1")

    assert (baseline.value, current.value) == (0.2, 0.9)
    assert current.quantile == 0.95
    assert newrelic_fake.queries == [
        (P95, int((T0 - 3600) * 1000), int(T0 * 1000)),
        (P95, int(T0 * 1000), int((T0 + 120) * 1000)),
    ]
    assert current.query == f"{P95} SINCE {int(T0 * 1000)} UNTIL {int((T0 + 120) * 1000)}"
    sent = newrelic_fake.requests[0]
    assert sent.headers["API-Key"] == NEWRELIC_KEY
    assert sent.body["variables"]["accountId"] == newrelic_fake.account_id
    assert "nrql(query: $nrql" in sent.body["query"]
    assert requests_counted(metrics, "newrelic", "ok") == 2


ERR_PCT = (
    "SELECT percentage(count(*), WHERE error IS true) AS 'errPct' FROM Transaction"
    " WHERE appName = 'web (production)'"
)


async def test_a_rate_rule_answered_as_a_percentage_is_no_data_not_a_rate_of_120_percent(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    # percentage() answers 0-100: 1.2 is 1.2% errors; read as a rate it was 120% and
    # rolled back a healthy release against max: 0.05
    newrelic_fake.answer(ERR_PCT, [{"errPct": 1.2}])
    r = rule(source="newrelic", nrql=ERR_PCT, metric="error_rate", max=0.05)
    obs = await newrelic.fetch(r, scope(), AFTER, "v2.4.1")
    assert obs.value is None and obs.answered
    assert obs.error is not None and "1.2 for error_rate" in obs.error
    assert "divide it by 100" in obs.error
    # the same answer for a rule that does not say it is a rate is taken as it is
    plain = await newrelic.fetch(rule(source="newrelic", nrql=ERR_PCT, max=5), scope(), AFTER, None)
    assert plain.value == 1.2 and plain.error is None


ERRORS_OF_TOTAL = (
    "SELECT filter(count(*), WHERE error IS true) AS 'errors', count(*) AS 'total' FROM Transaction"
)


async def test_counts_past_what_any_count_can_be_are_no_data(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    """1e300 transactions is no count (NRDB's counts are 64-bit): a rate on it went to
    the judge, which raised (ZeroDivisionError in the rate's bounds; 1e20 judged fine)."""
    newrelic_fake.answer(ERRORS_OF_TOTAL, [{"errors": 1e299, "total": 1e300}])
    r = rule(source="newrelic", nrql=ERRORS_OF_TOTAL, metric="error_rate", max=0.05)
    obs = await newrelic.fetch(r, scope(), AFTER, None)
    assert obs.value is None and obs.count is None and obs.total is None, obs
    assert obs.error == "New Relic answered a count of 1e+300, more than any count can be", obs


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"count": 1000}], (1000.0, 1000, None)),
        ([{"percentage": 4.5}], (4.5, None, None)),
        ([{"errPct": 1.25}], (1.25, None, None)),
        ([{"percentile.duration": {"95": 0.2, "99": 0.4}}], (0.2, None, None)),
        ([{"rpm": 1200.5}], (1200.5, None, None)),
        ([{"errors": 12, "total": 400}], (0.03, 12, 400)),
        ([{"total": 400, "failed": 40}], (0.1, 40, 400)),
        ([{"value": 0.07, "errors": 7, "total": 100}], (0.07, 7, 100)),
        ([{"average.duration": None}], (None, None, None)),
        ([], (None, None, None)),
        ([{"beginTimeSeconds": 1, "endTimeSeconds": 2, "count": 5}], (5.0, 5, None)),
    ],
)
def test_result_rows_become_observations(
    rows: list[dict[str, object]], expected: tuple[float | None, int | None, int | None]
) -> None:
    obs = observation_from_rows(rows, "q")
    assert (obs.value, obs.count, obs.total) == expected


def test_several_rows_are_refused_because_a_rule_needs_one_number() -> None:
    with pytest.raises(ProviderError, match="2 rows"):
        observation_from_rows([{"appName": "a", "count": 1}, {"appName": "b", "count": 2}], "q")


NRQL_CONFIG = """\
server: {listen: "127.0.0.1:8787", api_tokens: ["tok-1234567890abcdef"]}
providers:
  newrelic: {account_id: 1, api_key: k3y-value}
environments:
  production:
    base_url: http://127.0.0.1:9
    rules:
      - name: apm
        source: newrelic
        nrql: "%s"
        max: 5
    rollback: {url: "http://127.0.0.1:9998/rollback", secret: shh-secret}
"""


@pytest.mark.parametrize(
    ("nrql", "clause"),
    [
        ("SELECT count(*) FROM Transaction FACET appName", "FACET"),
        ("SELECT count(*) FROM Transaction TIMESERIES 1 minute", "TIMESERIES"),
        ("SELECT count(*) FROM Transaction compare  with 1 week ago", "COMPARE WITH"),
    ],
)
def test_nrql_that_answers_several_rows_is_refused_by_the_config(nrql: str, clause: str) -> None:
    """Each gave a valid config, then at every window "NRQL returned 12 rows", "unexpected
    value in NRQL result (str)" (a FACET of one row) or "no nrql results" (COMPARE WITH)."""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(NRQL_CONFIG % nrql)
    (problem,) = caught.value.problems
    assert "environments.production.rules[0].nrql" in str(problem)
    assert f"nrql must not use {clause}: a rule needs one number per period" in str(problem)


NRQL_RATE_CONFIG = NRQL_CONFIG.replace(
    "        max: 5", "        metric: error_rate\n        max: 0.05"
)


def test_a_rate_rule_on_percentage_is_refused_unless_divided_by_100() -> None:
    """`percentage()` answers 0-100: 0.5% errors came back as 0.5, in range for a rate,
    and was judged as 50% against `max: 0.05`, a healthy release rolled back (only an
    answer over 1 was caught, at fetch time)."""
    with pytest.raises(ConfigError) as caught:
        load_settings_text(NRQL_RATE_CONFIG % ERR_PCT)
    (problem,) = caught.value.problems
    assert "environments.production.rules[0].nrql" in str(problem)
    assert "percentage() answers 0-100" in str(problem)
    assert "/ 100" in str(problem)


@pytest.mark.parametrize(
    "nrql",
    [
        "SELECT percentage(count(*), WHERE error IS true) / 100 AS 'rate' FROM Transaction",
        "SELECT percentage(count(*), WHERE error IS true)/100.0 FROM Transaction",
        "SELECT 0.01 * percentage(count(*), WHERE error IS true) FROM Transaction",
        "SELECT filter(count(*), WHERE error IS true) / count(*) FROM Transaction",
        "SELECT count(*) FROM Transaction WHERE name = 'percentage(x)' // percentage(",
    ],
)
def test_a_rate_rule_on_a_fraction_is_taken(nrql: str) -> None:
    rule = load_settings_text(NRQL_RATE_CONFIG % nrql).environments["production"].rules[0]
    assert rule.to_rule().query == nrql


def test_the_words_inside_a_string_or_a_quoted_name_are_not_clauses() -> None:
    nrql = "SELECT count(*) AS `facet` FROM Transaction WHERE name = 'TIMESERIES job'"
    rule = load_settings_text(NRQL_CONFIG % nrql).environments["production"].rules[0]
    assert rule.to_rule().query == nrql


@pytest.mark.parametrize(
    "nrql",
    [
        "SELECT count(*) FROM Transaction WHERE name = 'since v2 UNTIL v3'",
        "SELECT count(*) FROM Transaction -- errors since the deploy, FACET-free",
        "SELECT count(*) FROM Transaction /* until it TIMESERIES */ WHERE error IS true",
    ],
)
def test_clauses_inside_a_string_or_a_comment_are_not_refused(nrql: str) -> None:
    """`validate-config` refused NRQL New Relic reads as one row over the agent's period:
    the words were in a string literal or a comment, which NRQL does not read."""
    rule = load_settings_text(NRQL_CONFIG % nrql).environments["production"].rules[0]
    assert rule.to_rule().query == nrql


def test_a_clause_after_a_comment_is_still_refused() -> None:
    nrql = "SELECT count(*) FROM Transaction -- the last day\\n SINCE 1 day ago"
    with pytest.raises(ConfigError, match="nrql must not contain SINCE or UNTIL"):
        load_settings_text(NRQL_CONFIG % nrql)


def test_the_period_goes_in_epoch_milliseconds() -> None:
    assert nrql_for("SELECT count(*) FROM Transaction ;", Period(1.0005, 2.5)) == (
        "SELECT count(*) FROM Transaction SINCE 1000 UNTIL 2500"
    )


@pytest.mark.parametrize("comment", ["// 5xx only", "-- 5xx only"])
async def test_a_trailing_comment_never_swallows_the_period(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, comment: str
) -> None:
    """NRQL ignores `--` and `//` to the end of the line: the period appended on the
    comment's line was read as part of it, so New Relic answered its default, the last
    hour, for the baseline and the current period alike."""
    nrql = f"SELECT count(*) FROM Transaction WHERE httpResponseCode LIKE '5%' {comment}"
    newrelic_fake.answer(nrql, [{"count": 3}])
    newrelic_fake.answer(nrql, [{"count": 40}], since=T0)
    r = rule(source="newrelic", nrql=nrql, max_increase="50%")

    baseline = await newrelic.fetch(r, scope(), BEFORE, None)
    current = await newrelic.fetch(r, scope(), AFTER, None)

    assert (baseline.error, current.error) == (None, None)
    assert (baseline.value, current.value) == (3, 40)
    assert [(since, until) for _, since, until in newrelic_fake.queries] == [
        (int(BEFORE.start * 1000), int(BEFORE.end * 1000)),
        (int(AFTER.start * 1000), int(AFTER.end * 1000)),
    ]


def test_the_periods_before_and_after_a_deploy_meet_without_sharing_a_millisecond() -> None:
    """`UNTIL` is exclusive: the baseline's end at a deploy made at a fraction of a
    millisecond was rounded up, so the deploy's millisecond was in both periods."""
    t0 = 1_795_000_000.0004
    before = nrql_for("SELECT count(*) FROM Transaction", Period(t0 - 3600, t0))
    after = nrql_for("SELECT count(*) FROM Transaction", Period(t0, t0 + 0.0002))
    assert before.endswith("SINCE 1794996400000 UNTIL 1795000000000")
    assert after.endswith("SINCE 1795000000000 UNTIL 1795000000001")


async def test_a_bad_nrql_is_rejected_once_without_retrying(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    r = rule(source="newrelic", nrql="SELECT count(*) FORM Transaction", max=1)
    obs = await newrelic.fetch(r, scope(), AFTER, None)
    assert obs.value is None
    assert obs.error == (
        "NRQL rejected: NRQL Syntax Error: Error at line 1 position 8, unexpected 'FORM'"
    )
    assert len(newrelic_fake.requests) == 1
    assert requests_counted(metrics, "newrelic", "error") == 1


@pytest.mark.parametrize(
    ("kind", "failed_as"),
    [
        ("too_many_requests", "2xx"),
        ("too_many_requests_code", "2xx"),  # under `code`: was failed at once, not retried
        ("timeout", "2xx"),
        ("429", "4xx"),
        ("500", "5xx"),
        ("html:522", "5xx"),  # a gateway's page: was "malformed answer", not retried
    ],
)
async def test_throttling_and_server_errors_are_retried(
    newrelic: NewRelicProvider,
    newrelic_fake: FakeNewRelic,
    metrics: Metrics,
    kind: str,
    failed_as: str,
) -> None:
    newrelic_fake.fail(kind, times=2)
    obs = await count_since_the_deploy(newrelic)
    assert obs.error is None and obs.value == 1000.0
    assert len(newrelic_fake.requests) == 3
    # one fetch, ok; its three HTTP requests are counted as the fake answered them
    assert requests_counted(metrics, "newrelic", "ok") == 1
    http = {
        result: metrics.registry.get_sample_value(
            "postflight_provider_http_requests_total", {"provider": "newrelic", "result": result}
        )
        or 0.0
        for result in ("2xx", "4xx", "5xx")
    }
    assert sum(http.values()) == len(newrelic_fake.requests) == 3
    assert http[failed_as] >= 2, http  # GraphQL's own errors come in a 200


async def test_http_requests_are_counted_as_the_provider_received_them(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    """Fetches queued behind one slot while New Relic hangs: those whose budget ran out
    before they were sent never reached it, and the metric counts none of them."""
    newrelic_fake.fail("hang")
    provider = NewRelicProvider(
        newrelic_settings(newrelic_fake, max_in_flight=1, timeout=1.0, request_timeout=0.4),
        metrics=metrics,
    )
    try:
        observations = await asyncio.gather(
            *(
                provider.fetch(
                    rule(source="newrelic", nrql=f"SELECT count(*) FROM T{i}", max=1),
                    scope(),
                    AFTER,
                    None,
                )
                for i in range(6)
            )
        )
    finally:
        await provider.aclose()
    assert all(o.value is None for o in observations)
    counted = sum(
        metrics.registry.get_sample_value(
            "postflight_provider_http_requests_total", {"provider": "newrelic", "result": r}
        )
        or 0.0
        for r in ("2xx", "4xx", "5xx", "timeout", "error")
    )
    assert 0 < len(newrelic_fake.requests) < 6  # some never got the slot
    assert counted == len(newrelic_fake.requests)


async def test_throttling_that_does_not_stop_is_an_error_observation(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    newrelic_fake.fail("too_many_requests")
    obs = await count_since_the_deploy(newrelic)
    assert obs.error == "New Relic answered TOO_MANY_REQUESTS (after 3 attempts)"


async def test_a_rejected_key_is_named_and_never_shown(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    newrelic_fake.fail("401")
    obs = await count_since_the_deploy(newrelic)
    # names the settings to fix, never the key
    assert obs.error == (
        "New Relic API key rejected (401): providers.newrelic.api_key must be a User key"
        f" (NRAK-…) with access to account {newrelic_fake.account_id}"
        " (providers.newrelic.account_id)"
    )
    assert NEWRELIC_KEY not in repr(obs)
    assert len(newrelic_fake.requests) == 1


async def test_a_redirect_says_where_it_points_and_is_not_followed(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    newrelic_fake.fail("moved")
    obs = await count_since_the_deploy(newrelic)
    assert obs.error == (
        f"New Relic answered 301, a redirect to https://127.0.0.1:{newrelic_fake.port}/graphql:"
        " set providers.newrelic.api_url to where it points (redirects are not followed, so"
        " that the credentials never go where an answer sends them)"
    ), obs.error  # was "malformed answer from New Relic (HTTP 301, not JSON)"
    assert len(newrelic_fake.requests) == 1


@pytest.mark.parametrize("path", ["/", "/v2/graphql"])
async def test_a_wrong_api_url_is_named_not_called_a_malformed_answer(
    newrelic_fake: FakeNewRelic, metrics: Metrics, path: str
) -> None:
    """NerdGraph answers its errors with HTTP 200: a 404 is a wrong `api_url` (the host
    alone, a path of another API), which said "malformed answer from New Relic (HTTP 404,
    not JSON)" and left the user to guess which setting."""
    settings = newrelic_settings(newrelic_fake, api_url=newrelic_fake.url + path)
    provider = NewRelicProvider(settings, metrics=metrics)
    try:
        obs = await count_since_the_deploy(provider)
    finally:
        await provider.aclose()
    assert obs.error is not None
    assert obs.error.startswith("New Relic answered 404: check providers.newrelic.api_url")
    assert obs.answered  # a configuration to fix, not an outage
    assert len(newrelic_fake.requests) == 1


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("hang", "did not answer"),
        ("malformed", "malformed answer from New Relic"),
        ("bad_shape", "unexpected answer from New Relic"),
    ],
)
async def test_hangs_and_garbled_answers_are_error_observations(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, kind: str, message: str
) -> None:
    newrelic_fake.fail(kind)
    obs = await kept_up(lambda: count_since_the_deploy(newrelic))
    assert obs.value is None and obs.error is not None and message in obs.error


async def test_never_more_than_25_requests_in_flight(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    newrelic_fake.delay = 0.05
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, timeout=10.0), metrics=metrics)
    try:
        observations = await asyncio.gather(
            *(
                provider.fetch(
                    rule(
                        name=f"r{i}",
                        source="newrelic",
                        nrql=f"SELECT count(*) FROM Transaction WHERE n = {i}",
                        max=1,
                    ),
                    scope(),
                    AFTER,
                    None,
                )
                for i in range(60)
            )
        )
    finally:
        await provider.aclose()
    assert all(o.error is None for o in observations)
    assert len(newrelic_fake.requests) == 60
    assert 1 < newrelic_fake.peak_in_flight <= 25


def test_more_than_25_in_flight_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match="25"):
        NewRelicSettings.model_validate({"account_id": 1, "api_key": "k" * 8, "max_in_flight": 26})


def test_region_picks_the_nerdgraph_url() -> None:
    eu = NewRelicSettings.model_validate({"region": "eu", "account_id": 1, "api_key": "k" * 8})
    assert eu.api_url == "https://api.eu.newrelic.com/graphql"
    provider = NewRelicProvider(eu, metrics=Metrics())
    r = rule(source="newrelic", nrql=P95, max=1)
    link = provider.link(r, scope(), AFTER)
    assert link is not None
    parts = urlsplit(link)
    assert parts.netloc == "one.eu.newrelic.com"
    assert parse_qs(parts.query)["query"] == [nrql_for(P95, AFTER)]
    assert parse_qs(parts.query)["account"] == ["1"]


def test_no_link_for_an_unknown_host_without_web_url(newrelic: NewRelicProvider) -> None:
    assert newrelic.link(rule(source="newrelic", nrql=P95, max=1), scope(), AFTER) is None


async def test_change_tracking_markers_at_deploy_and_rollback(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    try:
        await provider.mark(scope(), "deploy")
        await provider.mark(scope(), "rollback")
        guid = BaselineSettings.model_validate({"newrelic": {"entity_guid": "MXxBUE18"}})
        await provider.mark(scope(baseline=guid), "deploy")
        await provider.mark(dataclasses.replace(scope(), canary=True), "deploy")
    finally:
        await provider.aclose()
    deploy, rollback, by_guid, canary = newrelic_fake.markers
    assert 'type: "basic"' in deploy
    assert 'type: "canary"' in canary
    assert 'version: "v2.4.1"' in deploy
    assert "name = 'web (production)' AND domain = 'APM'" in deploy
    assert 'category: "deployment"' in deploy
    assert 'version: "v2.4.0"' in rollback and "rolled back v2.4.1" in rollback
    assert "id = 'MXxBUE18'" in by_guid
    assert requests_counted(metrics, "newrelic", "ok") == 4


async def test_a_deploy_marker_is_placed_when_the_deploy_was_not_when_it_was_registered(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    """A deploy registered 10 minutes late: `changeTrackingCreateEvent` takes no time (as
    the reference shows it), so its marker landed 10 minutes after the deploy. On an
    entity GUID it is `changeTrackingCreateDeployment` at `deployed_at` (epoch ms, within
    24 h); by app name the marker's description says when the deploy was."""
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    deployed_at = round(time.time()) - 600.25
    guid = BaselineSettings.model_validate({"newrelic": {"entity_guid": "MXxBUE18"}})
    try:
        assert await provider.mark(scope(baseline=guid, deployed_at=deployed_at), "deploy") is None
        assert await provider.mark(scope(deployed_at=deployed_at), "deploy") is None
    finally:
        await provider.aclose()
    by_guid, by_name = newrelic_fake.markers
    assert "changeTrackingCreateDeployment" in by_guid
    assert f"timestamp: {round(deployed_at * 1000)}" in by_guid
    assert 'entityGuid: "MXxBUE18"' in by_guid and "deploymentType: BASIC" in by_guid
    assert "changeTrackingCreateEvent" in by_name
    at = datetime.fromtimestamp(deployed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"deployed at {at}" in by_name
    assert requests_counted(metrics, "newrelic", "ok") == 2


async def test_markers_are_off_by_default_and_failures_never_raise(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    await newrelic.mark(scope(), "deploy")
    assert newrelic_fake.requests == []
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    newrelic_fake.fail("401")
    try:
        await provider.mark(scope(), "deploy")
    finally:
        await provider.aclose()
    assert requests_counted(metrics, "newrelic", "error") == 1


async def test_the_marker_entity_search_is_pinned_to_the_account(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    """The same app name in another account made the unpinned search match two
    entities, and the mutation failed."""
    newrelic_fake.entities.append(
        {"guid": "OTHER", "name": "web (production)", "domain": "APM", "accountId": 999}
    )
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    try:
        assert await provider.mark(scope(), "deploy") is None
    finally:
        await provider.aclose()
    (marker,) = newrelic_fake.markers
    assert (
        "name = 'web (production)' AND domain = 'APM'"
        f" AND accountId = {newrelic_fake.account_id}" in marker
    )


async def test_a_marker_search_that_finds_no_single_entity_is_one_clear_message(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    nowhere = BaselineSettings.model_validate({"newrelic": {"app_name": "not-an-app"}})
    try:
        message = await provider.mark(scope(baseline=nowhere), "deploy")
    finally:
        await provider.aclose()
    assert message is not None
    assert message.startswith("New Relic deploy marker not recorded: change-tracking event")
    assert "matched 0 entities" in message and "name = 'not-an-app'" in message


async def test_a_rejected_key_on_a_marker_names_what_the_key_needs(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    provider = NewRelicProvider(newrelic_settings(newrelic_fake, markers=True), metrics=metrics)
    newrelic_fake.fail("401")
    try:
        message = await provider.mark(scope(), "rollback")
    finally:
        await provider.aclose()
    assert message is not None and "API key rejected (401)" in message
    assert f"change tracking in account {newrelic_fake.account_id}" in message
    assert NEWRELIC_KEY not in message


async def test_a_deprecation_warning_with_data_is_a_warning_not_a_failure(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic, caplog: pytest.LogCaptureFixture
) -> None:
    """NerdGraph sends "This field is deprecated! …" in `errors` beside the data; the
    old client failed the fetch on any `errors` entry."""
    newrelic_fake.answer(P95, [{"percentile.duration": {"95": 0.25}}])
    newrelic_fake.deprecation = "This field is deprecated! Please use `nrql.results` instead."
    for end in (T0 + 60, T0 + 120):  # two rounds: the same notice is logged once
        obs = await newrelic.fetch(
            rule(source="newrelic", nrql=P95, max=1), scope(), Period(T0, end), None
        )
        assert obs.error is None and obs.value == 0.25
    said = [r.getMessage() for r in caplog.records if "This field is deprecated!" in r.getMessage()]
    assert len(said) == 1, said


async def test_access_denied_to_the_account_names_the_account_not_the_nrql(
    newrelic_fake: FakeNewRelic, metrics: Metrics
) -> None:
    """NerdGraph's "Access denied." (HTTP 200) for an account id the key's user cannot
    read read "NRQL rejected: Access denied.", sending one to the query; it is the
    account id or the key, said by the id, never the key, and not retried."""
    provider = NewRelicProvider(
        newrelic_settings(newrelic_fake, account_id=7654321), metrics=metrics
    )
    try:
        obs = await count_since_the_deploy(provider)
    finally:
        await provider.aclose()
    assert obs.error == (
        "New Relic denied access to account 7654321 (Access denied.): check"
        " providers.newrelic.account_id, and that providers.newrelic.api_key is a User key"
        " (NRAK-…) of a user with access to that account"
    )
    assert NEWRELIC_KEY not in repr(obs)
    assert len(newrelic_fake.requests) == 1


async def test_a_503_with_retry_after_past_the_budget_fails_at_once_and_holds_later_fetches(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    """README, Baselines: a reset past the fetch's budget fails the fetch at once and
    keeps every later fetch (the next rounds') from asking before it, "a `Retry-After`
    from New Relic or Prometheus alike, on a 429 or a 503" (test-only: it held)."""
    newrelic_fake.fail("unavailable", reset_in=30)
    first = await count_since_the_deploy(newrelic)
    second = await count_since_the_deploy(newrelic)
    assert first.value is None and first.error is not None
    assert first.error.startswith("New Relic answered 503; retry in 30s, past this fetch's")
    assert second.value is None and second.error is not None
    assert "not asked again before then" in second.error
    assert len(newrelic_fake.requests) == 1


async def test_a_429_with_a_short_retry_after_is_retried_after_it(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    """New Relic's 429 carries no documented Retry-After (reference §7); when one comes
    (a proxy in front), it is waited as asked, not a backoff's quarter second."""
    original = newrelic_fake.failure_response

    def with_retry_after(failure: Failure, request: web.Request) -> web.StreamResponse:
        answer = original(failure, request)
        if failure.kind == "429":
            answer.headers["Retry-After"] = "1"
        return answer

    newrelic_fake.failure_response = with_retry_after  # type: ignore[method-assign]
    newrelic_fake.fail("429", times=1)
    newrelic_fake.answer("SELECT count(*) FROM Transaction", [{"count": 7}], since=T0)
    obs = await kept_up(lambda: count_since_the_deploy(newrelic))
    assert obs.error is None and obs.value == 7
    first, second = newrelic_fake.requests[:2]
    assert second.at - first.at >= 0.9


async def test_a_refusal_quotes_nerdgraphs_message_in_its_errors_shape(
    newrelic: NewRelicProvider, newrelic_fake: FakeNewRelic
) -> None:
    """NerdGraph's error body is GraphQL's `{"errors": [{"message"}]}`: the fake answered a
    scripted refusal `{"detail": …}` (a key New Relic never sends), so the agent's words,
    "New Relic answered 400", were tested without the message they quote."""
    newrelic_fake.fail("400", times=1)
    obs = await count_since_the_deploy(newrelic)
    assert obs.error == "New Relic answered 400: fake failure 400"

"""Every Sentry request Postflight builds, and every answer the fake gives it, checked
against Sentry's published OpenAPI document (tests/contract/sentry_openapi.json).

The provider is driven through everything it does (each metric, paging, markers,
a project given by id and by slug), then each request the fake Sentry recorded, and
the answer it sent, is validated; a request or answer the document does not allow
fails with what is wrong. The checker itself is tested to refuse what it must.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.metrics import Metrics
from agent.providers.sentry import SentryProvider
from tests.contract.openapi import document, request_errors, response_errors
from tests.fakes._server import Seen
from tests.fakes.sentry import FakeSentry, SentryStats
from tests.providers.support import (
    AFTER,
    BEFORE,
    SENTRY_TOKEN,
    rule,
    scope,
    sentry_scope,
    sentry_settings,
)

OPERATIONS = {
    ("GET", "/api/0/projects/{organization_id_or_slug}/{project_id_or_slug}/"),
    ("GET", "/api/0/organizations/{organization_id_or_slug}/events/"),
    ("GET", "/api/0/organizations/{organization_id_or_slug}/events-timeseries/"),
    ("GET", "/api/0/organizations/{organization_id_or_slug}/sessions/"),
    ("POST", "/api/0/organizations/{organization_id_or_slug}/releases/"),
    ("GET", "/api/0/organizations/{organization_id_or_slug}/releases/{version}/"),
    ("POST", "/api/0/organizations/{organization_id_or_slug}/releases/{version}/deploys/"),
}


@pytest.fixture
async def exercised(metrics: Metrics) -> AsyncIterator[list[Seen]]:
    """The fake's record of a provider doing everything it does."""
    async with FakeSentry(token=SENTRY_TOKEN) as fake:
        fake.set_stats(SentryStats(transactions=4000, sample_rate=0.1), release="v2.4.0")
        fake.set_stats(SentryStats(transactions=900, p95_ms=300.0), release="v2.4.1")
        provider = SentryProvider(
            sentry_settings(fake, markers=True, sample_limit=150), metrics=metrics
        )
        by_id = sentry_scope("42", "production")
        try:
            for metric in ("error_count", "error_rate", "p95_duration", "crash_free_rate"):
                r = rule(source="sentry", metric=metric, min=0.0)
                for s, period, release in (
                    (scope(), BEFORE, "v2.4.0"),
                    (scope(), AFTER, "v2.4.1"),
                    (by_id, AFTER, None),
                ):
                    obs = await provider.fetch(r, s, period, release)
                    assert obs.error is None, (metric, obs.error)
            # a 0 while other names had errors: grouped by release, then looked up
            fake.unreleased = 5
            fake.set_stats(SentryStats(errors=0), release="v3")  # known: it has events
            errors = rule(source="sentry", metric="error_count", max=5)
            assert (await provider.fetch(errors, scope(), AFTER, "v3")).value == 0.0
            unknown = await provider.fetch(errors, scope(), AFTER, "v9")
            assert unknown.error is not None and "a name Sentry does not know" in unknown.error
            assert await provider.mark(scope(), "deploy") is None
            assert await provider.mark(by_id, "rollback") is None
        finally:
            await provider.aclose()
        yield fake.requests


def _operation(seen: Seen) -> tuple[str, str]:
    from tests.contract.openapi import operation

    return seen.method, operation(seen.method, seen.path).template


async def test_the_provider_uses_every_operation_postflight_documents(
    exercised: list[Seen],
) -> None:
    assert {_operation(s) for s in exercised} == OPERATIONS
    assert set(document()["paths"]) == {template for _, template in OPERATIONS}


async def test_every_request_conforms_to_sentrys_openapi_document(
    exercised: list[Seen],
) -> None:
    problems = {
        f"{s.method} {s.path}?{s.query}": errors
        for s in exercised
        if (errors := request_errors(s.method, s.path, s.query, s.body))
    }
    assert problems == {}


async def test_every_answer_of_the_fake_conforms_to_sentrys_openapi_document(
    exercised: list[Seen],
) -> None:
    assert all(s.status is not None for s in exercised)
    problems = {
        f"{s.method} {s.path} → {s.status}": errors
        for s in exercised
        if (errors := response_errors(s.method, s.path, s.status or 0, s.answer))
    }
    assert problems == {}


async def test_the_fakes_refusals_are_documented_answers(metrics: Metrics) -> None:
    """What the strict fake refuses (numeric project on a release, a deploy of a
    project the release lacks) is answered with a status the document lists."""
    async with FakeSentry(token=SENTRY_TOKEN) as fake:
        fake.projects["mobile"] = 7
        fake.releases["v1"] = {"version": "v1", "projects": ["mobile"]}
        import aiohttp

        headers = {"Authorization": f"Bearer {SENTRY_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            root = f"{fake.url}/api/0/organizations/{fake.org}/releases/"
            async with session.post(root, json={"version": "v2", "projects": ["42"]}) as r:
                assert r.status == 400
                assert await r.json() == {"projects": ["Invalid project ids or slugs"]}
            deploy = {"environment": "production", "projects": ["web"]}
            async with session.post(f"{root}v1/deploys/", json=deploy) as r:
                assert r.status == 400
                body = await r.json()
                assert body["detail"]["message"] == "Invalid projects (web) for release v1"
    for seen in fake.requests:
        assert request_errors(seen.method, seen.path, seen.query, seen.body) == []
        assert response_errors(seen.method, seen.path, seen.status or 0, seen.answer) == []


def test_the_checker_refuses_what_the_document_does_not_allow() -> None:
    events = "/api/0/organizations/acme/events/"
    assert request_errors("GET", events, [("dataset", "spans")]) == [
        "required query parameter 'field' is missing"
    ]
    assert request_errors("GET", events, [("field", "count()"), ("dataset", "transactions")]) == [
        "query dataset: 'transactions' is not one of"
        " ['errors', 'logs', 'profile_functions', 'spans', 'tracemetrics', 'uptime_results']"
    ]
    assert request_errors(
        "GET",
        events,
        [("field", "count()"), ("dataset", "spans"), ("disableAggregateExtrapolation", "1")],
    ) == [
        "query parameter 'disableAggregateExtrapolation' is not documented for"
        " /api/0/organizations/{organization_id_or_slug}/events/"
    ]
    assert request_errors(
        "GET", events, [("field", "count()"), ("dataset", "spans"), ("start", "yesterday")]
    ) == ["query start: 'yesterday' is not a 'date-time'"]
    sessions = "/api/0/organizations/acme/sessions/"
    assert set(
        response_errors("GET", sessions, 200, {"groups": [{"by": {}, "totals": {}}], "query": ""})
    ) == {
        "answer (root): 'end' is a required property",
        "answer (root): 'intervals' is a required property",
        "answer (root): 'start' is a required property",
        "answer groups/0: 'series' is a required property",
    }
    deploys = "/api/0/organizations/acme/releases/v1/deploys/"
    assert set(request_errors("POST", deploys, [], {"projects": [42]})) == {
        "body (root): 'environment' is a required property",
        "body projects/0: 42 is not of type 'string'",
    }
    assert response_errors("POST", deploys, 302, None) == [
        "status 302 is not documented for POST"
        " /api/0/organizations/{organization_id_or_slug}/releases/{version}/deploys/"
    ]


def test_the_datasets_the_readme_names_are_the_schemas() -> None:
    """README's history of Sentry's `dataset` values ends with today's enum, which is
    the vendored schema's; the provider uses only public values of it."""
    events = document()["paths"]["/api/0/organizations/{organization_id_or_slug}/events/"]
    (dataset,) = [p for p in events["get"]["parameters"] if p["name"] == "dataset"]
    public = dataset["schema"]["enum"]
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "since 2026-05-08 lists " + ", ".join(f"`{d}`" for d in public) in readme
    assert {"errors", "spans"} <= set(public)
    assert not {"discover", "transactions"} & set(public)
